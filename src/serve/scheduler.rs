//! Continuous batching: up to `engine.slots()` requests at once, each in its own K/V cache
//! slot. Requests join between rounds; their prompts are fed in chunks between the shared
//! decode steps; a request whose sink has closed (its client left) frees its slot at the next
//! round. A new request takes the slot holding the longest prefix of its prompt (prefix.rs).
//!
//! The front end owns the loop: it admits jobs while `has_room`, and awaits `round` while
//! `busy`. `tide serve` runs it on its engine thread; the browser's worker runs it between
//! messages.
use std::collections::VecDeque;
use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use web_time::Instant;

use super::counters::Counters;
use super::grammar::{self, Constraint, Grammar};
use super::logprobs::{token_logprob, TokenLogprob};
use super::prefix::PrefixCache;
use super::stop::StopFilter;
use super::tools::{self, Syntax};
use crate::generate::Run;
use crate::model::tokenizer::TokenizerInfo;
use crate::openai::{Format, Prompt, ToolChoice, Tools};
use crate::{Engine, Result, Sampler, SamplerConfig};

/// What a request's handler hears, in order: Started (or Error), Pieces, then Done or Error.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The prompt fits and runs: its length in tokens, and how many of them a slot held.
    Started {
        prompt_tokens: usize,
        cached_tokens: usize,
        /// The reply is to be read for tool calls, written in this syntax (the request has
        /// tools and a choice other than "none").
        calls: Option<Syntax>,
    },
    /// New text (possibly empty: part of a character, or held back as a possible stop string)
    /// and, when asked for, the log-probabilities of the tokens behind it.
    Piece {
        text: String,
        logprobs: Vec<TokenLogprob>,
    },
    Done {
        /// "stop" (end of sequence or a stop string) or "length".
        finish_reason: &'static str,
        prompt_tokens: usize,
        cached_tokens: usize,
        completion_tokens: usize,
    },
    /// The request failed: an HTTP status and a message naming what is wrong.
    Error { status: u16, message: String },
}

/// Why an event was not taken.
pub enum SinkError {
    /// The handler has not read enough yet: try again next round.
    Full(Event),
    /// The handler is gone.
    Closed,
}

/// Where a request's events go: a channel to an HTTP handler, a queue the browser's worker
/// drains. Sending never blocks, so a slow reader holds up no one else.
pub trait Sink {
    fn try_send(&mut self, ev: Event) -> std::result::Result<(), SinkError>;
    fn is_closed(&self) -> bool;
}

/// One request for the scheduler.
pub struct Job<S> {
    pub prompt: Prompt,
    /// The most tokens to generate.
    pub max_tokens: usize,
    /// `max_tokens` was asked for: refuse (400) a prompt that leaves less room in the
    /// context, rather than stopping at the context's end.
    pub fit: bool,
    pub sampler: SamplerConfig,
    pub stop: Vec<String>,
    /// Log-probabilities of each chosen token and of this many alternatives.
    pub logprobs: Option<usize>,
    /// JSON output (a schema's, or any object): each token chosen from the grammar's mask.
    pub format: Option<Format>,
    /// Declared tools: shown to the model by its template, forced by a grammar when the
    /// choice requires a call, and read back from its reply unless the choice is "none".
    pub tools: Option<Tools>,
    pub events: S,
    /// When it arrived (time to first token counts from here).
    pub arrived: Instant,
}

/// Fetches memory rows a step needs before it runs (the browser streams them over HTTP).
pub trait Prefetch {
    fn prefetch<'a>(&'a self, tokens: &'a [u32]) -> LocalBoxFuture<'a, Result<()>>;
}

/// Rows are local or resident: nothing to fetch.
pub struct NoPrefetch;

impl Prefetch for NoPrefetch {
    fn prefetch<'a>(&'a self, _: &'a [u32]) -> LocalBoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// Most prompt tokens fed in one round, so that a long prompt does not stall the streams
/// already running for longer than a batch takes.
const PREFILL_CHUNK: usize = 64;
/// While other requests decode, the last this many tokens of a prompt ride in the shared
/// steps beside the running requests' next tokens, as many a round as the step has room for
/// (at least one): a batch of a few tokens costs about what a long one does (on CPU adapters)
/// and would stall every stream meanwhile, where a token more in a step costs a fraction of a
/// step. (Measured on SmolLM2 under the load test: 32 against 8 gave the same throughput
/// ratios and shorter stalls.) A request alone feeds all its prompt but the last token as
/// batches.
const IN_STEP_PROMPT: usize = 32;
/// Events a client may leave unread before it counts as gone (its slot is then freed).
const MAX_UNREAD: usize = 4096;

/// A request's events on their way to its handler.
struct Outbox<S> {
    sink: S,
    queue: VecDeque<Event>,
}

impl<S: Sink> Outbox<S> {
    fn push(&mut self, ev: Event) {
        self.queue.push_back(ev);
    }

