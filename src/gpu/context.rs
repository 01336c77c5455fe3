use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::options::GpuOptions;

/// The device and what it can do, queried once at start-up.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub f16: bool,
    pub timestamps: bool,
    /// Weight tensors go into textures rather than storage buffers (see `GpuOptions`).
    pub weight_textures: bool,
    /// Some(8) when the adapter has subgroup operations at that one fixed size (enabled).
    pub subgroup_size: Option<u32>,
    /// Shaders are read from this folder instead of the embedded copies (GpuOptions).
    pub shader_dir: Option<PathBuf>,
    /// Words of repacked weights written to the GPU at a time (`GpuOptions::upload_slab_bytes`).
    pub upload_slab_words: usize,
    /// Weights are laid out but not written (placeholders stand for them): a decoder built on
    /// such a context only compiles its kernels (`decoder::warm`, before the weights arrive).
    pub dry: bool,
    /// Errors the device raised outside an error scope (validation, out of memory, loss);
    /// reported by the next `wait` instead of wgpu's default panic.
    errors: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// Set when the device is lost (destroyed, a driver reset): nothing on it works again.
    lost: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

fn instance(opts: &GpuOptions) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    if let Some(b) = opts.backends {
        desc.backends = b;
    }
    if let Some(f) = opts.instance_flags {
        desc.flags = f;
    }
    if let Some(b) = &opts.backend_options {
        desc.backend_options = b.clone();
    }
    wgpu::Instance::new(desc)
}

/// How much we would rather run on an adapter: a hardware GPU, then a CPU adapter behind
/// Vulkan/Metal/DX12 (lavapipe: a few times slower than a GPU, well ahead of the CPU
/// reference), then a software OpenGL renderer (llvmpipe through GL compiles every shader
/// cold and decoded ~40x slower than the CPU reference here). None: not for compute.
pub fn adapter_rank(
    backend: wgpu::Backend,
    device_type: wgpu::DeviceType,
    name: &str,
) -> Option<u8> {
    let software = device_type == wgpu::DeviceType::Cpu || {
        let n = name.to_lowercase();
        ["llvmpipe", "softpipe", "swiftshader", "software"]
            .iter()
            .any(|s| n.contains(s))
    };
    // Among hardware adapters, as wgpu's HighPerformance request orders them: discrete,
    // integrated, then the rest; GL after the native APIs of the same kind.
    let kind = match device_type {
        wgpu::DeviceType::DiscreteGpu => 3,
        wgpu::DeviceType::IntegratedGpu => 2,
        _ => 1,
    };
    match (backend, software) {
        (wgpu::Backend::Noop, _) => None,
        (wgpu::Backend::Gl, true) => Some(0),
        (_, true) => Some(1),
        (wgpu::Backend::Gl, false) => Some(2 * kind),
        (_, false) => Some(2 * kind + 1),
    }
}

/// Why a software adapter was passed over (`GpuOptions::hardware_only`); the browser's worker
/// looks for "software renderer" in it.
fn software_refused(name: &str) -> Error {
    let name = match name {
        "" => String::new(),
        n => format!(" ({n})"),
    };
    Error::Gpu(format!(
        "the only GPU adapter{name} is a software renderer, slower than the fast CPU backend \
         (--backend gpu runs on it)"
    ))
}

#[cfg(not(target_arch = "wasm32"))]
fn rank_of(info: &wgpu::AdapterInfo) -> Option<u8> {
    adapter_rank(info.backend, info.device_type, &info.name)
}

