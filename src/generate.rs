//! The generation loop: prefill the prompt, then sample token by token, streaming text.
//! One stepper (`Run`) serves the blocking native loop and the browser's async one.
use web_time::Instant;

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
    /// Seconds from the start to the first token chosen (prefill included).
    pub time_to_first_token_s: f64,
    /// "eos", "max_tokens", "context_full" or "cancelled".
    pub stop: String,
}

/// One generation in progress. `start` feeds the prompt; each `step` chooses one token and
/// returns its text (whole UTF-8 characters only, so it may be empty), or None once stopped.
pub struct Run {
    prompt: Vec<u32>,
    history: Vec<u32>,
    tokens: Vec<u32>,
    text: String,
    max_tokens: usize,
    ctx_len: usize,
    stop: Option<&'static str>,
    /// Chosen by `choose`, not yet fed.
    chosen: Option<u32>,
    t0: Instant,
    t_first: Option<Instant>,
    t_end: Option<Instant>,
    /// Keep each step's logits (`take_logits`), for log-probabilities.
    keep_logits: bool,
    logits: Option<Vec<f32>>,
}

impl Run {
    /// Check the prompt against the context, reset the engine and submit the prompt.
    pub fn start(
        engine: &mut Engine,
        prompt: &[u32],
        max_tokens: usize,
        ctx_len: usize,
    ) -> Result<Run> {
        let run = Run::begin(prompt, max_tokens, ctx_len)?;
        engine.reset();
        engine.feed(prompt)?;
        Ok(run)
    }

    /// A run whose prompt the caller feeds (a server's scheduler, sharing steps between
    /// runs): only the bookkeeping, from `accept` on.
    pub fn begin(prompt: &[u32], max_tokens: usize, ctx_len: usize) -> Result<Run> {
        if prompt.is_empty() {
            return Err(Error::Input("the prompt is empty (no tokens)".into()));
        }
        if prompt.len() >= ctx_len {
            return Err(Error::Input(format!(
                "the prompt has {} tokens but the context holds {ctx_len}; shorten it or raise the context length",
                prompt.len()
            )));
        }
        let t0 = Instant::now();
        Ok(Run {
            prompt: prompt.to_vec(),
            history: prompt.to_vec(),
            tokens: Vec::new(),
            text: String::new(),
            max_tokens,
            ctx_len,
            stop: (max_tokens == 0).then_some("max_tokens"),
            chosen: None,
            t0,
            t_first: None,
            t_end: None,
            keep_logits: false,
            logits: None,
        })
    }

    fn finish(&mut self, why: &'static str) {
        self.stop.get_or_insert(why);
        self.t_end.get_or_insert_with(Instant::now);
    }

    /// From now on keep the logits each step chose from (read back whole, so slower).
    pub fn keep_logits(&mut self, on: bool) {
        self.keep_logits = on;
    }

    /// The logits the last step chose from, when `keep_logits` is on.
    pub fn take_logits(&mut self) -> Option<Vec<f32>> {
        self.logits.take()
    }

    /// Stop here (the caller gave up): `finish` then reports "cancelled".
    pub fn cancel(&mut self) {
        self.finish("cancelled");
        self.chosen = None;
    }

    /// Choose the next token, feed it, and return its new text.
    pub async fn step(
        &mut self,
        engine: &mut Engine,
        tok: &TokenizerInfo,
        sampler: &mut Sampler,
    ) -> Result<Option<String>> {
        let piece = self.choose(engine, tok, sampler).await?;
        self.feed_chosen(engine)?;
        Ok(piece)
    }

    /// `step`'s first half: choose the next token and return its new text; it is fed by
    /// `feed_chosen` (the browser fetches its memory rows in between).
    pub async fn choose(
        &mut self,
        engine: &mut Engine,
        tok: &TokenizerInfo,
        sampler: &mut Sampler,
    ) -> Result<Option<String>> {
        if self.stop.is_some() {
            return Ok(None);
        }
        let next = if self.keep_logits {
            let (t, l) = engine
                .next_token_and_logits_async(sampler, &self.history)
                .await?;
            self.logits = Some(l);
            t
        } else {
            engine.next_token_async(sampler, &self.history).await?
        };
        self.accept(next, tok, engine.pos())
    }

