//! `tide serve`: the web pages, the wasm and JS beside them, and model files (with HTTP Range, so
//! the browser can stream rows), listed at /models.json; and the OpenAI-compatible API on the
//! first model (api.rs).
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use axum_extra::headers::Range;
use axum_extra::TypedHeader;
use axum_range::{KnownSize, Ranged};
use clap::Args;
use serde::Serialize;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

use tide_gpu::model::embedded::default_model_files;
use tide_gpu::model::gguf_split::{part_name, split_name};
use tide_gpu::serve::embed::Pooling;

use super::api::{routes, Access, Api};
use super::api_worker;
use super::common::{BackendArg, ModelArgs};
use super::file_hashes::{default_cache_file, sha256_hex, FileHashes};

#[derive(Args)]
pub struct ServeArgs {
    /// A model to offer: a .gguf file or a model directory (config.json + safetensors, a TIDE
    /// model folder, or a memory model's card folder). Repeat for several; the API serves the
    /// first. Default: models/smollm2-tide (the TIDE memory on SmolLM2-135M) when run from the
    /// repository root, then the embedded tide-k4, which the API serves.
    #[arg(long)]
    model: Vec<PathBuf>,
    /// Port to listen on (0: any free port; the URL printed says which).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address to bind. Only loopback by default; another address exposes the server (and the
    /// model files) to the network.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// The folder of pages, wasm and JS served at / (scripts/build-web.sh fills it).
    #[arg(long, default_value = "web")]
    web: PathBuf,
    /// Serve files only: no OpenAI-compatible API, no model loaded here.
    #[arg(long)]
    no_api: bool,
    /// Serve without the COOP/COEP headers that make the pages cross-origin isolated (the
    /// pages then run their CPU kernels on one thread, in the single-threaded build).
    #[arg(long)]
    no_isolation: bool,
    /// API requests decoded together (continuous batching), each in its own K/V cache slot
    /// of --ctx positions; the GPU reads the weights once per step for all of them.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    parallel: u16,
    /// The key the API wants (`Authorization: Bearer KEY`) on /v1 and /metrics.
    #[arg(long, conflicts_with = "api_key_file")]
    api_key: Option<String>,
    /// A file holding the API key (its first line), so that the key is not on the command
    /// line.
    #[arg(long)]
    api_key_file: Option<PathBuf>,
    /// Serve the API on an address beyond loopback (--host) without a key.
    #[arg(long)]
    allow_anonymous: bool,
    /// An origin (scheme://host[:port]) whose pages may call the API: CORS headers for it.
    /// Repeat for several. Default: none (a page elsewhere cannot read the API's replies).
    #[arg(long)]
    cors: Vec<String>,
    /// The most tokens one API request may generate; a request asking more is refused (400).
    /// Default: the context length.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_tokens: Option<u64>,
    /// How /v1/embeddings pools a text's last hidden states into one vector: their mean, or
    /// the last token's.
    #[arg(long, value_enum, default_value = "mean")]
    pooling: PoolingArg,
    /// Start every API request's K/V cache slot over, rather than reusing the longest prefix
    /// of its prompt that a slot holds from an earlier request.
    #[arg(long)]
    no_prefix_cache: bool,
    /// API requests that may wait for a free slot; more are answered 429.
    #[arg(long, default_value_t = 16)]
    queue: usize,
    /// Fault injection for tests: destroy the GPU device once, after this many decode steps
    /// (the requests running then fail; the next get a new device).
    #[arg(long, hide = true)]
    lose_device_after_tokens: Option<usize>,
    /// Test aid: send model files at most this many bytes per second (a slow link, so that a
    /// test can cut a download midway).
    #[arg(long, hide = true)]
    throttle_files: Option<u64>,
    /// Where the API's model runs: a hardware GPU if one opens, else the fast CPU backend
    /// (auto); any GPU adapter (gpu); the fast CPU backend (cpu); the CPU reference.
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendArg,
    /// Threads of the CPU backend, 1 to 1024 (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    /// The API's KV-cache length in tokens (default: the model's, at most 2048).
    #[arg(long)]
    ctx: Option<usize>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum PoolingArg {
    Mean,
    Last,
}

/// Where one served file's bytes are.
#[derive(Clone)]
enum Source {
    Disk(PathBuf),
    /// The bytes and their sha256 (computed once; their ETag too).
    Embedded(&'static [u8], String),
}

#[derive(Serialize)]
struct FileEntry {
    url: String,
    bytes: u64,
    /// Hex sha256 of the file (file_hashes.rs): the page checks its download against it.
    sha256: String,
}

#[derive(Serialize)]
struct ModelEntry {
    name: String,
    files: Vec<FileEntry>,
    /// How the page should read the memory file by default: "stream" (rows by HTTP Range as
    /// steps need them) for a memory model on a fetched backbone; absent: download it whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    memory: Option<&'static str>,
}

/// The memory model `tide serve` offers first, beside the embedded one, when run from the
/// repository root with no --model.
const DEFAULT_MEMORY_MODEL: &str = "models/smollm2-tide";
/// The embedded default model's name in /models.json and the API.
const EMBEDDED: &str = "tide-k4";

struct Catalog {
    list: Vec<ModelEntry>,
    /// Bytes per second model files are sent at (--throttle-files); None: as fast as may be.
    throttle: Option<u64>,
    /// (model name, file name) -> bytes.
    files: BTreeMap<(String, String), (Source, u64)>,
}

/// File names the browser may ask for: plain names, nothing that could leave the folder.
fn plain_name(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with('.')
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

fn catalog(models: &[PathBuf], hashes: &mut FileHashes) -> Result<Catalog> {
    let mut cat = Catalog {
        list: Vec::new(),
        throttle: None,
        files: BTreeMap::new(),
    };
    let mut add = |name: String, files: Vec<(String, Source, u64)>, memory| -> Result<()> {
        if cat.list.iter().any(|m| m.name == name) {
            bail!("two models are named '{name}': rename one of the files or folders");
        }
        let mut entries = Vec::new();
        for (f, src, bytes) in files {
            let sha256 = match &src {
                Source::Disk(p) => hashes.of(p)?,
                Source::Embedded(_, sha256) => sha256.clone(),
            };
            entries.push(FileEntry {
                url: format!("/models/{name}/{f}"),
                bytes,
                sha256,
            });
            cat.files.insert((name.clone(), f), (src, bytes));
        }
        cat.list.push(ModelEntry {
            name,
            files: entries,
            memory,
        });
        Ok(())
    };
    if models.is_empty() {
        // The demo's headline, first in the picker, when it is complete here (its memory
        // committed, its backbone fetched or fetchable); otherwise say why and go on.
        let headline = Path::new(DEFAULT_MEMORY_MODEL);
        if headline.join("config.json").is_file() {
            match model_files(headline) {
                Ok((name, files, memory)) => add(name, files, memory)?,
                Err(e) => eprintln!("serve: not offering {}: {e:#}", headline.display()),
            }
        }
        let files = default_model_files()
            .into_iter()
            .map(|(n, b)| {
                let src = Source::Embedded(b, sha256_hex(b));
                (n.to_string(), src, b.len() as u64)
            })
            .collect();
        add(EMBEDDED.into(), files, None)?;
    }
    for m in models {
        let (name, files, memory) = model_files(m)?;
        add(name, files, memory)?;
    }
    Ok(cat)
}

type Files = Vec<(String, Source, u64)>;

/// A --model's name and files (a memory model's fetched backbone among them), and how the page
/// should read its memory.
fn model_files(m: &Path) -> Result<(String, Files, Option<&'static str>)> {
    let meta = std::fs::metadata(m).with_context(|| format!("--model {}", m.display()))?;
    let file_name = m.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    // A split GGUF (any part's path) is one model named by its stem, every part its file.
    let split = split_name(file_name).filter(|_| meta.is_file());
    let stem = match split {
        Some((stem, _, _)) => stem,
        None => file_name.strip_suffix(".gguf").unwrap_or(file_name),
    };
    let name = Some(stem.to_string())
        .filter(|n| plain_name(n))
        .with_context(|| {
            format!(
                "--model {}: the name must be letters, digits, '.', '_' or '-'",
                m.display()
            )
        })?;
    if let Some((_, _, count)) = split {
        let dir = m.parent().unwrap_or(Path::new(""));
        let mut files = Vec::new();
        for i in 1..=count {
            let p = part_name(stem, i, count);
            let path = dir.join(&p);
            let md = std::fs::metadata(&path).with_context(|| {
                format!(
                    "--model {}: part {i} of {count} of this split model",
                    m.display()
                )
            })?;
            files.push((p, Source::Disk(path), md.len()));
        }
        return Ok((name, files, None));
    }
    let mut files = Vec::new();
    let mut memory_mode = None;
    if meta.is_file() {
        files.push((
            file_name.to_string(),
            Source::Disk(m.to_path_buf()),
            meta.len(),
        ));
    } else {
        // A model folder: its plain files, not its subfolders.
        let mut dir: Vec<_> = std::fs::read_dir(m)
            .with_context(|| format!("--model {}", m.display()))?
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("--model {}", m.display()))?;
        dir.sort_by_key(|e| e.file_name());
        for e in dir {
            // Following links: Hugging Face's cache keeps a model's files as links to blobs.
            let md = std::fs::metadata(e.path())?;
            let f = e.file_name().to_string_lossy().to_string();
            if md.is_file() && plain_name(&f) {
                files.push((f, Source::Disk(e.path()), md.len()));
            }
        }
        if files.is_empty() {
            bail!("--model {}: the folder has no files to serve", m.display());
        }
        if let Some(card) = tide_gpu::model::read_card(m)? {
            let memory = m.join(&card.memory);
            if !memory.is_file() {
                bail!(
                    "--model {}: its memory file {} is missing",
                    m.display(),
                    card.memory
                );
            }
            // The backbone is served beside the memory, under the name the card gives it.
            let b = super::backbone::locate(m, &card)?;
            if !files.iter().any(|(f, _, _)| *f == card.tide_backbone.file) {
                let len = std::fs::metadata(&b)?.len();
                files.push((card.tide_backbone.file.clone(), Source::Disk(b), len));
            }
            memory_mode = Some("stream");
        }
    }
    Ok((name, files, memory_mode))
}

async fn models_json(State(cat): State<Arc<Catalog>>) -> Json<serde_json::Value> {
    Json(serde_json::to_value(&cat.list).unwrap_or_default())
}

async fn model_file(
    State(cat): State<Arc<Catalog>>,
    UrlPath((name, file)): UrlPath<(String, String)>,
    range: Option<TypedHeader<Range>>,
    headers: axum::http::HeaderMap,
) -> Response {
    let Some((src, size)) = cat.files.get(&(name.clone(), file.clone())) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no file '{file}' in model '{name}'\n"),
        )
            .into_response();
    };
    let tag = etag(src, *size).await;
    // If-Range (RFC 9110 13.1.5): a range of the version the client holds, or else the whole
    // current file, so that a resumed download is never two versions spliced together.
    let if_range = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok());
    let same_version = if_range.is_none_or(|v| Some(v) == tag.as_deref());
    // One range at most; one past the end gets 416 with the size (axum-range).
    let range = range.map(|TypedHeader(r)| r).filter(|_| same_version);
    let mut resp = match src {
        Source::Disk(p) => match tokio::fs::File::open(p).await {
            Ok(f) => Ranged::new(range, KnownSize::sized(f, *size)).into_response(),
            Err(e) => {
                eprintln!("serve: {}: {e}", p.display());
                return (StatusCode::INTERNAL_SERVER_ERROR, "model file unreadable\n")
                    .into_response();
            }
        },
        Source::Embedded(b, _) => {
            Ranged::new(range, KnownSize::sized(std::io::Cursor::new(*b), *size)).into_response()
        }
    };
    // A validator for the browser's cache key: a file that changes gets another ETag.
    if let Some(tag) = tag {
        if let Ok(v) = HeaderValue::from_str(&tag) {
            resp.headers_mut().insert(header::ETAG, v);
        }
    }
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    match cat.throttle {
        Some(rate) => throttled(resp, rate.max(1)),
        None => resp,
    }
}