impl GpuContext {
    /// Open the best adapter (see `adapter_rank`); natively every adapter is looked at, in
    /// the browser the one WebGPU offers.
    pub async fn new(opts: &GpuOptions) -> Result<GpuContext> {
        let inst = instance(opts);
        let hint = "use --backend cpu, or install a Vulkan driver (e.g. mesa-vulkan-drivers, which has lavapipe)";
        #[cfg(not(target_arch = "wasm32"))]
        {
            let mut all = inst.enumerate_adapters(wgpu::Backends::all()).await;
            all.retain(|a| rank_of(&a.get_info()).is_some());
            // Highest rank first; among equals, the order wgpu listed them.
            all.sort_by_key(|a| std::cmp::Reverse(rank_of(&a.get_info())));
            if all.is_empty() {
                return Err(Error::Gpu(format!("no GPU adapter found; {hint}")));
            }
            // The best adapter that opens; software OpenGL only when asked for.
            let mut last = None;
            for adapter in all {
                let info = adapter.get_info();
                if opts.hardware_only && rank_of(&info) <= Some(1) {
                    last.get_or_insert(software_refused(&info.name));
                    continue;
                }
                if rank_of(&info) == Some(0) && !opts.allow_software_gl {
                    // Keep the error of a better adapter that failed to open, if any.
                    last.get_or_insert(Error::Gpu(format!(
                        "the only adapter is {} on software OpenGL, far slower than the CPU reference (shaders compile cold, ~5 tok/s); {hint}",
                        info.name
                    )));
                    continue;
                }
                match Self::from_adapter(adapter, opts).await {
                    Ok(ctx) => return Ok(ctx),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| Error::Gpu(format!("no GPU adapter opened; {hint}"))))
        }
        #[cfg(target_arch = "wasm32")]
        let adapter = inst
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            })
            .await
            .map_err(|e| Error::Gpu(format!("no GPU adapter found ({e}); {hint}")))?;
        #[cfg(target_arch = "wasm32")]
        if opts.hardware_only && adapter.get_info().device_type == wgpu::DeviceType::Cpu {
            return Err(software_refused(&adapter.get_info().name));
        }
        #[cfg(target_arch = "wasm32")]
        return Self::from_adapter(adapter, opts).await;
    }

    pub async fn from_adapter(adapter: wgpu::Adapter, opts: &GpuOptions) -> Result<GpuContext> {
        let info = adapter.get_info();
        let alimits = adapter.limits();
        let f16 = adapter.features().contains(wgpu::Features::SHADER_F16) && !opts.no_f16;
        let mut features = wgpu::Features::empty();
        if f16 {
            features |= wgpu::Features::SHADER_F16;
        }
        // Per-kernel GPU timing for `tide bench --profile`, where the adapter offers it.
        let timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        if timestamps {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        // Subgroup operations, where the adapter has them at the one size the kernels use, 8
        // (lavapipe on AVX2: a subgroup is one SIMD row): the CPU-adapter prefill matmul and
        // attention share fetches across a subgroup (`Spec::with_subgroups`), unless the
        // options turn them off.
        let subgroup_size = (adapter.features().contains(wgpu::Features::SUBGROUP)
            && info.subgroup_min_size == 8
            && info.subgroup_max_size == 8
            && opts.subgroups)
            .then_some(8);
        if subgroup_size.is_some() {
            features |= wgpu::Features::SUBGROUP;
        }
        // Natively take the adapter's own limits: large bindings and buffers matter to model
        // weights. In the browser ask for WebGPU's defaults (8 storage buffers per stage, which
        // every kernel stays within), with the binding and buffer sizes raised to what the
        // model needs (`needed_buffer`) as far as the adapter allows, so a page asks for no
        // more than it uses and behaves the same on every browser and adapter.
        #[cfg(not(target_arch = "wasm32"))]
        let limits = alimits;
        #[cfg(target_arch = "wasm32")]
        let limits = {
            let d = wgpu::Limits::default();
            let need = opts.needed_buffer.unwrap_or(u64::MAX);
            wgpu::Limits {
                max_storage_buffer_binding_size: alimits
                    .max_storage_buffer_binding_size
                    .min(need.max(d.max_storage_buffer_binding_size)),
                max_buffer_size: alimits.max_buffer_size.min(need.max(d.max_buffer_size)),
                ..d
            }
        };
        let mut used = limits.clone();
        if let Some(m) = opts.max_binding {
            used.max_storage_buffer_binding_size = used.max_storage_buffer_binding_size.min(m);
        }
        let weight_textures = opts
            .weight_textures
            .unwrap_or(info.device_type == wgpu::DeviceType::Cpu);
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("tide"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Gpu(format!("{}: could not open the device: {e}", info.name)))?;
        let errors: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
        let sink = errors.clone();
        device.on_uncaptured_error(std::sync::Arc::new(move |e: wgpu::Error| {
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        let sink = errors.clone();
        let lost: std::sync::Arc<std::sync::atomic::AtomicBool> = Default::default();
        let flag = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            if let Ok(mut v) = sink.lock() {
                v.push(format!("device lost ({reason:?}): {msg}"));
            }
        });
        Ok(GpuContext {
            errors,
            lost,
            device,
            queue,
            info,
            limits: used,
            f16,
            timestamps,
            weight_textures,
            subgroup_size,
            shader_dir: opts.shader_dir.clone(),
            upload_slab_words: opts
                .upload_slab_bytes
                .map_or(super::upload::DEFAULT_SLAB_WORDS, |b| (b / 4).max(1)),
            dry: false,
        })
    }

    /// One line: adapter, backend, the limits and features that matter to us.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?}) max_binding={} MiB max_buffer={} MiB f16={} weights_in={} subgroup={}",
            self.info.name,
            self.info.backend,
            self.info.device_type,
            self.limits.max_storage_buffer_binding_size >> 20,
            self.limits.max_buffer_size >> 20,
            self.f16,
            if self.weight_textures {
                "textures"
            } else {
                "buffers"
            },
            self.subgroup_size
                .map_or_else(|| "off".to_string(), |n| n.to_string())
        )
    }

    /// Whether the device was lost: a front end that keeps running (a server) opens a new
    /// one rather than retrying on this.
    pub fn is_lost(&self) -> bool {
        self.lost.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Destroy the device, as a driver reset or a lost GPU would (fault injection for tests
    /// and diagnostics): what runs next on it fails with "device lost".
    pub fn lose(&self) {
        self.device.destroy();
    }

    /// GPU memory allocated now for (buffers, textures), in bytes, as wgpu-hal counts its
    /// allocations (Vulkan, Metal, DX12: what the driver was asked for, whatever kind of
    /// memory it is); None where nothing is counted (the browser's WebGPU, GL).
    pub fn allocated_bytes(&self) -> Option<(u64, u64)> {
        let hal = self.device.get_internal_counters().hal;
        let (b, t) = (hal.buffer_memory.read(), hal.texture_memory.read());
        (b > 0 || t > 0).then_some((b.max(0) as u64, t.max(0) as u64))
    }

    /// Wait for the queue and surface any validation / out-of-memory error as a Result.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("device poll failed: {e}")))?;
        self.take_error()
    }

    /// Let the device make progress so map_async callbacks run: natively wait for the queue;
    /// in the browser the event loop does it, so this only reports errors and never blocks.
    pub fn drive(&self) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        return self.wait();
        #[cfg(target_arch = "wasm32")]
        return self.take_error();
    }

    /// The first error the device raised since the last check, if any.
    pub fn take_error(&self) -> Result<()> {
        let mut v = self
            .errors
            .lock()
            .map_err(|_| Error::Gpu("error log poisoned".into()))?;
        let first = v.drain(..).next();
        match first {
            Some(e) => Err(Error::Gpu(e)),
            None => Ok(()),
        }
    }
}

