//! `tide serve`'s OpenAI-compatible API: POST /v1/chat/completions and /v1/completions (whole
//! responses, or Server-Sent Events with `stream`), GET /v1/models and GET /health (503 while
//! the model loads). Requests queue for the engine thread (api_worker.rs), which runs them one
//! at a time; a full queue answers 429. Errors are OpenAI-style JSON bodies.
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as Sse, Sse as SseBody};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tide_gpu::SamplerConfig;
use tokio::sync::mpsc;

use tide_gpu::openai::{self, Kind, Request};

use super::api_worker::{Counters, Event, Job, Status, TokenLogprob};

/// The largest request body (a long prompt fits many times over).
const MAX_BODY: usize = 1 << 20;

pub struct Api {
    /// The model's name in requests and /v1/models.
    pub name: String,
    pub jobs: SyncSender<Job>,
    pub status: Arc<Mutex<Status>>,
    pub counters: Arc<Counters>,
    pub queue: usize,
    created: u64,
    next: AtomicU64,
}

impl Api {
    pub fn new(
        name: String,
        (jobs, status, counters): (SyncSender<Job>, Arc<Mutex<Status>>, Arc<Counters>),
        queue: usize,
    ) -> Self {
        Api {
            name,
            jobs,
            status,
            counters,
            queue,
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
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

/// An OpenAI-style error body.
fn error(status: StatusCode, message: impl Into<String>, code: Option<&str>) -> Response {
    let kind = if status.is_server_error() {
        "server_error"
    } else {
        "invalid_request_error"
    };
    let body =
        json!({"error": {"message": message.into(), "type": kind, "param": null, "code": code}});
    (status, Json(body)).into_response()
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

/// What a request asked for beyond the job itself.
struct Shape {
    kind: Kind,
    stream: bool,
    include_usage: bool,
    id: String,
    created: u64,
    model: String,
}

async fn complete(api: Arc<Api>, body: Result<Bytes, BytesRejection>, kind: Kind) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return error(e.status(), e.body_text(), None),
    };
    // Checked in the library (tide_gpu::openai, fuzzed there); max_tokens is clamped to the
    // context once the model has loaded.
    let req = match openai::parse(kind, &body, &api.name, usize::MAX) {
        Ok(r) => r,
        Err(r) => {
            let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
            return error(status, r.message, r.code);
        }
    };
    let ctx_len = match api.status() {
        Status::Ready { ctx_len, .. } => ctx_len,
        Status::Loading => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the model is still loading; retry shortly",
                None,
            )
        }
        Status::Failed(m) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the model did not load: {m}"),
                None,
            )
        }
    };
    let (tx, mut rx) = mpsc::channel(64);
    let (job, shape) = job(&api, kind, req, ctx_len, tx);
    api.counters.queued.fetch_add(1, Ordering::Relaxed);
    match api.jobs.try_send(job) {
        Ok(()) => {}
        Err(e) => {
            api.counters.queued.fetch_sub(1, Ordering::Relaxed);
            return refused(&api, e);
        }
    }
    // The first event says whether the prompt runs, so an error still gets its status.
    let prompt_tokens = match rx.recv().await {
        Some(Event::Started { prompt_tokens }) => prompt_tokens,
        Some(Event::Error { status, message }) => {
            let s = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let code =
                (status == 400 && message.contains("context")).then_some("context_length_exceeded");
            return error(s, message, code);
        }
        _ => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the engine stopped",
                None,
            )
        }
    };
    if shape.stream {
        stream(shape, rx).into_response()
    } else {
        whole(shape, rx, prompt_tokens).await
    }
}