    /// Hand over what the sink takes now; false once the handler is gone or has left too much
    /// unread.
    fn flush(&mut self) -> bool {
        while let Some(ev) = self.queue.pop_front() {
            match self.sink.try_send(ev) {
                Ok(()) => {}
                Err(SinkError::Full(ev)) => {
                    self.queue.push_front(ev);
                    break;
                }
                Err(SinkError::Closed) => return false,
            }
        }
        !self.sink.is_closed() && self.queue.len() <= MAX_UNREAD
    }
}

/// A request in a K/V cache slot: its prompt is fed in chunks, then it takes one token per
/// round, in a step shared with the other requests decoding.
struct Active<S> {
    out: Outbox<S>,
    slot: usize,
    prompt: Vec<u32>,
    /// Prompt tokens the slot holds (reused or fed).
    fed: usize,
    /// Tokens the slot holds: the prompt's fed, then the generated ones fed back.
    pos: usize,
    /// Prompt tokens the slot held when the request came.
    cached: usize,
    run: Run,
    sampler: Sampler,
    stops: StopFilter,
    logprobs: Option<usize>,
    /// What the next token is chosen from, once the last step gave it.
    ready: Option<Ready>,
    /// The token chosen and not yet fed.
    next: Option<u32>,
    /// A stop string ended it.
    stopped: bool,
    /// Its slot still holds more than the reused prefix.
    fresh: bool,
    /// Structured output: where the reply is in its grammar, and the mask of the next
    /// token once computed.
    constraint: Option<Constraint>,
    mask: Option<llguidance::toktrie::SimpleVob>,
    arrived: Instant,
    last_token: Option<Instant>,
}

impl<S> Active<S> {
    /// Prompt tokens not fed yet.
    fn prompt_left(&self) -> usize {
        self.prompt.len() - self.fed
    }

    /// A step fed this request's token (a prompt token, or the one chosen): whether its
    /// next token is to be chosen now (the prompt is all fed).
    fn fed_one(&mut self) -> bool {
        self.pos += 1;
        if self.prompt_left() > 0 {
            self.fed += 1;
            if self.prompt_left() > 0 {
                return false;
            }
        }
        self.next = None;
        true
    }

    /// The tokens its slot holds.
    fn held(&self) -> Vec<u32> {
        let seq = self.prompt.iter().chain(self.run.tokens());
        seq.take(self.pos).copied().collect()
    }
}

/// What a request's next token is chosen from.
enum Ready {
    /// Every logit of its last position (a shared step, or log-probabilities wanted).
    Logits(Vec<f32>),
    /// Chosen already, on the GPU.
    Token(u32),
    /// The GPU's most likely tokens that the grammar allows, best first (structured output
    /// without reading every logit).
    Candidates(Vec<(u32, f32)>),
}

/// How a request left its slot.
enum Ended {
    Finished,
    /// Its client went away.
    ClientGone,
    Failed(u16, String),
}

pub struct Scheduler<S> {
    ctx_len: usize,
    n: Arc<Counters>,
    prefix: PrefixCache,
    /// Fault injection: lose the device after this many more steps.
    pub fault: Option<usize>,
    /// The grammar engine over the model's vocabulary, made at the first structured request
    /// (or why it cannot be).
    grammar: Option<std::result::Result<Arc<Grammar>, String>>,
    active: Vec<Active<S>>,
    /// Requests that are done but whose last events their handlers have not taken yet.
    draining: Vec<Outbox<S>>,
}

impl<S: Sink> Scheduler<S> {
    /// A scheduler for `slots` sequences of `ctx_len` tokens; `prefix_cache` lets a request
    /// reuse the K/V of a slot's earlier tokens.
    pub fn new(ctx_len: usize, slots: usize, prefix_cache: bool, n: Arc<Counters>) -> Self {
        Scheduler {
            ctx_len,
            n,
            prefix: PrefixCache::new(slots.max(1), prefix_cache),
            fault: None,
            grammar: None,
            active: Vec::new(),
            draining: Vec::new(),
        }
    }