/// `resp` with its body sent at most `rate` bytes per second (a pause after each chunk).
fn throttled(resp: Response, rate: u64) -> Response {
    use futures_util::StreamExt;
    let (parts, body) = resp.into_parts();
    let slow = body.into_data_stream().then(move |chunk| async move {
        if let Ok(c) = &chunk {
            let pause = std::time::Duration::from_secs_f64(c.len() as f64 / rate as f64);
            tokio::time::sleep(pause).await;
        }
        chunk
    });
    Response::from_parts(parts, axum::body::Body::from_stream(slow))
}

/// A strong ETag: size and modification time for a file on disk (read at each request, so a
/// replaced file is noticed), a hash of the bytes for the embedded model.
async fn etag(src: &Source, size: u64) -> Option<String> {
    match src {
        Source::Disk(p) => {
            let t = tokio::fs::metadata(p).await.ok()?.modified().ok()?;
            let ns = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
            Some(format!("\"{size:x}-{ns:x}\""))
        }
        Source::Embedded(_, sha256) => Some(format!("\"{sha256}\"")),
    }
}

/// The app: /models.json, /models/{name}/{file}, the API (its own body limit), and the web
/// folder at /. With `isolate`, every response says Cross-Origin-Opener-Policy: same-origin and
/// Cross-Origin-Embedder-Policy: credentialless, so that the pages are cross-origin isolated
/// (shared wasm memory: the threaded build and its worker pool) while they may still fetch
/// from other origins (credentialless: no-cors requests go without cookies, CORS ones as ever).
fn app(cat: Catalog, web: &Path, api: Option<Arc<Api>>, isolate: bool) -> Router {
    let files = Router::new()
        .route("/models.json", get(models_json))
        .route("/models/{name}/{file}", get(model_file))
        // These routes take no body.
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(Arc::new(cat));
    let app = match api {
        Some(api) => files.merge(routes(api)),
        None => files,
    };
    let app = app.fallback_service(ServeDir::new(web).append_index_html_on_directories(true));
    if !isolate {
        return app;
    }
    let set = |name: &'static str, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(
            header::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        )
    };
    app.layer(set("cross-origin-opener-policy", "same-origin"))
        .layer(set("cross-origin-embedder-policy", "credentialless"))
}