fn refused(api: &Api, e: TrySendError<Job>) -> Response {
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

/// A checked request as the engine's job and the response's shape.
fn job(
    api: &Api,
    kind: Kind,
    r: Request,
    ctx_len: usize,
    events: mpsc::Sender<Event>,
) -> (Job, Shape) {
    let serial = api.next.fetch_add(1, Ordering::Relaxed);
    let seed = r.seed.unwrap_or_else(|| {
        // Unseeded requests differ from one another, as OpenAI's do.
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        t ^ serial.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    });
    let prefix = if kind == Kind::Chat {
        "chatcmpl"
    } else {
        "cmpl"
    };
    let job = Job {
        prompt: r.prompt,
        max_tokens: r.max_tokens.min(ctx_len),
        sampler: SamplerConfig { seed, ..r.sampler },
        stop: r.stop,
        logprobs: r.logprobs,
        events,
    };
    let shape = Shape {
        kind,
        stream: r.stream,
        include_usage: r.include_usage,
        id: format!("{prefix}-tide-{serial}"),
        created: now(),
        model: r.model,
    };
    (job, shape)
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// Log-probabilities in the request kind's shape, for the tokens of one piece or a whole reply;
/// `offset` is the text offset of the first (completions' text_offset).
fn logprobs_json(kind: Kind, lps: &[TokenLogprob], mut offset: usize) -> Value {
    let bytes = |t: &str| t.as_bytes().to_vec();
    match kind {
        Kind::Chat => json!({"content": lps.iter().map(|l| json!({
            "token": l.token, "logprob": l.logprob, "bytes": bytes(&l.token),
            "top_logprobs": l.top.iter().map(|(t, p)| json!({"token": t, "logprob": p, "bytes": bytes(t)})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>()}),
        Kind::Text => {
            let mut offsets = Vec::new();
            for l in lps {
                offsets.push(offset);
                offset += l.token.len();
            }
            json!({
                "tokens": lps.iter().map(|l| &l.token).collect::<Vec<_>>(),
                "token_logprobs": lps.iter().map(|l| l.logprob).collect::<Vec<_>>(),
                "top_logprobs": lps.iter().map(|l| l.top.iter().map(|(t, p)| (t.clone(), json!(p))).collect::<serde_json::Map<_, _>>()).collect::<Vec<_>>(),
                "text_offset": offsets,
            })
        }
    }
}

/// The whole reply as one JSON body.
async fn whole(shape: Shape, mut rx: mpsc::Receiver<Event>, prompt_tokens: usize) -> Response {
    let (mut text, mut lps) = (String::new(), Vec::new());
    let (finish, completion) = loop {
        match rx.recv().await {
            Some(Event::Piece { text: t, logprobs }) => {
                text += &t;
                lps.extend(logprobs);
            }
            Some(Event::Done {
                finish_reason,
                completion_tokens,
                ..
            }) => break (finish_reason, completion_tokens),
            Some(Event::Error { status, message }) => {
                let s = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return error(s, message, None);
            }
            _ => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the engine stopped",
                    None,
                )
            }
        }
    };
    let logprobs = if lps.is_empty() {
        Value::Null
    } else {
        logprobs_json(shape.kind, &lps, 0)
    };
    let choice = match shape.kind {
        Kind::Chat => json!({"index": 0, "message": {"role": "assistant", "content": text},
            "logprobs": logprobs, "finish_reason": finish}),
        Kind::Text => {
            json!({"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish})
        }
    };
    let object = if shape.kind == Kind::Chat {
        "chat.completion"
    } else {
        "text_completion"
    };
    Json(
        json!({"id": shape.id, "object": object, "created": shape.created, "model": shape.model,
        "choices": [choice], "usage": usage(prompt_tokens, completion)}),
    )
    .into_response()
}

/// One streamed chunk: `choices` (empty for the usage chunk) and, with include_usage, `usage`.
fn chunk(shape: &Shape, choices: Value, usage: Option<Value>) -> Sse {
    let object = if shape.kind == Kind::Chat {
        "chat.completion.chunk"
    } else {
        "text_completion"
    };
    let mut c = json!({"id": shape.id, "object": object, "created": shape.created,
        "model": shape.model, "choices": choices});
    if shape.include_usage {
        c["usage"] = usage.unwrap_or(Value::Null);
    }
    Sse::default().data(c.to_string())
}

fn choice(shape: &Shape, text: Option<&str>, logprobs: Value, finish: Option<&str>) -> Value {
    match shape.kind {
        Kind::Chat => {
            let delta = match text {
                Some(t) => json!({"content": t}),
                None => json!({}),
            };
            json!([{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}])
        }
        Kind::Text => {
            json!([{"index": 0, "text": text.unwrap_or(""), "logprobs": logprobs, "finish_reason": finish}])
        }
    }
}

/// The reply as Server-Sent Events: a chunk per piece of text, the finish reason, the usage
/// when asked for, then `[DONE]`. Dropped when the client goes, which frees the engine.
fn stream(shape: Shape, rx: mpsc::Receiver<Event>) -> impl IntoResponse {
    struct St {
        shape: Shape,
        rx: mpsc::Receiver<Event>,
        opened: bool,
        offset: usize,
        tail: Vec<Sse>,
        done: bool,
    }
    let st = St {
        shape,
        rx,
        opened: false,
        offset: 0,
        tail: Vec::new(),
        done: false,
    };
    let events = futures_util::stream::unfold(st, |mut st| async move {
        if let Some(e) = st.tail.pop() {
            return Some((Ok::<_, Infallible>(e), st));
        }
        if st.done {
            return None;
        }
        if !st.opened {
            st.opened = true;
            if st.shape.kind == Kind::Chat {
                let c = json!([{"index": 0, "delta": {"role": "assistant", "content": ""},
                    "logprobs": null, "finish_reason": null}]);
                return Some((Ok(chunk(&st.shape, c, None)), st));
            }
        }
        loop {
            match st.rx.recv().await {
                Some(Event::Piece { text, logprobs }) => {
                    if text.is_empty() && logprobs.is_empty() {
                        continue;
                    }
                    let lp = if logprobs.is_empty() {
                        Value::Null
                    } else {
                        logprobs_json(st.shape.kind, &logprobs, st.offset)
                    };
                    st.offset += text.len();
                    let c = choice(&st.shape, Some(&text), lp, None);
                    return Some((Ok(chunk(&st.shape, c, None)), st));
                }
                Some(Event::Done {
                    finish_reason,
                    prompt_tokens,
                    completion_tokens,
                }) => {
                    st.done = true;
                    // Sent in reverse order from `tail`: the finish, the usage, [DONE].
                    st.tail.push(Sse::default().data("[DONE]"));
                    if st.shape.include_usage {
                        let u = usage(prompt_tokens, completion_tokens);
                        st.tail.push(chunk(&st.shape, json!([]), Some(u)));
                    }
                    let c = choice(&st.shape, None, Value::Null, Some(finish_reason));
                    return Some((Ok(chunk(&st.shape, c, None)), st));
                }
                Some(Event::Error { message, .. }) => {
                    st.done = true;
                    let e = json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}});
                    return Some((Ok(Sse::default().data(e.to_string())), st));
                }
                _ => return None,
            }
        }
    });
    SseBody::new(events)
}