    /// What it counts.
    pub fn counters(&self) -> &Counters {
        &self.n
    }

    /// A slot is free for another request.
    pub fn has_room(&self, engine: &Engine) -> bool {
        self.active.len() < engine.slots()
    }

    /// Requests are running (await `round`).
    pub fn busy(&self) -> bool {
        !self.active.is_empty()
    }

    /// Done requests whose handlers have not taken their last events; true while some are
    /// left.
    pub fn drain(&mut self) -> bool {
        self.draining
            .retain_mut(|o| o.flush() && !o.queue.is_empty());
        !self.draining.is_empty()
    }

    /// A free slot for work outside the scheduler (an embedding), chosen as a request's would
    /// be without a prefix; `slots_changed` or `give_back` after.
    pub fn lend_slot(&mut self, engine: &Engine) -> Option<usize> {
        let busy: Vec<usize> = self.active.iter().map(|a| a.slot).collect();
        let slots = engine.slots();
        (self.prefix)
            .take(&[], |s| s < slots && !busy.contains(&s))
            .map(|(s, _)| s)
    }

    /// A lent slot comes back holding nothing the cache can reuse.
    pub fn give_back(&mut self, slot: usize) {
        self.prefix.release(slot, Vec::new());
    }

    /// The slots were used outside the scheduler (not while it is busy): what it remembers
    /// of their tokens no longer holds.
    pub fn slots_changed(&mut self) {
        self.prefix.forget();
    }

    /// The engine was replaced (a lost device): its slots hold nothing.
    pub fn engine_replaced(&mut self) {
        self.prefix.forget();
        Counters::add(&self.n.device_resets, 1);
    }

