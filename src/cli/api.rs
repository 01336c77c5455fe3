//! `tide serve`'s OpenAI-compatible API: POST /v1/chat/completions and /v1/completions (whole
//! responses, or Server-Sent Events with `stream`), GET /v1/models, GET /metrics (Prometheus,
//! metrics.rs) and GET /health (503 while the model loads). Requests queue for the engine
//! thread (api_worker.rs), which runs the library's serving core; a full queue answers 429.
//! Errors are OpenAI-style JSON bodies. With an API key, /v1 and /metrics want it as a bearer
//! token; CORS headers only for the origins `--cors` names.
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::sse::{Event as Sse, Sse as SseBody};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use tide_gpu::openai::{self, Kind, Request};

use tide_gpu::serve::{embed, shape};
use tide_gpu::serve::{Chunker, Chunks, Counters, Event, Shape, Whole};

use super::api_worker::{Channel, EmbedJob, Job, Status, Work};

/// The largest request body (a long prompt fits many times over).
const MAX_BODY: usize = 1 << 20;

/// Who may call the API and how much one request may ask (`tide serve`'s flags).
pub struct Access {
    /// The key /v1 and /metrics want as `Authorization: Bearer KEY`; None: open.
    pub api_key: Option<String>,
    /// Origins whose pages may call the API (CORS); none: no CORS headers.
    pub cors: Vec<HeaderValue>,
    /// The most tokens one request may generate.
    pub max_tokens: usize,
}

pub struct Api {
    /// The model's name in requests and /v1/models.
    pub name: String,
    pub jobs: SyncSender<Work>,
    pub status: Arc<Mutex<Status>>,
    pub counters: Arc<Counters>,
    pub queue: usize,
    pub max_tokens: usize,
    /// sha256 of the API key: compared in constant time with the given key's.
    key_hash: Option<[u8; 32]>,
    cors: Vec<HeaderValue>,
    created: u64,
    next: AtomicU64,
}

fn sha256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

impl Api {
    pub fn new(
        name: String,
        (jobs, status, counters): (SyncSender<Work>, Arc<Mutex<Status>>, Arc<Counters>),
        queue: usize,
        access: Access,
    ) -> Self {
        Api {
            name,
            jobs,
            status,
            counters,
            queue,
            max_tokens: access.max_tokens,
            key_hash: access.api_key.map(|k| sha256(k.as_bytes())),
            cors: access.cors,
            created: now(),
            next: AtomicU64::new(0),
        }
    }

    fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn routes(api: Arc<Api>) -> Router {
    let guarded = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/metrics", get(metrics))
        .layer(from_fn_with_state(api.clone(), guard));
    let app = Router::new()
        .route("/health", get(health))
        .merge(guarded)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(api.clone());
    if api.cors.is_empty() {
        return app;
    }
    // Outermost, so that a preflight (which carries no key) is answered before the guard.
    use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
    app.layer(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(api.cors.clone()))
            .allow_methods([Method::GET, Method::POST])
            // Whatever the page's client sends (the openai clients add x-stainless-* headers).
            .allow_headers(AllowHeaders::mirror_request()),
    )
}

/// The key check of /v1 and /metrics, and the count of responses by status.
async fn guard(State(api): State<Arc<Api>>, req: axum::extract::Request, next: Next) -> Response {
    if let Some(want) = &api.key_hash {
        let given = (req.headers().get(header::AUTHORIZATION))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // Hashes of equal length compared without an early exit: the time says nothing of
        // how much of the key was right.
        let ok = given.is_some_and(|g| {
            let g = sha256(g.trim().as_bytes());
            g.iter().zip(want).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
        });
        if !ok {
            api.counters.record_status(401);
            let message = match given {
                None => "no API key given: send the header 'Authorization: Bearer KEY'",
                Some(_) => "the API key given is not this server's",
            };
            return error(StatusCode::UNAUTHORIZED, message, Some("invalid_api_key"));
        }
    }
    let resp = next.run(req).await;
    api.counters.record_status(resp.status().as_u16());
    resp
}

