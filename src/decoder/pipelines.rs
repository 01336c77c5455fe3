//! The pipeline cache: every kernel variant the schedule registered, by key, with its bind
//! group layout and (once compiled) its pipeline. Invariants it keeps: one entry per key;
//! layouts shared by equal binding lists; an entry compiled as its quick twin is listed in
//! `deferred` until its own form replaces it (quick_start.rs).
use std::collections::HashMap;

use super::plan::Variant;
use super::quick_start;
use super::specs::Spec;
use crate::error::Result;
use crate::gpu::{label, layout_key, Binding, Defines, GpuContext, Kernel, Slot};

/// A kernel variant's identity: shader, entry point, defines.
pub(super) type KernelKey = (String, String, Defines);

/// A kernel variant of the schedule. Its pipeline is compiled after the whole plan is known,
/// all variants at once on every core; binding needs only the layout.
pub(super) struct KernelSlot {
    key: KernelKey,
    pub label: String,
    pub layout: wgpu::BindGroupLayout,
    pub bindings: Vec<Slot>,
    pipeline: Option<wgpu::ComputePipeline>,
}

pub(super) struct Pipelines {
    kernels: Vec<KernelSlot>,
    index: HashMap<KernelKey, usize>,
    layouts: HashMap<Vec<(u32, Binding)>, wgpu::BindGroupLayout>,
    /// Kernels running on a quick-to-compile twin whose own form is not compiled yet.
    deferred: Vec<usize>,
    /// Compile slow kernels as their quick twins first (DecoderOptions::quick_start).
    quick_start: bool,
    /// Pipelines compiled so far (a warmed decoder's included: `decoder::warm`).
    pub compiled_count: usize,
}

impl Pipelines {
    pub fn new(quick_start: bool) -> Pipelines {
        Pipelines {
            kernels: Vec::new(),
            index: HashMap::new(),
            layouts: HashMap::new(),
            deferred: Vec::new(),
            quick_start,
            compiled_count: 0,
        }
    }

    /// Register (or reuse) the kernel variant of `spec`, as an op's variant. Its pipeline is
    /// compiled by the next `compile`.
    pub fn variant(&mut self, ctx: &GpuContext, spec: &Spec) -> Variant {
        Variant {
            kernel: self.kernel(ctx, spec),
            x: spec.x,
            tokens_per_y: spec.tokens_per_y,
        }
    }

    fn kernel(&mut self, ctx: &GpuContext, spec: &Spec) -> usize {
        let key = (
            spec.shader.to_string(),
            spec.entry.to_string(),
            spec.defs.clone(),
        );
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let layout = self
            .layouts
            .entry(layout_key(&spec.bindings))
            .or_insert_with(|| Kernel::layout_for(&ctx.device, &spec.bindings))
            .clone();
        self.kernels.push(KernelSlot {
            label: label(spec.shader, spec.entry, &spec.defs),
            key: key.clone(),
            layout,
            bindings: spec.bindings.clone(),
            pipeline: None,
        });
        self.index.insert(key, self.kernels.len() - 1);
        self.kernels.len() - 1
    }

    pub fn slot(&self, k: usize) -> &KernelSlot {
        &self.kernels[k]
    }

    pub fn compiled(&self, k: usize) -> bool {
        self.kernels[k].pipeline.is_some()
    }

    pub fn has_deferred(&self) -> bool {
        !self.deferred.is_empty()
    }

    /// Kernel `k`'s pipeline (a step's kernels are compiled before it is encoded).
    pub fn pipeline(&self, k: usize) -> &wgpu::ComputePipeline {
        self.kernels[k]
            .pipeline
            .as_ref()
            .expect("kernels are compiled before the first step")
    }

    /// Compile every registered kernel that has no pipeline yet: natively on as many threads
    /// as there are cores (on lavapipe the compile is most of a cold start), in the browser
    /// one after the other.
    pub fn compile_pending(&mut self, ctx: &GpuContext) -> Result<()> {
        let todo: Vec<usize> = (0..self.kernels.len())
            .filter(|&i| !self.compiled(i))
            .collect();
        self.compile(ctx, todo)
    }

