//! Arguments and helpers shared by the subcommands.
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use tide_gpu::memory::MemoryRows;
use tide_gpu::session::{self, RowSource};
use tide_gpu::{Backend, Engine, Model, Options};

#[derive(Clone, Copy, ValueEnum)]
pub enum BackendArg {
    /// A hardware GPU if one opens, else the fast CPU backend (says why).
    Auto,
    /// Any GPU adapter, software renderers (lavapipe, SwiftShader) included.
    Gpu,
    /// The fast CPU backend: quantised SIMD kernels on threads.
    Cpu,
    /// The CPU reference: plain f32, the oracle the other backends are tested against.
    Reference,
}

#[derive(Args, Clone)]
pub struct ModelArgs {
    /// Model: a .gguf file, a Hugging Face directory (config.json + *.safetensors), or a
    /// memory model's folder (models/smollm2-tide: its backbone is fetched when missing).
    /// Default: the embedded TIDE model (models/tide-k4).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// A separate TIDE memory file (.safetensors with tide.* tensors) to add to the model, or
    /// its http:// or https:// URL (rows are then fetched with HTTP Range requests as steps
    /// need them).
    #[arg(long)]
    pub memory: Option<PathBuf>,
    /// For an https:// --memory URL: a PEM file of the certificates to trust instead of
    /// Mozilla's roots (a private CA, or the server's self-signed certificate).
    #[arg(long)]
    pub memory_ca: Option<PathBuf>,
    /// Byte budget of the memory row cache, in MB (default: 10% of the tables, at most 256;
    /// 0 = no cache).
    #[arg(long)]
    pub memory_cache_mb: Option<f64>,
    /// Start with an empty row cache instead of filling it with the most frequent tokens'
    /// rows (tide.token_counts).
    #[arg(long)]
    pub no_memory_warm: bool,
    /// For a --memory URL: the warm-up (which runs beside generation) reads at most this
    /// many bytes per byte of rows it keeps, in as few requests as that allows; for metered
    /// or slow links. Default: read through gaps of up to 64 KB like the steps do, fastest on
    /// a fast link but most of the table.
    #[arg(long)]
    pub memory_warm_factor: Option<f64>,
    /// For a --memory URL: finish the warm-up before the first step (by default it runs
    /// beside generation, and steps fetch what it has not cached yet).
    #[arg(long)]
    pub memory_warm_wait: bool,
    /// For a --memory URL: read through gaps of up to this many KB between wanted rows
    /// rather than make another request. Default: measured at start, as what the link
    /// carries in one round trip over the 8 requests kept in flight (4 KB to 2 MB).
    #[arg(long)]
    pub memory_gap_kb: Option<usize>,
    /// Copy the whole memory tables to the GPU at start (no streaming, no row cache).
    #[arg(long)]
    pub memory_resident: bool,
    /// Where to run: a hardware GPU if one opens, else the fast CPU backend (auto); any GPU
    /// adapter, software ones included (gpu); the fast CPU backend (cpu); the CPU reference.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendArg,
    /// Threads of the CPU backend, 1 to 1024 (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// KV-cache length in tokens (default: the model's, at most 2048).
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Most tokens per prefill batch (default 128; memory models with many blocks use
    /// fewer, so that a step's decoded memory rows stay within 4 MB; given, it is used as it
    /// is).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Ignore shader-f16 even if the adapter supports it.
    #[arg(long)]
    pub no_f16: bool,
    /// Sequences decoded together, each in its own K/V cache slot (set by `serve
    /// --parallel`; 0 counts as 1).
    #[arg(skip)]
    pub slots: usize,
}

impl ModelArgs {
    /// The model's name for messages and JSON output.
    pub fn name(&self) -> String {
        match &self.model {
            Some(p) => p.display().to_string(),
            None => tide_gpu::model::embedded::DEFAULT_MODEL.to_string(),
        }
    }