async fn metrics(State(api): State<Arc<Api>>) -> Response {
    let slots = match api.status() {
        Status::Ready { slots, .. } => slots,
        _ => 0,
    };
    let text = super::metrics::render(&api.counters, slots);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// An OpenAI-style error response.
fn error(status: StatusCode, message: impl Into<String>, code: Option<&str>) -> Response {
    let body = shape::error_body(status.as_u16(), &message.into(), code);
    (status, Json(body)).into_response()
}

/// The response of a request the engine failed (its status, message and derived code).
fn failed(status: u16, message: &str) -> Response {
    let s = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (s, Json(shape::failure(status, message))).into_response()
}

/// The response of a request refused by its checks (openai.rs).
fn refusal(r: openai::Refusal) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
    error(status, r.message, r.code)
}

/// Put `work` on the engine thread's queue, counted there; the 429 or 503 when it cannot go.
fn enqueue(api: &Api, work: Work) -> Result<(), Box<Response>> {
    api.counters.queued.fetch_add(1, Ordering::Relaxed);
    api.jobs.try_send(work).map_err(|e| {
        api.counters.queued.fetch_sub(1, Ordering::Relaxed);
        Box::new(refused(api, e))
    })
}

async fn health(State(api): State<Arc<Api>>) -> Response {
    match api.status() {
        Status::Loading => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "loading"})),
        )
            .into_response(),
        Status::Ready { ctx_len, slots } => {
            let n = &api.counters;
            let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            Json(
                json!({"status": "ok", "model": api.name, "ctx_len": ctx_len, "slots": slots,
                "queued": get(&n.queued), "running": get(&n.running),
                "completed": get(&n.completed), "cancelled": get(&n.cancelled),
                "last_cancelled_tokens": get(&n.last_cancelled_tokens),
                "device_resets": get(&n.device_resets), "steps": get(&n.steps),
                "shared_steps": get(&n.shared_steps)}),
            )
            .into_response()
        }
        Status::Failed(m) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "error", "message": m})),
        )
            .into_response(),
    }
}

async fn models(State(api): State<Arc<Api>>) -> Json<Value> {
    Json(json!({"object": "list", "data": [
        {"id": api.name, "object": "model", "created": api.created, "owned_by": "tide"}
    ]}))
}

async fn chat(State(api): State<Arc<Api>>, body: Result<Bytes, BytesRejection>) -> Response {
    complete(api, body, Kind::Chat).await
}

async fn completions(State(api): State<Arc<Api>>, body: Result<Bytes, BytesRejection>) -> Response {
    complete(api, body, Kind::Text).await
}

async fn complete(api: Arc<Api>, body: Result<Bytes, BytesRejection>, kind: Kind) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return error(e.status(), e.body_text(), None),
    };
    // Checked in the library (tide_gpu::openai, fuzzed there); max_tokens is clamped to the
    // context once the model has loaded.
    let req = match openai::parse(kind, &body, &api.name, api.max_tokens) {
        Ok(r) => r,
        Err(r) => return refusal(r),
    };
    let ctx_len = match ready(&api) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let (tx, mut rx) = mpsc::channel(64);
    let (job, shape, streamed) = job(&api, kind, req, ctx_len, tx);
    if let Err(r) = enqueue(&api, Work::Complete(Box::new(job))) {
        return *r;
    }
    // The first event says whether the prompt runs, so an error still gets its status.
    let started = match rx.recv().await {
        Some(ev @ Event::Started { .. }) => ev,
        Some(Event::Error { status, message }) => return failed(status, &message),
        _ => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the engine stopped",
                None,
            )
        }
    };
    if streamed {
        stream(shape, started, rx).into_response()
    } else {
        whole(shape, started, rx).await
    }
}

fn refused(api: &Api, e: TrySendError<Work>) -> Response {
    match e {
        TrySendError::Full(_) => error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "the server is busy: {} requests are already waiting; retry later",
                api.queue
            ),
            None,
        ),
        TrySendError::Disconnected(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the engine has stopped",
            None,
        ),
    }
}