/// The API's key, CORS origins and per-request cap from the flags; an API bound beyond
/// loopback without a key is refused unless --allow-anonymous says so.
fn access(a: &ServeArgs) -> Result<Access> {
    let api_key = match (&a.api_key, &a.api_key_file) {
        (Some(k), _) => Some(k.trim().to_string()),
        (None, Some(f)) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("--api-key-file {}: unreadable", f.display()))?;
            Some(text.lines().next().unwrap_or("").trim().to_string())
        }
        (None, None) => None,
    };
    if api_key.as_deref() == Some("") {
        bail!("--api-key: the key is empty");
    }
    if !a.no_api && !a.host.is_loopback() && api_key.is_none() && !a.allow_anonymous {
        bail!(
            "--host {} exposes the API to the network without a key: give --api-key (or \
             --api-key-file), or --allow-anonymous to serve it to anyone",
            a.host
        );
    }
    let mut cors = Vec::new();
    for o in &a.cors {
        let ok = (o.starts_with("http://") || o.starts_with("https://"))
            && !o.ends_with('/')
            && o.split("://")
                .nth(1)
                .is_some_and(|h| !h.is_empty() && !h.contains('/'));
        match HeaderValue::from_str(o) {
            Ok(v) if ok => cors.push(v),
            _ => bail!("--cors {o:?}: expected an origin such as https://example.org or http://localhost:3000"),
        }
    }
    let max_tokens = a
        .max_tokens
        .map_or(usize::MAX, |n| n.min(usize::MAX as u64) as usize);
    Ok(Access {
        api_key,
        cors,
        max_tokens,
    })
}