    pub fn load(&self) -> Result<Loaded> {
        let t = Instant::now();
        eprint!("loading {} ... ", self.name());
        let mut m = match &self.model {
            Some(p) => load_path(p)?,
            None => tide_gpu::model::embedded::default_model()?,
        };
        let (mut link, mut remote_rows) = (None, None);
        if let Some(mem) = &self.memory {
            match mem.to_str().filter(|_| self.remote_memory()) {
                Some(url) => {
                    let f = self.memory_warm_factor;
                    if let Some(f) = f.filter(|f| !(f.is_finite() && *f >= 1.0)) {
                        anyhow::bail!("--memory-warm-factor must be a number >= 1, got {f}");
                    }
                    let mut opts = tide_gpu::memory::http::HttpOptions {
                        bulk_read_factor: f,
                        ..Default::default()
                    };
                    if let Some(ca) = &self.memory_ca {
                        opts.ca_pem = Some(
                            std::fs::read(ca)
                                .with_context(|| format!("--memory-ca {}", ca.display()))?,
                        );
                    }
                    opts.max_gap_bytes =
                        session::gap_bytes(self.memory_gap_kb).context("--memory-gap-kb")?;
                    let r = tide_gpu::memory::http::open_memory_url(&m.config, url, &opts)?;
                    m.memory = Some(r.memory);
                    if let Some(tc) = r.token_counts {
                        m.token_counts = Some(tc);
                    }
                    link = Some(r.link);
                    remote_rows = Some(r.rows);
                }
                None => tide_gpu::model::attach_memory(&mut m, mem)?,
            }
        }
        let c = &m.config;
        let k = m.memory.as_ref().map_or(0, |m| m.k);
        let mut extra = String::new();
        if let Some(e) = &m.engram {
            let at: Vec<String> = e.layers.iter().map(|l| l.layer.to_string()).collect();
            extra += &format!(", Engram at layers {}", at.join(", "));
        }
        if m.layers.iter().any(|l| l.lime_mix.is_some()) {
            extra += ", LIMe";
        }
        eprintln!(
            "{} layers, width {}, vocab {}, memory blocks K = {k}{extra} ({:.2}s)",
            c.n_layers,
            c.dim,
            c.vocab,
            t.elapsed().as_secs_f64()
        );
        if let Some(link) = link {
            let kb = link.gap_bytes >> 10;
            match (link.round_trip_s, link.bytes_per_s) {
                (Some(rtt), Some(bw)) => eprintln!(
                    "memory link: round trip {:.2} ms, {:.1} MB/s: a request reads through \
                     gaps of up to {kb} KB",
                    rtt * 1e3,
                    bw / 1e6
                ),
                _ => eprintln!("memory link: a request reads through gaps of up to {kb} KB"),
            }
        }
        let mut rows = MemoryRows::local(&m);
        if remote_rows.is_some() {
            rows.tide = remote_rows;
        }
        let loaded = Loaded { model: m, rows };
        self.setup_row_cache(&loaded)?;
        Ok(loaded)
    }

    /// Where the TIDE memory's rows come from, for the row cache's budget.
    fn row_source(&self) -> RowSource {
        if self.memory_resident {
            RowSource::Resident
        } else if self.remote_memory() {
            RowSource::Remote
        } else {
            RowSource::Local
        }
    }

    /// The row cache's budget for tables of `table_bytes` (session::row_cache_bytes).
    pub fn cache_bytes(&self, table_bytes: u64, token_bytes: usize, ctx: usize) -> Result<usize> {
        let (source, asked) = (self.row_source(), self.memory_cache_mb);
        session::row_cache_bytes(table_bytes, token_bytes, ctx, source, asked)
            .context("--memory-cache-mb")
    }

    /// Size the memory row caches and fill TIDE's from the token counts (most frequent first).
    fn setup_row_cache(&self, m: &Loaded) -> Result<()> {
        let ctx = self.ctx_len(m)?;
        let source = self.row_source();
        let bytes = session::size_row_caches(&m.rows, ctx, source, self.memory_cache_mb)
            .context("--memory-cache-mb")?;
        let Some(store) = &m.rows.tide else {
            return Ok(());
        };
        if let (Some(counts), false) = (&m.token_counts, self.no_memory_warm) {
            if store.cache_tokens() > 0 {
                let order = tide_gpu::memory::store::by_frequency(counts);
                let store = store.clone();
                let warm = move || {
                    let t = Instant::now();
                    match store.warm(&order, 8192, &mut |_| {}) {
                        Ok((n, fetched)) => eprintln!(
                            "memory row cache: {:.1} MB, warmed with the {n} most frequent \
                             tokens ({:.1} MB read in {:.2}s)",
                            bytes as f64 / 1e6,
                            fetched as f64 / 1e6,
                            t.elapsed().as_secs_f64()
                        ),
                        // The steps fetch their own rows: a failed warm-up costs only hits.
                        Err(e) => eprintln!("memory row cache: the warm-up stopped: {e}"),
                    }
                };
                if self.remote_memory() && !self.memory_warm_wait {
                    // Over the network: the first token need not wait for the cache.
                    std::thread::spawn(warm);
                } else {
                    warm();
                }
            }
        }
        Ok(())
    }