/// The model's status: Ok(ctx_len) when it serves, else the 503 to answer.
fn ready(api: &Api) -> Result<usize, Box<Response>> {
    let why = match api.status() {
        Status::Ready { ctx_len, .. } => return Ok(ctx_len),
        Status::Loading => "the model is still loading; retry shortly".to_string(),
        Status::Failed(m) => format!("the model did not load: {m}"),
    };
    Err(Box::new(error(StatusCode::SERVICE_UNAVAILABLE, why, None)))
}

/// POST /v1/embeddings: each input's last hidden states pooled (`tide serve --pooling`) and
/// normalised, computed by the engine thread between its rounds.
async fn embeddings(State(api): State<Arc<Api>>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return error(e.status(), e.body_text(), None),
    };
    let req = match openai::parse_embeddings(&body, &api.name) {
        Ok(r) => r,
        Err(r) => return refusal(r),
    };
    if let Err(r) = ready(&api) {
        return *r;
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let work = Work::Embed(EmbedJob {
        inputs: req.inputs,
        reply: tx,
    });
    if let Err(r) = enqueue(&api, work) {
        return *r;
    }
    match rx.await {
        Ok(Ok((vectors, tokens))) => Json(embed::embeddings_body(
            &req.model, &vectors, req.base64, tokens,
        ))
        .into_response(),
        Ok(Err((status, message))) => failed(status, &message),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the engine stopped",
            None,
        ),
    }
}

/// A checked request as the engine's job and the response's shape.
fn job(
    api: &Api,
    kind: Kind,
    r: Request,
    ctx_len: usize,
    events: mpsc::Sender<Event>,
) -> (Job, Shape, bool) {
    let serial = api.next.fetch_add(1, Ordering::Relaxed);
    // Unseeded requests differ from one another, as OpenAI's do.
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let seed = t ^ serial.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let (m, created) = (api.max_tokens, now());
    tide_gpu::serve::job_for(r, kind, serial, seed, m, ctx_len, created, Channel(events))
}

/// The whole reply as one JSON body (`started` first: it says how to read the reply).
async fn whole(shape: Shape, started: Event, mut rx: mpsc::Receiver<Event>) -> Response {
    let mut w = Whole::new(shape);
    let mut first = Some(started);
    loop {
        let next = match first.take() {
            Some(ev) => Some(ev),
            None => rx.recv().await,
        };
        let Some(ev) = next else {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the engine stopped",
                None,
            );
        };
        match w.event(ev) {
            None => {}
            Some(Ok(v)) => return Json(v).into_response(),
            Some(Err((status, body))) => {
                let s = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return (s, Json(body)).into_response();
            }
        }
    }
}

/// The reply as Server-Sent Events: the library's chunks (shape.rs) one by one, then
/// `[DONE]`. Dropped when the client goes, which frees the engine.
fn stream(shape: Shape, started: Event, rx: mpsc::Receiver<Event>) -> impl IntoResponse {
    struct St {
        chunker: Chunker,
        rx: mpsc::Receiver<Event>,
        first: Option<Event>,
        queue: std::collections::VecDeque<Sse>,
        done: bool,
    }
    let st = St {
        chunker: Chunker::new(shape),
        rx,
        first: Some(started),
        queue: Default::default(),
        done: false,
    };
    let data = |v: serde_json::Value| Sse::default().data(v.to_string());
    let events = futures_util::stream::unfold(st, move |mut st| async move {
        loop {
            if let Some(e) = st.queue.pop_front() {
                return Some((Ok::<_, Infallible>(e), st));
            }
            if st.done {
                return None;
            }
            let ev = match st.first.take() {
                Some(ev) => ev,
                None => st.rx.recv().await?,
            };
            match st.chunker.event(ev) {
                Chunks::Send(cs) => st.queue.extend(cs.into_iter().map(data)),
                Chunks::End(cs) => {
                    st.queue.extend(cs.into_iter().map(data));
                    st.queue.push_back(Sse::default().data("[DONE]"));
                    st.done = true;
                }
                Chunks::Failed(_, e) => {
                    st.queue.push_back(data(e));
                    st.done = true;
                }
            }
        }
    });
    SseBody::new(events)
}