    /// Take `job` into a free slot, or answer it: skipped when its client left while it
    /// waited, 400 when its prompt cannot run.
    pub fn admit(&mut self, job: Job<S>, tok: &TokenizerInfo, engine: &Engine) {
        let n = self.n.clone();
        Counters::sub_one(&n.queued);
        if job.events.is_closed() {
            Counters::add(&n.cancelled, 1);
            n.last_cancelled_tokens
                .store(0, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        let mut out = Outbox {
            sink: job.events,
            queue: VecDeque::new(),
        };
        let refuse = |mut out: Outbox<S>, message: String, draining: &mut Vec<Outbox<S>>| {
            out.push(Event::Error {
                status: 400,
                message,
            });
            out.flush();
            draining.push(out);
        };
        // Tools need a template that shows them and a call syntax tide reads.
        let syntax = match &job.tools {
            None => None,
            Some(_) => match Syntax::of(tok.chat_template.as_deref()) {
                Ok(s) => Some(s),
                Err(m) => return refuse(out, format!("'tools': {m}"), &mut self.draining),
            },
        };
        let prompt = match &job.prompt {
            Prompt::Text(t) => Ok(t.clone()),
            // With "none" the tools are still shown, as OpenAI shows them: the model is told
            // what exists and its reply is taken as text.
            Prompt::Chat(m) => {
                let specs: Option<Vec<serde_json::Value>> =
                    (job.tools.as_ref()).map(|t| t.list.iter().map(|t| t.spec.clone()).collect());
                tok.chat_prompt_with(m, specs.as_deref())
            }
        };
        let ctx = self.ctx_len;
        let started = prompt
            .and_then(|text| tok.encode(&text, true))
            .and_then(|ids| match ids.len().saturating_add(job.max_tokens) {
                n if job.fit && n > ctx => Err(crate::Error::Input(format!(
                    "the prompt has {} tokens and max_tokens asks for {} more, {n} in all: \
                     more than the context of {ctx} tokens",
                    ids.len(),
                    job.max_tokens
                ))),
                _ => Run::begin(&ids, job.max_tokens, ctx).map(|r| (ids, r)),
            });
        let (prompt, run) = match started {
            Ok(x) => x,
            Err(e) => return refuse(out, e.to_string(), &mut self.draining),
        };
        // A forced tool choice is a grammar of its calls; response_format is the other kind
        // (openai.rs refuses the two together).
        let forced = match (&job.tools, syntax) {
            (Some(t), Some(s)) => tools::forcing_grammar(s, &t.list, &t.choice),
            _ => None,
        };
        let constraint = match (forced, job.format.as_ref()) {
            (None, None) => Ok(None),
            (Some(l), _) => (self.grammar(tok, engine))
                .and_then(|g| g.constrain_lark(&l))
                .map(Some),
            (None, Some(f)) => (self.grammar(tok, engine))
                .and_then(|g| g.constrain(f))
                .map(Some),
        };
        let constraint = match constraint {
            Ok(c) => c,
            Err(m) => return refuse(out, m, &mut self.draining),
        };
        let calls = match &job.tools {
            Some(t) if t.choice != ToolChoice::None => syntax,
            _ => None,
        };
        let busy: Vec<usize> = self.active.iter().map(|a| a.slot).collect();
        let taken = self
            .prefix
            .take(&prompt, |s| s < engine.slots() && !busy.contains(&s));
        let Some((slot, cached)) = taken else {
            out.push(Event::Error {
                status: 503,
                message: "no K/V cache slot is free (admitted without room)".into(),
            });
            out.flush();
            self.draining.push(out);
            return;
        };
        out.push(Event::Started {
            prompt_tokens: prompt.len(),
            cached_tokens: cached,
            calls,
        });
        Counters::add(&n.running, 1);
        Counters::add(&n.prompt_tokens, prompt.len() as u64);
        Counters::add(&n.cached_tokens, cached as u64);
        if cached > 0 {
            Counters::add(&n.prefix_hits, 1);
        }
        self.active.push(Active {
            out,
            slot,
            prompt,
            fed: cached,
            pos: cached,
            cached,
            run,
            sampler: Sampler::new(job.sampler),
            stops: StopFilter::new(job.stop),
            logprobs: job.logprobs,
            ready: None,
            next: None,
            stopped: false,
            fresh: true,
            constraint,
            mask: None,
            arrived: job.arrived,
            last_token: None,
        });
    }

    /// The grammar engine, made on first use.
    fn grammar(
        &mut self,
        tok: &TokenizerInfo,
        engine: &Engine,
    ) -> std::result::Result<Arc<Grammar>, String> {
        self.grammar
            .get_or_insert_with(|| {
                Grammar::new(tok, engine.vocab())
                    .map(Arc::new)
                    .map_err(|e| format!("structured output is not available for this model: {e}"))
            })
            .clone()
    }

    /// One round: a prompt chunk, every running request's next token, one shared step. An
    /// error from the engine is returned when its device is lost (the front end then fails
    /// every request and opens another); any other fails the requests running.
    pub async fn round(
        &mut self,
        engine: &mut Engine,
        tok: &TokenizerInfo,
        rows: &dyn Prefetch,
    ) -> Result<()> {
        match self.round_inner(engine, tok, rows).await {
            Err(e) if !engine.is_lost() => {
                self.fail_all(500, &e.to_string());
                Ok(())
            }
            r => r,
        }
    }

    async fn round_inner(
        &mut self,
        engine: &mut Engine,
        tok: &TokenizerInfo,
        rows: &dyn Prefetch,
    ) -> Result<()> {
        // Clients that left free their slots now.
        let mut i = 0;
        while i < self.active.len() {
            if self.active[i].out.flush() {
                i += 1;
            } else {
                let a = self.active.swap_remove(i);
                self.leave(a, Ended::ClientGone);
            }
        }
        // New requests keep their slot's reused prefix and drop the rest.
        for a in self.active.iter_mut().filter(|a| a.fresh) {
            engine.use_slot(a.slot)?;
            engine.truncate(a.pos)?;
            a.fresh = false;
        }
        // The oldest prompt with more than the in-step tail left gets one batch.
        let tail = if self.active.iter().any(|a| a.prompt_left() == 0) {
            IN_STEP_PROMPT
        } else {
            1
        };
        if let Some(i) = self.active.iter().position(|a| a.prompt_left() > tail) {
            let a = &mut self.active[i];
            // The tail rides in the steps, so this never ends the prompt.
            let end = (a.fed + PREFILL_CHUNK).min(a.prompt.len() - tail);
            rows.prefetch(&a.prompt[a.fed..end]).await?;
            engine.use_slot(a.slot)?;
            match engine.feed(&a.prompt[a.fed..end]) {
                Ok(()) => {
                    a.pos += end - a.fed;
                    a.fed = end;
                }
                Err(e) if engine.is_lost() => return Err(e),
                Err(e) => {
                    let a = self.active.swap_remove(i);
                    self.leave(a, Ended::Failed(500, e.to_string()));
                }
            }
        }
        // Every request whose last step is done chooses its next token.
        let mut i = 0;
        while i < self.active.len() {
            // A request's own failure (its grammar, its text) ends it alone.
            let left = self
                .choose(i, tok)
                .unwrap_or_else(|e| Some(Ended::Failed(500, e.to_string())));
            match left {
                None => i += 1,
                Some(left) => {
                    let a = self.active.swap_remove(i);
                    self.leave(a, left);
                }
            }
        }
        // One step for all chosen tokens, and tokens of each prompt's tail: at least one of
        // each, more while the step has room (a step of up to seq_group tokens reads the
        // weights once; more would take another step), in the order the requests are held.
        // Logits are wanted for the chosen tokens and a prompt's last, not for the rest.
        let mut toks: Vec<(usize, u32)> = (self.active.iter())
            .filter(|a| a.prompt_left() == 0)
            .filter_map(|a| a.next.map(|t| (a.slot, t)))
            .collect();
        let mut want = vec![true; toks.len()];
        let mut room = engine.seq_group().saturating_sub(toks.len());
        for a in self
            .active
            .iter()
            .filter(|a| (1..=tail).contains(&a.prompt_left()))
        {
            let k = a.prompt_left().min(room.max(1));
            toks.extend(a.prompt[a.fed..a.fed + k].iter().map(|&t| (a.slot, t)));
            want.extend((1..=k).map(|i| i == a.prompt_left()));
            room = room.saturating_sub(k);
        }
        if toks.is_empty() {
            return Ok(());
        }
        let ids: Vec<u32> = toks.iter().map(|&(_, t)| t).collect();
        rows.prefetch(&ids).await?;
        if self.fault == Some(0) {
            self.fault = None;
            engine.lose_device();
        }
        Counters::add(&self.n.steps, 1);
        if let [(slot, t)] = toks[..] {
            self.step_alone(engine, slot, t).await?;
        } else {
            Counters::add(&self.n.shared_steps, 1);
            let out = engine.step_seqs_some_async(&toks, &want).await?;
            for ((slot, _), l) in toks.into_iter().zip(out) {
                if let Some(a) = self.active.iter_mut().find(|a| a.slot == slot) {
                    if a.fed_one() {
                        let l = l.ok_or_else(|| {
                            crate::Error::Gpu(format!("slot {slot}: no logits for its step"))
                        })?;
                        a.ready = Some(Ready::Logits(l));
                    }
                }
            }
        }
        if let Some(left) = self.fault.as_mut() {
            *left = left.saturating_sub(1);
        }
        Ok(())
    }

    /// A step of one request's token: where it wants no log-probabilities, chosen on the
    /// GPU (its top-k: a few bytes read back instead of every logit), as `tide generate` does.
    async fn step_alone(&mut self, engine: &mut Engine, slot: usize, t: u32) -> Result<()> {
        let Some(a) = self.active.iter_mut().find(|a| a.slot == slot) else {
            return Ok(());
        };
        engine.use_slot(slot)?;
        engine.feed(&[t])?;
        if !a.fed_one() {
            return Ok(()); // more prompt to feed
        }
        a.ready = Some(match (&mut a.constraint, a.logprobs) {
            (None, None) => Ready::Token(
                engine
                    .next_token_async(&mut a.sampler, a.run.history())
                    .await?,
            ),
            (None, Some(_)) => Ready::Logits(engine.logits_async().await?),
            (Some(c), _) => {
                // Greedy without a repetition penalty: the best of the GPU's top candidates
                // that the grammar allows is the best allowed token, if there is one among
                // them. Otherwise (or when the mask fails: `choose` fails this request alone)
                // every logit.
                let greedy = a.logprobs.is_none()
                    && a.sampler.cfg.greedy()
                    && a.sampler.cfg.repeat_penalty == 1.0;
                let mut allowed = Vec::new();
                if let (true, Ok(mask)) = (greedy, c.mask()) {
                    let k = crate::engine::MAX_CANDIDATES;
                    let cands = engine
                        .top_candidates_async(k, &a.sampler, a.run.history())
                        .await?;
                    allowed = (cands.into_iter().flatten())
                        .filter(|&(t, l)| mask.is_allowed(t) && l.is_finite())
                        .take(1)
                        .collect();
                    a.mask = Some(mask);
                }
                match allowed.is_empty() {
                    false => Ready::Candidates(allowed),
                    true => Ready::Logits(engine.logits_async().await?),
                }
            }
        });
        Ok(())
    }

    /// Request i chooses from its logits, if it has them: Some when it is done.
    fn choose(&mut self, i: usize, tok: &TokenizerInfo) -> Result<Option<Ended>> {
        let a = &mut self.active[i];
        let Some(ready) = a.ready.take() else {
            return Ok(None);
        };
        // Structured output: the mask of this step (computed already for candidates).
        let mask = match (&mut a.constraint, a.mask.take()) {
            (None, _) => None,
            (Some(_), Some(m)) => Some(m),
            (Some(c), None) => match c.mask() {
                Ok(m) => Some(m),
                Err(e) => return Ok(Some(Ended::Failed(500, e.to_string()))),
            },
        };
        let (t, lps) = match ready {
            Ready::Token(t) => (t, Vec::new()),
            Ready::Candidates(c) => (a.sampler.pick(&c), Vec::new()),
            Ready::Logits(mut l) => {
                // Log-probabilities of the model's own distribution, before the mask.
                let lp = |t: u32, l: &[f32]| match a.logprobs {
                    Some(n) => vec![token_logprob(tok, l, t, n)],
                    None => Vec::new(),
                };
                match &mask {
                    None => {
                        let t = a.sampler.choose_from_logits(&l, a.run.history())?;
                        (t, lp(t, &l))
                    }
                    Some(m) => {
                        let raw = a.logprobs.map(|_| l.clone());
                        grammar::apply(m, &mut l);
                        let t = a.sampler.choose_from_logits(&l, a.run.history())?;
                        (t, raw.map_or(Vec::new(), |r| lp(t, &r)))
                    }
                }
            }
        };
        if let Some(c) = &mut a.constraint {
            if let Err(e) = c.accept(t) {
                return Ok(Some(Ended::Failed(500, e.to_string())));
            }
        }
        let now = Instant::now();
        match a.last_token {
            None => self.n.ttft.observe((now - a.arrived).as_secs_f64()),
            Some(t0) => self.n.inter_token.observe((now - t0).as_secs_f64()),
        }
        a.last_token = Some(now);
        // Positions the slot holds: the prompt and every token fed after it.
        let before = a.run.tokens().len();
        let pos = a.prompt.len() + before;
        let piece = a.run.accept(t, tok, pos)?;
        // (An end-of-sequence token ends the run without being one of its tokens.)
        Counters::add(
            &self.n.generated_tokens,
            (a.run.tokens().len() - before) as u64,
        );
        if let Some(piece) = piece {
            let (text, hit) = a.stops.push(&piece);
            a.out.push(Event::Piece {
                text,
                logprobs: lps,
            });
            if hit {
                a.stopped = true;
                a.run.cancel();
            }
        }
        if !a.out.flush() {
            return Ok(Some(Ended::ClientGone));
        }
        if !a.run.done() {
            a.next = a.run.take_chosen();
            return Ok(None);
        }
        Ok(Some(Ended::Finished))
    }

    /// Free a's slot (remembering what it holds), and tell its handler how it ended.
    fn leave(&mut self, mut a: Active<S>, left: Ended) {
        let n = self.n.clone();
        Counters::sub_one(&n.running);
        let held = match &left {
            Ended::Failed(..) => Vec::new(),
            _ => a.held(),
        };
        self.prefix.release(a.slot, held);
        match left {
            Ended::Finished => {
                let rest = a.stops.rest();
                if !rest.is_empty() {
                    a.out.push(Event::Piece {
                        text: rest,
                        logprobs: Vec::new(),
                    });
                }
                let g = a.run.result();
                let finish_reason = match g.stop.as_str() {
                    _ if a.stopped => "stop",
                    "eos" => "stop",
                    _ => "length",
                };
                a.out.push(Event::Done {
                    finish_reason,
                    prompt_tokens: a.prompt.len(),
                    cached_tokens: a.cached,
                    completion_tokens: g.tokens.len(),
                });
                Counters::add(&n.completed, 1);
            }
            Ended::ClientGone => {
                Counters::add(&n.cancelled, 1);
                n.last_cancelled_tokens.store(
                    a.run.tokens().len() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                return;
            }
            Ended::Failed(status, message) => a.out.push(Event::Error { status, message }),
        }
        if a.out.flush() && !a.out.queue.is_empty() {
            self.draining.push(a.out);
        }
    }

    /// Every running request fails with this status and message.
    pub fn fail_all(&mut self, status: u16, message: &str) {
        for a in std::mem::take(&mut self.active) {
            self.leave(a, Ended::Failed(status, message.to_string()));
        }
    }
}