    /// Whether --memory is a URL (its rows come over the network).
    fn remote_memory(&self) -> bool {
        self.memory
            .as_ref()
            .and_then(|p| p.to_str())
            .is_some_and(|u| u.contains("://"))
    }

    pub fn ctx_len(&self, m: &Model) -> Result<usize> {
        session::ctx_len(m.config.ctx_len, self.ctx).context("--ctx")
    }

    /// The library's options: these arguments, then the TIDE_* switches (cli/env.rs).
    pub fn options(&self, m: &Model) -> Result<Options> {
        let mut o = session::options(m, self.ctx).context("--ctx")?;
        if let Some(b) = self.batch {
            if b == 0 || b > 4096 {
                anyhow::bail!("--batch must be in 1..=4096, got {b}");
            }
            o.decoder.max_batch = b;
            o.decoder.memory_rows_budget = usize::MAX;
        }
        o.gpu.no_f16 = self.no_f16;
        o.decoder.slots = self.slots.max(1);
        o.decoder.memory_resident = self.memory_resident;
        o.cpu.threads = self.threads.map_or(0, usize::from);
        super::env::apply(&mut o)?;
        Ok(o)
    }

    pub fn backend(&self) -> Backend {
        match self.backend {
            BackendArg::Auto => Backend::Auto,
            BackendArg::Gpu => Backend::Gpu,
            BackendArg::Cpu => Backend::Cpu,
            BackendArg::Reference => Backend::Reference,
        }
    }

    pub fn engine(&self, m: &Loaded) -> Result<Engine> {
        let t = Instant::now();
        let opts = self.options(m)?;
        let (e, why) = Engine::new(&m.model, &m.rows, self.backend(), &opts)
            .context("starting the backend")?;
        if let Some(why) = why {
            eprintln!("note: {why}");
        }
        if let Some(note) = session::ctx_note(m.config.ctx_len, self.ctx_len(m)?) {
            eprintln!("note: {note}");
        }
        eprintln!(
            "backend: {} (ready in {:.2}s)",
            e.describe(),
            t.elapsed().as_secs_f64()
        );
        Ok(e)
    }
}

/// A model as the CLI runs it: the model (what its tables are) and the row stores its
/// memories are read through, their caches sized and warmed by `ModelArgs::load`.
pub struct Loaded {
    pub model: Model,
    pub rows: MemoryRows,
}

impl std::ops::Deref for Loaded {
    type Target = Model;
    fn deref(&self) -> &Model {
        &self.model
    }
}

impl Loaded {
    /// `model` reading its memories through stores over its own tables (no caches).
    pub fn new(model: Model) -> Loaded {
        let rows = MemoryRows::local(&model);
        Loaded { model, rows }
    }
}

/// The memory row store's counters as JSON (null for a model without memory).
pub fn memory_json(m: &Loaded) -> serde_json::Value {
    m.rows.tide.as_ref().map_or(serde_json::Value::Null, |s| {
        serde_json::to_value(s.stats()).unwrap_or_default()
    })
}

/// Engram's row stores' counters, summed (null for a model without Engram).
pub fn engram_json(m: &Loaded) -> serde_json::Value {
    if m.engram.is_none() {
        return serde_json::Value::Null;
    }
    serde_json::to_value(m.rows.engram_stats()).unwrap_or_default()
}

/// A model from its path; a memory model's backbone is found or fetched first.
pub fn load_path(p: &std::path::Path) -> Result<Model> {
    Ok(match tide_gpu::model::read_card(p)? {
        Some(card) => {
            let backbone = super::backbone::locate(p, &card)?;
            tide_gpu::model::load_card_dir(p, &card, &backbone)?
        }
        None => tide_gpu::model::load(p)?,
    })
}

#[derive(Args)]
pub struct TokenizeArgs {
    #[arg(long)]
    pub model: PathBuf,
    /// Prepend BOS when the model asks for one.
    #[arg(long)]
    pub bos: bool,
    pub text: String,
}

pub fn tokenize(a: TokenizeArgs) -> Result<()> {
    let m = load_path(&a.model)?;
    let ids = m.tokenizer.encode(&a.text, a.bos)?;
    println!("{}", serde_json::to_string(&ids)?);
    Ok(())
}

pub fn devices() -> Result<()> {
    let mut o = Options::default();
    super::env::apply(&mut o)?;
    let list = tide_gpu::gpu::adapters_summary(&o.gpu);
    if list.is_empty() {
        println!("no GPU adapters found (install a Vulkan/Metal/DX12 driver; lavapipe: mesa-vulkan-drivers)");
    }
    for a in list {
        println!("{}", serde_json::to_string_pretty(&a)?);
    }
    Ok(())
}
