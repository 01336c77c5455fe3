//! The generation loop: prefill the prompt, then sample token by token, streaming text.
use std::time::Instant;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::tokenizer::TokenizerInfo;
use crate::sample::Sampler;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Generation {
    pub prompt_tokens: Vec<u32>,
    pub tokens: Vec<u32>,
    pub text: String,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
    /// "eos", "max_tokens" or "context_full".
    pub stop: String,
}

/// Generate up to `max_tokens` after `prompt`, calling `on_text` with each new piece of text
/// (always whole UTF-8 characters). Stops at an end-of-sequence token (not emitted).
pub fn generate(
    engine: &mut Engine,
    tok: &TokenizerInfo,
    prompt: &[u32],
    max_tokens: usize,
    sampler: &mut Sampler,
    ctx_len: usize,
    mut on_text: impl FnMut(&str),
) -> Result<Generation> {
    if prompt.is_empty() {
        return Err(Error::Input("the prompt is empty (no tokens)".into()));
    }
    if prompt.len() >= ctx_len {
        return Err(Error::Input(format!(
            "the prompt has {} tokens but the context holds {ctx_len}; shorten it or raise --ctx",
            prompt.len()
        )));
    }
    engine.reset();
    let mut history = prompt.to_vec();
    let mut tokens = Vec::new();
    let mut stream = tok.tokenizer.as_ref().map(|t| t.decode_stream(false));
    let mut text = String::new();
    let mut stop = "max_tokens";
    let t0 = Instant::now();
    engine.feed(prompt)?;
    let mut t_first = None;
    while tokens.len() < max_tokens {
        let next = engine.next_token(sampler, &history)?;
        if t_first.is_none() {
            t_first = Some(Instant::now());
        }
        if tok.eos.contains(&next) {
            stop = "eos";
            break;
        }
        tokens.push(next);
        history.push(next);
        if let Some(s) = stream.as_mut() {
            if let Some(piece) = s.step(next).map_err(|e| Error::Tokenizer(e.to_string()))? {
                on_text(&piece);
                text.push_str(&piece);
            }
        }
        if tokens.len() == max_tokens {
            break;
        }
        if engine.pos() >= ctx_len {
            stop = "context_full";
            break;
        }
        engine.feed(&[next])?;
    }
    let t_end = Instant::now();
    let t_first = t_first.unwrap_or(t_end);
    let prefill_s = (t_first - t0).as_secs_f64();
    let decode_s = (t_end - t_first).as_secs_f64();
    let decoded = tokens.len().saturating_sub(1);
    Ok(Generation {
        prompt_tokens: prompt.to_vec(),
        tokens,
        text,
        prefill_tokens_per_s: prompt.len() as f64 / prefill_s.max(1e-9),
        decode_tokens_per_s: if decoded > 0 {
            decoded as f64 / decode_s.max(1e-9)
        } else {
            0.0
        },
        stop: stop.into(),
    })
}