/// Every adapter wgpu can see, with its limits and features (for `tide devices`).
pub fn adapters_summary(opts: &GpuOptions) -> Vec<serde_json::Value> {
    let inst = instance(opts);
    let adapters = pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()));
    adapters
        .iter()
        .map(|a| {
            let i = a.get_info();
            let l = a.limits();
            let f = a.features();
            serde_json::json!({
                "name": i.name,
                "backend": format!("{:?}", i.backend),
                "device_type": format!("{:?}", i.device_type),
                "driver": format!("{} {}", i.driver, i.driver_info),
                "max_storage_buffer_binding_size": l.max_storage_buffer_binding_size,
                "max_buffer_size": l.max_buffer_size,
                "max_storage_buffers_per_shader_stage": l.max_storage_buffers_per_shader_stage,
                "max_compute_workgroup_storage_size": l.max_compute_workgroup_storage_size,
                "max_compute_invocations_per_workgroup": l.max_compute_invocations_per_workgroup,
                "shader_f16": f.contains(wgpu::Features::SHADER_F16),
                "subgroup": f.contains(wgpu::Features::SUBGROUP),
                "subgroup_size": [i.subgroup_min_size, i.subgroup_max_size],
                "timestamp_query": f.contains(wgpu::Features::TIMESTAMP_QUERY),
            })
        })
        .collect()
}
