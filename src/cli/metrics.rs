//! GET /metrics: the serving core's counters (tide_gpu::serve::Counters) in Prometheus' text
//! exposition format (version 0.0.4).
use std::fmt::Write;

use tide_gpu::serve::counters::{Counters, Histogram};

/// One metric's HELP and TYPE lines.
fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn one(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    head(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    head(out, name, "histogram", help);
    let (cum, sum) = h.read();
    for (b, c) in h.bounds.iter().zip(&cum) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
    }
    let count = cum.last().copied().unwrap_or(0);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {sum}");
    let _ = writeln!(out, "{name}_count {count}");
}

/// The exposition of `n`, for a server of `slots` K/V cache slots (0 while loading).
pub fn render(n: &Counters, slots: usize) -> String {
    let g = Counters::get;
    let mut out = String::new();
    head(
        &mut out,
        "tide_requests_total",
        "counter",
        "API responses (/v1 and /metrics) by HTTP status.",
    );
    for (status, count) in n.statuses() {
        let _ = writeln!(out, "tide_requests_total{{status=\"{status}\"}} {count}");
    }
    let counters = [
        (
            "tide_prompt_tokens_total",
            "Prompt tokens of the requests run.",
            &n.prompt_tokens,
        ),
        (
            "tide_prompt_cached_tokens_total",
            "Prompt tokens a K/V cache slot held already (prefix cache).",
            &n.cached_tokens,
        ),
        (
            "tide_prefix_cache_hits_total",
            "Requests that reused a slot's prefix.",
            &n.prefix_hits,
        ),
        (
            "tide_generated_tokens_total",
            "Tokens generated.",
            &n.generated_tokens,
        ),
        (
            "tide_requests_completed_total",
            "Requests run to their end.",
            &n.completed,
        ),
        (
            "tide_requests_cancelled_total",
            "Requests whose client left before the end.",
            &n.cancelled,
        ),
        ("tide_decode_steps_total", "Decode steps run.", &n.steps),
        (
            "tide_shared_decode_steps_total",
            "Decode steps that several requests shared.",
            &n.shared_steps,
        ),
        (
            "tide_device_resets_total",
            "GPU devices lost and replaced.",
            &n.device_resets,
        ),
    ];
    for (name, help, v) in counters {
        one(&mut out, name, "counter", help, g(v));
    }
    one(
        &mut out,
        "tide_queue_depth",
        "gauge",
        "Requests waiting for a slot.",
        g(&n.queued),
    );
    one(
        &mut out,
        "tide_running_slots",
        "gauge",
        "K/V cache slots running a request.",
        g(&n.running),
    );
    one(
        &mut out,
        "tide_slots",
        "gauge",
        "K/V cache slots (requests decoded together).",
        slots as u64,
    );
    histogram(
        &mut out,
        "tide_time_to_first_token_seconds",
        "From a request's arrival to its first generated token.",
        &n.ttft,
    );
    histogram(
        &mut out,
        "tide_inter_token_seconds",
        "Between two generated tokens of one request.",
        &n.inter_token,
    );
    out
}
