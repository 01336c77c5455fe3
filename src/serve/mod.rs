//! The serving core, one for `tide serve` and the browser: continuous batching over the K/V
//! cache slots with a prefix cache (scheduler.rs, prefix.rs), stop strings (stop.rs),
//! log-probabilities (logprobs.rs), the OpenAI response bodies (shape.rs) and what is counted
//! (counters.rs), embeddings (embed.rs), structured output (grammar.rs), tool calls (tools.rs). Requests come checked by `crate::openai`.
pub mod counters;
pub mod embed;
pub mod grammar;
pub mod logprobs;
pub mod prefix;
pub mod scheduler;
pub mod shape;
pub mod stop;
pub mod tools;

pub use counters::Counters;
pub use scheduler::{Event, Job, NoPrefetch, Prefetch, Scheduler, Sink, SinkError};
pub use shape::{Chunker, Chunks, Shape, Whole};

use crate::openai::{Kind, Request};

/// A checked request as the scheduler's job and its reply's shape, and whether it streams:
/// the same for `tide serve` and the browser. `serial` numbers the reply's id; `seed` is used
/// when the request gave none; without `max_tokens` a chat may take up to `default_max` and
/// a completion 16 (both at most `default_max` and the context), running to the context's
/// end rather than being refused when the prompt leaves less.
#[allow(clippy::too_many_arguments)]
pub fn job_for<S>(
    r: Request,
    kind: Kind,
    serial: u64,
    seed: u64,
    default_max: usize,
    ctx_len: usize,
    created: u64,
    events: S,
) -> (Job<S>, Shape, bool) {
    // Not asked: the context's end (or default_max) for chat, OpenAI's 16 for completions.
    let unasked = match kind {
        Kind::Chat => default_max,
        Kind::Text => default_max.min(16),
    };
    let job = Job {
        prompt: r.prompt,
        max_tokens: r.max_tokens.unwrap_or(unasked).min(ctx_len),
        fit: r.max_tokens.is_some(),
        sampler: crate::SamplerConfig {
            seed: r.seed.unwrap_or(seed),
            ..r.sampler
        },
        stop: r.stop,
        logprobs: r.logprobs,
        format: r.format,
        tools: r.tools,
        events,
        arrived: web_time::Instant::now(),
    };
    let prefix = match kind {
        Kind::Chat => "chatcmpl",
        Kind::Text => "cmpl",
    };
    let shape = Shape {
        kind,
        include_usage: r.include_usage,
        id: format!("{prefix}-tide-{serial}"),
        created,
        model: r.model,
    };
    (job, shape, r.stream)
}
