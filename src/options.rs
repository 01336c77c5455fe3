//! Every switch of the runtime in one place. The library reads no environment variable: a front
//! end fills `Options` (the CLI maps its TIDE_* variables onto these fields in src/cli/env.rs;
//! the browser passes them from JavaScript) and hands it down.
use std::path::PathBuf;

/// The whole set: how the device is opened, and how the decoder schedules its kernels.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub gpu: GpuOptions,
    pub decoder: DecoderOptions,
    pub cpu: CpuOptions,
}

/// The fast CPU backend (src/fastcpu/).
#[derive(Debug, Clone, Default)]
pub struct CpuOptions {
    /// Threads its matrix products and attention run on (0: one per core; `--threads`).
    pub threads: usize,
    /// Run the portable kernels even where the CPU has AVX2 (TIDE_CPU_KERNELS=portable).
    pub portable: bool,
}

/// How the device is opened and which kernel inputs it prefers.
#[derive(Debug, Clone)]
pub struct GpuOptions {
    /// Ignore shader-f16 even when the adapter has it (exercise the portable path).
    pub no_f16: bool,
    /// Pretend storage bindings hold at most this many bytes (tests the splitting of large
    /// tensors on an adapter whose real limit is larger).
    pub max_binding: Option<u64>,
    /// Weights in textures (true) or storage buffers (false); None: textures on CPU adapters,
    /// where they are much faster to read, buffers elsewhere (TIDE_WEIGHTS=texture|buffer).
    pub weight_textures: Option<bool>,
    /// Use subgroup operations where the adapter offers the size the kernels need
    /// (TIDE_SUBGROUPS=off clears it).
    pub subgroups: bool,
    /// Read the WGSL sources from this folder instead of the copies compiled into the binary:
    /// a development aid for editing shaders without rebuilding (TIDE_SHADER_DIR).
    pub shader_dir: Option<PathBuf>,
    /// Which wgpu backends to look at (None: all that this build has). WGPU_BACKEND in the CLI.
    pub backends: Option<wgpu::Backends>,
    /// wgpu's instance flags (validation, debug labels, non-compliant adapters) and per-backend
    /// options; None: wgpu's defaults. The CLI takes wgpu's own WGPU_* variables for both.
    pub instance_flags: Option<wgpu::InstanceFlags>,
    pub backend_options: Option<wgpu::BackendOptions>,
    /// Open a software OpenGL adapter (llvmpipe through GL) when it is the only one. Off, such
    /// a machine is refused, so `--backend auto` takes the far faster CPU reference.
    pub allow_software_gl: bool,
    /// Refuse software adapters (device type CPU: lavapipe, SwiftShader, WARP; in the browser
    /// `isFallbackAdapter`) with an error that says so, before a device is opened:
    /// `Backend::Auto` sets it and then runs the fast CPU backend, faster there.
    pub hardware_only: bool,
    /// The largest buffer the model needs, in bytes. In the browser the device asks for
    /// WebGPU's default limits raised to this (capped at the adapter's) rather than for all the
    /// adapter has; natively it is unused. None: the adapter's sizes.
    pub needed_buffer: Option<u64>,
    /// Weights are repacked and written to the GPU this many bytes at a time. None: 4 MiB in
    /// the browser (the wasm heap already holds the file), a whole binding's chunk natively.
    pub upload_slab_bytes: Option<usize>,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            no_f16: false,
            max_binding: None,
            weight_textures: None,
            subgroups: true,
            shader_dir: None,
            backends: None,
            instance_flags: None,
            backend_options: None,
            allow_software_gl: false,
            hardware_only: false,
            needed_buffer: None,
            upload_slab_bytes: None,
        }
    }
}