    /// Compile `todo`, kernels slow to compile as their quick twins (quick_start.rs) when
    /// the options say so: their own forms wait in `deferred`.
    pub fn compile(&mut self, ctx: &GpuContext, todo: Vec<usize>) -> Result<()> {
        let twins: Vec<Option<Defines>> = todo
            .iter()
            .map(|&i| {
                let twin = quick_start::quick_twin(&self.kernels[i].key);
                twin.filter(|_| self.quick_start)
            })
            .collect();
        self.deferred.extend(
            todo.iter()
                .zip(&twins)
                .filter(|(_, t)| t.is_some())
                .map(|(&i, _)| i),
        );
        self.compile_as(ctx, todo, twins)
    }

    /// Compile the deferred fast forms now (a long run, or a benchmark asking).
    pub fn compile_deferred(&mut self, ctx: &GpuContext) -> Result<()> {
        let todo = std::mem::take(&mut self.deferred);
        if todo.is_empty() {
            return Ok(());
        }
        let n = todo.len();
        self.compile_as(ctx, todo, vec![None; n])
    }

    /// Compile `todo[j]` with the defines `defs[j]` where given, else with its own.
    fn compile_as(
        &mut self,
        ctx: &GpuContext,
        todo: Vec<usize>,
        defs: Vec<Option<Defines>>,
    ) -> Result<()> {
        self.compiled_count += todo.len();
        let (dev, dir) = (&ctx.device, ctx.shader_dir.as_deref());
        let compile = |j: usize| {
            let k = &self.kernels[todo[j]];
            let (shader, entry, own) = &k.key;
            let d = defs[j].as_ref().unwrap_or(own);
            Kernel::compile(dev, shader, entry, d, &k.layout, &k.bindings, dir)
        };
        #[cfg(not(target_arch = "wasm32"))]
        let built: Vec<Result<wgpu::ComputePipeline>> = {
            let threads = std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(todo.len());
            let next = std::sync::atomic::AtomicUsize::new(0);
            let done: Vec<std::sync::Mutex<Option<Result<wgpu::ComputePipeline>>>> =
                todo.iter().map(|_| Default::default()).collect();
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| loop {
                        let j = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if j >= todo.len() {
                            break;
                        }
                        let r = compile(j);
                        if let Ok(mut slot) = done[j].lock() {
                            *slot = Some(r);
                        }
                    });
                }
            });
            done.into_iter()
                .map(|m| {
                    m.into_inner().ok().flatten().unwrap_or_else(|| {
                        Err(crate::error::Error::Gpu(
                            "a kernel compile thread failed".into(),
                        ))
                    })
                })
                .collect()
        };
        #[cfg(target_arch = "wasm32")]
        let built: Vec<Result<wgpu::ComputePipeline>> = (0..todo.len()).map(compile).collect();
        for (&i, p) in todo.iter().zip(built) {
            self.kernels[i].pipeline = Some(p?);
        }
        // Errors wgpu raised while creating them (outside any error scope) surface here.
        ctx.take_error()
    }

    /// Every kernel variant registered, as the WGSL that runs: (file name made from its key,
    /// label, source).
    pub fn sources(&self, ctx: &GpuContext) -> Result<Vec<(String, String, String)>> {
        self.kernels
            .iter()
            .map(|k| {
                let (shader, entry, defs) = &k.key;
                let dir = ctx.shader_dir.as_deref();
                let src = Kernel::source(shader, entry, defs, &k.bindings, dir)?;
                Ok((kernel_file_name(shader, entry, defs), k.label.clone(), src))
            })
            .collect()
    }
}

/// "shader.entry.KEY=V,FLAG,...": a file name from a kernel's key (a long one is cut and
/// given a hash of the whole, so names stay unique and within file-system limits).
fn kernel_file_name(shader: &str, entry: &str, defs: &Defines) -> String {
    let parts = defs.tags(|_, _| true);
    let name = format!("{shader}.{entry}.{}", parts.join(",")).replace(['/', '\\', ' ', ':'], "_");
    if name.len() <= 180 {
        return format!("{name}.wgsl");
    }
    // FNV-1a: stable across runs and builds, unlike std's hasher.
    let h = name.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    format!("{}.{h:016x}.wgsl", &name[..160])
}