pub fn run(a: ServeArgs) -> Result<()> {
    let mut hashes = FileHashes::open(default_cache_file());
    let mut cat = catalog(&a.model, &mut hashes)?;
    cat.throttle = a.throttle_files;
    hashes.save();
    if hashes.hashed > 0 {
        eprintln!(
            "serve: sha256 of {} file{} computed, {} from the cache",
            hashes.hashed,
            if hashes.hashed == 1 { "" } else { "s" },
            hashes.cached
        );
    }
    if !a.web.is_dir() {
        eprintln!(
            "serve: no folder {} (pages); serving the models only",
            a.web.display()
        );
    }
    let names: Vec<&str> = cat.list.iter().map(|m| m.name.as_str()).collect();
    let names = names.join(", ");
    let access = access(&a)?;
    // The API serves the first model; it loads in the background (/health says when).
    let api = (!a.no_api).then(|| {
        let args = ModelArgs {
            model: a.model.first().cloned(),
            memory: None,
            memory_ca: None,
            memory_cache_mb: None,
            no_memory_warm: false,
            memory_warm_factor: None,
            memory_warm_wait: false,
            memory_gap_kb: None,
            memory_resident: false,
            backend: a.backend,
            threads: a.threads,
            ctx: a.ctx,
            batch: None,
            no_f16: false,
            slots: a.parallel as usize,
        };
        let worker = api_worker::spawn(
            args,
            a.queue.max(1),
            !a.no_prefix_cache,
            match a.pooling {
                PoolingArg::Mean => Pooling::Mean,
                PoolingArg::Last => Pooling::Last,
            },
            a.lose_device_after_tokens,
        );
        // The API's model: the first --model, or the embedded one (fast on any adapter).
        let name = match a.model.is_empty() {
            true => EMBEDDED.to_string(),
            false => cat.list[0].name.clone(),
        };
        Arc::new(Api::new(name, worker, a.queue.max(1), access))
    });
    let rt = tokio::runtime::Runtime::new().context("starting the server's runtime")?;
    rt.block_on(async move {
        let addr = SocketAddr::new(a.host, a.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let local = listener.local_addr()?;
        if !a.host.is_loopback() {
            eprintln!("serve: listening on {local}, reachable from the network (--host)");
        }
        eprintln!("serve: models {names}");
        // The URL on stdout, alone on its line (scripts and tests read it).
        println!("http://{local}/");
        // No Nagle: a kept-alive connection's small responses (HTTP Range reads of memory
        // rows) would otherwise wait for the client's delayed ACK.
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app(cat, &a.web, api, !a.no_isolation))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("serving")
    })
}
