//! WGSL sources (embedded), a small preprocessor (#include, #if/#else/#endif, {{KEY}}), and
//! compiled kernels: a pipeline plus the explicit bind-group layout its variants share.
use std::collections::BTreeMap;

use crate::error::{Error, Result};

const SOURCES: &[(&str, &str)] = &[
    ("common", include_str!("../../shaders/common.wgsl")),
    ("matmul", include_str!("../../shaders/matmul.wgsl")),
    (
        "matmul_epilogue",
        include_str!("../../shaders/matmul_epilogue.wgsl"),
    ),
    (
        "matmul_bindings",
        include_str!("../../shaders/matmul_bindings.wgsl"),
    ),
    ("matvec", include_str!("../../shaders/matvec.wgsl")),
    (
        "matvec_rows",
        include_str!("../../shaders/matvec_rows.wgsl"),
    ),
    ("attention", include_str!("../../shaders/attention.wgsl")),
    ("embed", include_str!("../../shaders/embed.wgsl")),
    ("sample", include_str!("../../shaders/sample.wgsl")),
    ("memory", include_str!("../../shaders/memory.wgsl")),
    ("router", include_str!("../../shaders/router.wgsl")),
    ("bandwidth", include_str!("../../shaders/bandwidth.wgsl")),
    (
        "access_costs",
        include_str!("../../shaders/access_costs.wgsl"),
    ),
    ("quant_f32", include_str!("../../shaders/quant_f32.wgsl")),
    ("quant_f16", include_str!("../../shaders/quant_f16.wgsl")),
    ("quant_bf16", include_str!("../../shaders/quant_bf16.wgsl")),
    ("quant_q8_0", include_str!("../../shaders/quant_q8_0.wgsl")),
    ("quant_q4_0", include_str!("../../shaders/quant_q4_0.wgsl")),
    ("quant_q4_1", include_str!("../../shaders/quant_q4_1.wgsl")),
    ("quant_tex", include_str!("../../shaders/quant_tex.wgsl")),
    ("weights", include_str!("../../shaders/weights.wgsl")),
];

/// Flags (for #if) and values (for {{KEY}}); a flag is a key whose value is "1".
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Defines(pub BTreeMap<String, String>);

impl Defines {
    pub fn new() -> Defines {
        Defines::default()
    }
    pub fn set(mut self, k: &str, v: impl ToString) -> Defines {
        self.0.insert(k.to_string(), v.to_string());
        self
    }
    pub fn flag(self, k: &str, on: bool) -> Defines {
        if on {
            self.set(k, 1)
        } else {
            self
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
thread_local! {
    static SHADER_DIR: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Run `f` with shaders read from `dir` on this thread (a development aid, like
/// TIDE_SHADER_DIR, which it overrides): the kernel bench's A/B mode builds one variant of a
/// kernel from the embedded shaders and one from edited copies, in the same process.
#[cfg(not(target_arch = "wasm32"))]
pub fn with_shader_dir<T>(dir: &str, f: impl FnOnce() -> T) -> T {
    // Restores the previous folder when dropped, also if `f` panics.
    struct Restore(Option<String>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let old = self.0.take();
            SHADER_DIR.with(|d| *d.borrow_mut() = old);
        }
    }
    let _restore = Restore(SHADER_DIR.with(|d| d.replace(Some(dir.to_string()))));
    f()
}

fn source(name: &str) -> Result<std::borrow::Cow<'static, str>> {
    // Development aid: read shaders from a folder instead of the embedded copies.
    #[cfg(not(target_arch = "wasm32"))]
    if let Some(dir) = SHADER_DIR
        .with(|d| d.borrow().clone())
        .or_else(|| std::env::var("TIDE_SHADER_DIR").ok())
    {
        let p = std::path::Path::new(&dir).join(format!("{name}.wgsl"));
        return std::fs::read_to_string(&p)
            .map(Into::into)
            .map_err(|e| Error::Gpu(format!("{}: {e}", p.display())));
    }
    SOURCES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| (*s).into())
        .ok_or_else(|| Error::Gpu(format!("no shader named '{name}'")))
}

/// Expand one shader: substitutions first (so includes can be chosen by a define), then
/// conditionals and includes, recursively.
pub fn preprocess(name: &str, defs: &Defines) -> Result<String> {
    let mut out = String::new();
    expand(name, defs, &mut out, 0)?;
    Ok(out)
}

fn substitute(line: &str, defs: &Defines, name: &str) -> Result<String> {
    let mut s = String::new();
    let mut rest = line;
    while let Some(a) = rest.find("{{") {
        let b = rest[a..]
            .find("}}")
            .ok_or_else(|| Error::Gpu(format!("{name}: unclosed {{{{")))?
            + a;
        let key = &rest[a + 2..b];
        let v = defs
            .0
            .get(key)
            .ok_or_else(|| Error::Gpu(format!("{name}: no value for {{{{{key}}}}}")))?;
        s.push_str(&rest[..a]);
        s.push_str(v);
        rest = &rest[b + 2..];
    }
    s.push_str(rest);
    Ok(s)
}

fn expand(name: &str, defs: &Defines, out: &mut String, depth: u32) -> Result<()> {
    if depth > 8 {
        return Err(Error::Gpu(format!("{name}: includes nested too deep")));
    }
    let src = source(name)?;
    let lines: Vec<&str> = src.lines().collect();
    expand_lines(name, &lines, defs, out, depth)
}

/// `#for K in 0..N` ... `#endfor` repeats its body N times with {{K}} = 0..N-1 (N may be a
/// {{KEY}}); the generated code then has no loops with run-time indices into private arrays.
fn expand_lines(
    name: &str,
    lines: &[&str],
    defs: &Defines,
    out: &mut String,
    depth: u32,
) -> Result<()> {
    // Stack of (this branch active, some branch taken) for #if nesting.
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let raw = lines[i];
        i += 1;
        let t = raw.trim();
        let active = stack.iter().all(|&(a, _)| a);
        if let Some(k) = t.strip_prefix("#if ") {
            let on = defs.0.get(k.trim()).is_some_and(|v| v == "1");
            stack.push((on, on));
            continue;
        }
        if t == "#else" {
            let top = stack
                .last_mut()
                .ok_or_else(|| Error::Gpu(format!("{name}: #else without #if")))?;
            *top = (!top.1, true);
            continue;
        }
        if t == "#endif" {
            stack
                .pop()
                .ok_or_else(|| Error::Gpu(format!("{name}: #endif without #if")))?;
            continue;
        }
        if let Some(spec) = t.strip_prefix("#for ") {
            let start = i;
            let mut nest = 1;
            while i < lines.len() {
                let l = lines[i].trim();
                if l.starts_with("#for ") {
                    nest += 1;
                } else if l == "#endfor" {
                    nest -= 1;
                    if nest == 0 {
                        break;
                    }
                }
                i += 1;
            }
            if i >= lines.len() {
                return Err(Error::Gpu(format!("{name}: #for without #endfor")));
            }
            let body = &lines[start..i];
            i += 1;
            if !active {
                continue;
            }
            let spec = substitute(spec, defs, name)?;
            let (var, range) = spec
                .split_once(" in ")
                .ok_or_else(|| Error::Gpu(format!("{name}: bad #for '{spec}'")))?;
            let n: usize = range
                .trim()
                .strip_prefix("0..")
                .and_then(|n| n.trim().parse().ok())
                .ok_or_else(|| Error::Gpu(format!("{name}: bad #for range '{range}'")))?;
            for k in 0..n {
                let d = defs.clone().set(var.trim(), k);
                expand_lines(name, body, &d, out, depth)?;
            }
            continue;
        }
        if !active {
            continue;
        }
        let line = substitute(raw, defs, name)?;
        if let Some(inc) = line.trim().strip_prefix("#include ") {
            expand(inc.trim().trim_matches('"'), defs, out, depth + 1)?;
            continue;
        }
        out.push_str(&line);
        out.push('\n');
    }
    if !stack.is_empty() {
        return Err(Error::Gpu(format!("{name}: unclosed #if")));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    Uniform,
    Read,
    ReadWrite,
    /// Weights in an rgba32uint texture (see `weight_texture`).
    Texture,
}

/// A compiled entry point and the layout of its bindings (0..n in order).
pub struct Kernel {
    /// "shader:entry [defines that tell variants apart]", for profiles and messages.
    pub label: String,
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    pub bindings: Vec<(u32, Binding)>,
}

impl Kernel {
    pub fn layout_for(device: &wgpu::Device, bindings: &[(u32, Binding)]) -> wgpu::BindGroupLayout {
        let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
            .iter()
            .map(|&(b, kind)| wgpu::BindGroupLayoutEntry {
                binding: b,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match kind {
                    Binding::Uniform => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Binding::Texture => wgpu::BindingType::Texture {
                        sample_type: wgpu::TextureSampleType::Uint,
                        view_dimension: wgpu::TextureViewDimension::D2,
                        multisampled: false,
                    },
                    Binding::Read | Binding::ReadWrite => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage {
                            read_only: matches!(kind, Binding::Read),
                        },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                },
                count: None,
            })
            .collect();
        device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: None,
            entries: &entries,
        })
    }