    /// Take `next` as the chosen token (the sequence now holds `pos` positions) and return
    /// its new text, or None at the end of the sequence; `chosen` then holds it to feed
    /// unless the run is done.
    pub fn accept(&mut self, next: u32, tok: &TokenizerInfo, pos: usize) -> Result<Option<String>> {
        if self.stop.is_some() {
            return Ok(None);
        }
        self.t_first.get_or_insert_with(Instant::now);
        if tok.eos.contains(&next) {
            self.finish("eos");
            return Ok(None);
        }
        self.tokens.push(next);
        self.history.push(next);
        let piece = self.new_text(tok)?;
        if self.tokens.len() >= self.max_tokens {
            self.finish("max_tokens");
        } else if pos >= self.ctx_len {
            self.finish("context_full");
        } else {
            self.chosen = Some(next);
        }
        Ok(Some(piece))
    }

    /// The prompt and every token chosen so far (for the repetition penalty).
    pub fn history(&self) -> &[u32] {
        &self.history
    }

    /// Whether the run has stopped.
    pub fn done(&self) -> bool {
        self.stop.is_some()
    }

    /// Take the token `accept` chose, to feed it (None once the run is done).
    pub fn take_chosen(&mut self) -> Option<u32> {
        self.chosen.take()
    }

    /// The tokens generated so far.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// The token `choose` picked that is still to be fed.
    pub fn chosen(&self) -> Option<u32> {
        self.chosen
    }

    /// Feed the token `choose` picked, if the run goes on.
    pub fn feed_chosen(&mut self, engine: &mut Engine) -> Result<()> {
        match self.chosen.take() {
            Some(t) => engine.feed(&[t]),
            None => Ok(()),
        }
    }

    /// The text the last token added: the decoded tokens so far minus what was already given,
    /// held back while it ends inside a UTF-8 character (a byte token split it).
    fn new_text(&mut self, tok: &TokenizerInfo) -> Result<String> {
        if tok.tokenizer.is_none() {
            return Ok(String::new());
        }
        let full = tok.decode(&self.tokens)?;
        if full.ends_with('\u{FFFD}') || !full.starts_with(&self.text) {
            return Ok(String::new());
        }
        let piece = full[self.text.len()..].to_string();
        self.text = full;
        Ok(piece)
    }

    /// The record of the run (call once it is done, or to report one cut short).
    pub fn result(&mut self) -> Generation {
        self.finish("cancelled");
        let t_end = self.t_end.unwrap_or_else(Instant::now);
        let t_first = self.t_first.unwrap_or(t_end);
        let prefill_s = (t_first - self.t0).as_secs_f64();
        let decode_s = (t_end - t_first).as_secs_f64();
        let decoded = self.tokens.len().saturating_sub(1);
        Generation {
            prompt_tokens: self.prompt.clone(),
            tokens: self.tokens.clone(),
            text: self.text.clone(),
            prefill_tokens_per_s: self.prompt.len() as f64 / prefill_s.max(1e-9),
            decode_tokens_per_s: if decoded > 0 {
                decoded as f64 / decode_s.max(1e-9)
            } else {
                0.0
            },
            time_to_first_token_s: prefill_s,
            stop: self.stop.unwrap_or("cancelled").into(),
        }
    }
}

/// Generate up to `max_tokens` after `prompt`, calling `on_text` with each new piece of text
/// (always whole UTF-8 characters). Stops at an end-of-sequence token (not emitted).
#[cfg(not(target_arch = "wasm32"))]
pub fn generate(
    engine: &mut Engine,
    tok: &TokenizerInfo,
    prompt: &[u32],
    max_tokens: usize,
    sampler: &mut Sampler,
    ctx_len: usize,
    mut on_text: impl FnMut(&str),
) -> Result<Generation> {
    let mut run = Run::start(engine, prompt, max_tokens, ctx_len)?;
    while let Some(piece) = pollster::block_on(run.step(engine, tok, sampler))? {
        if !piece.is_empty() {
            on_text(&piece);
        }
    }
    Ok(run.result())
}