/// The decoder's schedule: sizes, kernel family and tuning.
#[derive(Debug, Clone)]
pub struct DecoderOptions {
    /// KV-cache length (positions) of each sequence.
    pub ctx_len: usize,
    /// Sequences the decoder holds at once, each in its own K/V cache slot of `ctx_len`
    /// positions (`tide serve --parallel`); their next tokens can share one step
    /// (`GpuDecoder::step_seqs_async`). 1: one sequence, and no kernels built for more.
    pub slots: usize,
    /// Most tokens per prefill batch.
    pub max_batch: usize,
    /// Most bytes of TIDE's decoded memory rows ([batch, K, d] f32, held for a whole step):
    /// memory models with many blocks prefill in smaller batches to stay within it (K = 24
    /// at d = 576: 64 tokens). usize::MAX: `max_batch` as it is.
    pub memory_rows_budget: usize,
    /// Which kernel family runs (TIDE_WORKGROUPS=big|many picks CpuAdapter|Gpu).
    pub kernels: KernelSet,
    /// Where the TIDE router runs for single tokens (TIDE_ROUTER=separate).
    pub router: RouterPlacement,
    /// The prefill matmul's register tile (TIDE_PREFILL_TILE=GR,TPL,WG).
    pub prefill_tile: PrefillTile,
    /// Prompts of at most this many tokens run token by token through the decode kernels
    /// (TIDE_TOKEN_BY_TOKEN=N). Drivers that compile a pipeline at its first dispatch, as
    /// lavapipe does, then never compile the prefill kernels for a short prompt: ~17 s of a
    /// cold start on the default model, for a few ms per token once warm. 0: always prefill.
    pub token_by_token_upto: usize,
    /// Keep every TIDE memory table in one GPU buffer and copy a step's rows on the GPU,
    /// instead of streaming them from the row store (for comparison, and small tables).
    pub memory_resident: bool,
    /// Start kernels that are slow to compile (matvec_rows unrolled, on CPU adapters) on a
    /// quick twin that computes the same bits, and compile their own forms once a run is long
    /// (decoder/quick_start.rs). Off: compile every kernel's own form at once. Default: on
    /// natively, off in the browser (not measured there yet).
    pub quick_start: bool,
}

impl Default for DecoderOptions {
    fn default() -> Self {
        DecoderOptions {
            ctx_len: 2048,
            slots: 1,
            max_batch: 128,
            memory_rows_budget: 4 << 20,
            kernels: KernelSet::Auto,
            router: RouterPlacement::Auto,
            prefill_tile: PrefillTile::default(),
            token_by_token_upto: 8,
            memory_resident: false,
            quick_start: cfg!(not(target_arch = "wasm32")),
        }
    }
}

/// The two kernel families: GPUs want many small workgroups; CPU-backed adapters (lavapipe,
/// SwiftShader) pay per workgroup, per barrier and per storage load, and get kernels where
/// lanes own whole rows and read through textures and uniforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KernelSet {
    /// By the adapter's type.
    #[default]
    Auto,
    Gpu,
    CpuAdapter,
}

/// Where a TIDE layer's router runs for a single token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouterPlacement {
    /// Inside the gate/up and down matvecs where the kernel family allows (CPU adapters).
    #[default]
    Auto,
    /// Always as its own kernel (measures what the fusion saves).
    Separate,
}

/// The prefill matmul's register tile: 4-row groups per workgroup, tokens per lane, lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefillTile {
    pub groups: usize,
    pub tokens_per_lane: u32,
    pub lanes: u32,
}

impl Default for PrefillTile {
    /// 8 x 4 x 32. (16 groups ran 20% faster on lavapipe but took ~13 s per pipeline to
    /// compile there.)
    fn default() -> Self {
        PrefillTile {
            groups: 8,
            tokens_per_lane: 4,
            lanes: 32,
        }
    }
}

impl std::str::FromStr for PrefillTile {
    type Err = String;
    /// "GR,TPL,WG", three positive integers.
    fn from_str(s: &str) -> Result<Self, String> {
        let n: Vec<u32> = s
            .split(',')
            .map(|x| x.trim().parse::<u32>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("prefill tile '{s}': {e}"))?;
        match n[..] {
            [gr, tpl, wg] if gr > 0 && tpl > 0 && wg > 0 && gr <= 64 && tpl <= 16 && wg <= 256 => {
                Ok(PrefillTile {
                    groups: gr as usize,
                    tokens_per_lane: tpl,
                    lanes: wg,
                })
            }
            _ => Err(format!(
                "prefill tile '{s}': want GR,TPL,WG with 1..=64 groups, 1..=16 tokens per lane, 1..=256 lanes"
            )),
        }
    }
}