    /// Compile `entry` of shader `name` with `defs`, on an existing layout (variants share it).
    pub fn build(
        device: &wgpu::Device,
        name: &str,
        entry: &str,
        defs: &Defines,
        layout: &wgpu::BindGroupLayout,
        bindings: &[(u32, Binding)],
    ) -> Result<Kernel> {
        let src = preprocess(name, defs)?;
        // Validate with naga first so a bad shader is an error, not a device panic.
        let module = naga::front::wgsl::parse_str(&src).map_err(|e| {
            Error::Gpu(format!(
                "shader {name} ({defs:?}): {}",
                e.emit_to_string(&src)
            ))
        })?;
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .map_err(|e| {
            Error::Gpu(format!(
                "shader {name} ({defs:?}): {}",
                e.emit_to_string(&src)
            ))
        })?;
        let sm = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(name),
            source: wgpu::ShaderSource::Wgsl(src.into()),
        });
        let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: None,
            bind_group_layouts: &[Some(layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(name),
            layout: Some(&pl),
            module: &sm,
            entry_point: Some(entry),
            // Every kernel writes its workgroup memory before reading it; skipping the zero fill
            // saves a pass over it at every workgroup start.
            compilation_options: wgpu::PipelineCompilationOptions {
                zero_initialize_workgroup_memory: false,
                ..Default::default()
            },
            cache: None,
        });
        let tag: Vec<String> = defs
            .0
            .iter()
            .filter(|(k, v)| *v == "1" || *k == "QUANT" || *k == "T")
            .map(|(k, v)| {
                if v == "1" {
                    k.clone()
                } else {
                    format!("{k}={v}")
                }
            })
            .collect();
        Ok(Kernel {
            label: format!("{name}:{entry} [{}]", tag.join(" ")),
            pipeline,
            layout: layout.clone(),
            bindings: bindings.to_vec(),
        })
    }

    pub fn bind(
        &self,
        device: &wgpu::Device,
        buffers: &[wgpu::BindingResource<'_>],
    ) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = self
            .bindings
            .iter()
            .zip(buffers)
            .map(|(&(b, _), r)| wgpu::BindGroupEntry {
                binding: b,
                resource: r.clone(),
            })
            .collect();
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &self.layout,
            entries: &entries,
        })
    }
}
