//! The serving core, one for `tide serve` and the browser: continuous batching over the K/V
//! cache slots with a prefix cache (scheduler.rs, prefix.rs), stop strings (stop.rs),
//! log-probabilities (logprobs.rs), the OpenAI response bodies (shape.rs) and what is counted
//! (counters.rs), embeddings (embed.rs), structured output (grammar.rs). Requests come checked by `crate::openai`.
pub mod counters;
pub mod embed;
pub mod grammar;
pub mod logprobs;
pub mod prefix;
pub mod scheduler;
pub mod shape;
pub mod stop;

pub use counters::Counters;
pub use scheduler::{Event, Job, NoPrefetch, Prefetch, Scheduler, Sink, SinkError};
pub use shape::{Chunker, Chunks, Shape, Whole};
