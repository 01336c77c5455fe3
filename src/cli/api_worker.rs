//! The engine thread behind `tide serve`'s OpenAI API: it owns the model and serves up to
//! `--parallel` requests at once (continuous batching), each in its own K/V cache slot, from a
//! bounded queue in arrival order, streaming each request's tokens back to its handler.
//! Requests join between steps; their prompts are fed in chunks between the shared decode
//! steps. A handler that goes away (its client disconnected) frees its slot at the next
//! round, and a queued request whose client left is skipped.
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};

use tide_gpu::generate::Run;
use tide_gpu::model::tokenizer::TokenizerInfo;
use tide_gpu::openai::Prompt;
use tide_gpu::{Engine, Sampler, SamplerConfig};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::common::ModelArgs;

pub struct Job {
    pub prompt: Prompt,
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    pub stop: Vec<String>,
    /// Log-probabilities of each chosen token and of this many alternatives.
    pub logprobs: Option<usize>,
    pub events: mpsc::Sender<Event>,
}

/// One token's log-probability (natural log, of the model's distribution before sampling) and
/// the most likely alternatives at its step.
#[derive(Clone)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub top: Vec<(String, f32)>,
}

pub enum Event {
    /// The prompt fits and runs: its length in tokens.
    Started { prompt_tokens: usize },
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
        completion_tokens: usize,
    },
    /// The request failed: an HTTP status and a message naming what is wrong.
    Error { status: u16, message: String },
}

/// Where the engine thread is: /health answers from it.
#[derive(Clone)]
pub enum Status {
    Loading,
    Ready { ctx_len: usize, slots: usize },
    Failed(String),
}

/// What /health reports of the requests.
#[derive(Default)]
pub struct Counters {
    /// Waiting in the queue (the handler adds, the engine thread takes away).
    pub queued: AtomicU64,
    pub running: AtomicU64,
    pub completed: AtomicU64,
    /// Runs ended because their client left, and how many tokens the last one had made.
    pub cancelled: AtomicU64,
    pub last_cancelled_tokens: AtomicU64,
    /// GPU devices lost and replaced.
    pub device_resets: AtomicU64,
    /// Decode steps run, and those that several requests shared (continuous batching).
    pub steps: AtomicU64,
    pub shared_steps: AtomicU64,
}

/// Start the engine thread for `args`' model (its `slots` requests decode together);
/// requests wait in a queue of `queue` places.
pub fn spawn(
    args: ModelArgs,
    queue: usize,
    lose_device_after: Option<usize>,
) -> (SyncSender<Job>, Arc<Mutex<Status>>, Arc<Counters>) {
    let (tx, rx) = sync_channel(queue);
    let status = Arc::new(Mutex::new(Status::Loading));
    let counters = Arc::new(Counters::default());
    let (st, n) = (status.clone(), counters.clone());
    std::thread::spawn(move || {
        let set = |s: Status| *st.lock().unwrap_or_else(|e| e.into_inner()) = s;
        // An engine with the kernels of every shared step's size built (each size run once):
        // the first step of a new size would otherwise stall every stream while they compile.
        let open_engine = |m: &super::common::Loaded| -> anyhow::Result<Engine> {
            let mut e = args.engine(m)?;
            if e.seq_group() > 1 {
                let t = std::time::Instant::now();
                e.warm_seq_steps()?;
                eprintln!(
                    "serve: kernels for steps of 2 to {} tokens built ({:.1}s)",
                    e.seq_group(),
                    t.elapsed().as_secs_f64()
                );
            }
            Ok(e)
        };
        let opened = args.load().and_then(|m| {
            let ctx_len = args.ctx_len(&m)?;
            let e = open_engine(&m)?;
            Ok((m, e, ctx_len))
        });
        let why = match opened {
            Ok((m, mut engine, ctx_len)) => {
                eprintln!(
                    "serve: {} request(s) at once, each with a context of {ctx_len}",
                    engine.slots()
                );
                if let tide_gpu::Engine::Gpu(g) = &engine {
                    if g.ctx.info.device_type == wgpu::DeviceType::Cpu && !g.kv_in_textures {
                        eprintln!(
                            "serve: note: {} slots x {ctx_len} positions exceed this adapter's \
                             texture height, so the K/V cache is in buffers and attention runs \
                             slower; fewer --parallel slots or a shorter --ctx keep it in textures",
                            engine.slots()
                        );
                    }
                }
                set(Status::Ready {
                    ctx_len,
                    slots: engine.slots(),
                });
                let mut sched = Scheduler {
                    tok: &m.tokenizer,
                    ctx_len,
                    n: &n,
                    fault: lose_device_after,
                    active: Vec::new(),
                    draining: Vec::new(),
                };
                let reopen = || open_engine(&m);
                match sched.serve(&rx, &mut engine, &reopen) {
                    Ok(()) => return, // the server is shutting down
                    Err(e) => format!("the GPU device was lost and no new one opened: {e:#}"),
                }
            }
            Err(e) => format!("the model did not load: {e:#}"),
        };
        eprintln!("serve: {why}");
        set(Status::Failed(why.clone()));
        // Answer what arrives with the reason rather than leaving it queued.
        for job in rx {
            n.queued.fetch_sub(1, Ordering::Relaxed);
            let _ = job.events.blocking_send(Event::Error {
                status: 503,
                message: why.clone(),
            });
        }
    });
    (tx, status, counters)
}

/// Most prompt tokens fed in one round, so that a long prompt does not stall the streams
/// already running for longer than a batch takes.
const PREFILL_CHUNK: usize = 64;
/// While other requests decode, the last this many tokens of a prompt ride in the shared
/// steps beside the running requests' next tokens, as many a round as the step has room for
/// (at least one): a batch of a few tokens costs
/// about what a long one does (on CPU adapters) and would stall every stream meanwhile, where
/// a token more in a step costs a fraction of a step. (Measured on SmolLM2 under the load
/// test: 32 against 8 gave the same throughput ratios and shorter stalls.) A request alone
/// feeds all its prompt but the last token as batches.
const IN_STEP_PROMPT: usize = 32;
/// Events a client may leave unread before it counts as gone (its slot is then freed).
const MAX_UNREAD: usize = 4096;

/// A request's events on their way to its handler: sent without blocking, so a client that
/// reads slowly holds up no one else.
struct Outbox {
    tx: mpsc::Sender<Event>,
    queue: VecDeque<Event>,
}

impl Outbox {
    fn push(&mut self, ev: Event) {
        self.queue.push_back(ev);
    }

    /// Hand over what the channel takes now; false once the handler is gone (its client
    /// disconnected) or has left too much unread.
    fn flush(&mut self) -> bool {
        while let Some(ev) = self.queue.pop_front() {
            match self.tx.try_send(ev) {
                Ok(()) => {}
                Err(TrySendError::Full(ev)) => {
                    self.queue.push_front(ev);
                    break;
                }
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        !self.tx.is_closed() && self.queue.len() <= MAX_UNREAD
    }
}

/// A request in a K/V cache slot: its prompt is fed in chunks, then it takes one token per
/// round, in a step shared with the other requests decoding.
struct Active {
    out: Outbox,
    slot: usize,
    prompt: Vec<u32>,
    /// Prompt tokens fed so far.
    fed: usize,
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
    /// Its slot still holds the last request's positions.
    fresh: bool,
}

impl Active {
    /// Prompt tokens not fed yet.
    fn prompt_left(&self) -> usize {
        self.prompt.len() - self.fed
    }

    /// A step fed this request's token (a prompt token, or the one chosen): whether its
    /// next token is to be chosen now (the prompt is all fed).
    fn fed_one(&mut self) -> bool {
        if self.prompt_left() > 0 {
            self.fed += 1;
            if self.prompt_left() > 0 {
                return false;
            }
        }
        self.next = None;
        true
    }
}

/// What a request's next token is chosen from.
enum Ready {
    /// Every logit of its last position (a shared step, or log-probabilities wanted).
    Logits(Vec<f32>),
    /// Chosen already, on the GPU.
    Token(u32),
}

/// How a request left its slot.
enum Ended {
    Finished,
    /// Its client went away.
    ClientGone,
    Failed(u16, String),
}

/// The engine thread's loop: requests join free slots between rounds; a round feeds one
/// prompt chunk, chooses each running request's next token from its logits, and runs one
/// step for all their tokens together.
struct Scheduler<'a> {
    tok: &'a TokenizerInfo,
    ctx_len: usize,
    n: &'a Counters,
    /// Fault injection: lose the device after this many more steps.
    fault: Option<usize>,
    active: Vec<Active>,
    /// Requests that are done but whose last events their handlers have not taken yet.
    draining: Vec<Outbox>,
}

impl Scheduler<'_> {
    /// Serve until the queue closes (Ok), or the GPU device is lost and no new engine opens
    /// (that error). A lost device fails the requests running on it with a 503 naming it;
    /// the next ones run on a new device (`reopen`): the server keeps serving.
    fn serve(
        &mut self,
        rx: &Receiver<Job>,
        engine: &mut Engine,
        reopen: &dyn Fn() -> anyhow::Result<Engine>,
    ) -> anyhow::Result<()> {
        let slots = engine.slots();
        let mut open = true;
        loop {
            self.draining
                .retain_mut(|o| o.flush() && !o.queue.is_empty());
            while open && self.active.len() < slots {
                let job = if self.active.is_empty() && self.draining.is_empty() {
                    match rx.recv() {
                        Ok(j) => j,
                        Err(_) => {
                            open = false;
                            break;
                        }
                    }
                } else {
                    match rx.try_recv() {
                        Ok(j) => j,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            open = false;
                            break;
                        }
                    }
                };
                self.admit(job, slots);
            }
            if self.active.is_empty() {
                if !open && self.draining.is_empty() {
                    return Ok(());
                }
                if !self.draining.is_empty() {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                continue;
            }
            if let Err(e) = self.round(engine) {
                let message = e.to_string();
                if engine.is_lost() {
                    eprintln!("serve: {message}; opening a new device");
                    self.fail_all(
                        503,
                        &format!(
                            "the GPU device was lost during this request ({message}); the \
                             server opens a new one for the next"
                        ),
                    );
                    *engine = reopen()?;
                    self.n.device_resets.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.fail_all(500, &message);
                }
            }
        }
    }

    /// Take `job` into a free slot, or answer it: skipped when its client left while it
    /// waited, 400 when its prompt cannot run.
    fn admit(&mut self, job: Job, slots: usize) {
        let n = self.n;
        n.queued.fetch_sub(1, Ordering::Relaxed);
        if job.events.is_closed() {
            n.cancelled.fetch_add(1, Ordering::Relaxed);
            n.last_cancelled_tokens.store(0, Ordering::Relaxed);
            return;
        }
        let tok = self.tok;
        let prompt = match &job.prompt {
            Prompt::Text(t) => Ok(t.clone()),
            Prompt::Chat(m) => tok.chat_prompt(m),
        };
        let started = prompt
            .and_then(|text| tok.encode(&text, true))
            .and_then(|ids| Run::begin(&ids, job.max_tokens, self.ctx_len).map(|r| (ids, r)));
        let mut out = Outbox {
            tx: job.events,
            queue: VecDeque::new(),
        };
        let (prompt, run) = match started {
            Ok(x) => x,
            Err(e) => {
                out.push(Event::Error {
                    status: 400,
                    message: e.to_string(),
                });
                out.flush();
                self.draining.push(out);
                return;
            }
        };
        let slot = (0..slots)
            .find(|s| !self.active.iter().any(|a| a.slot == *s))
            .expect("admitted only with a slot free");
        out.push(Event::Started {
            prompt_tokens: prompt.len(),
        });
        n.running.fetch_add(1, Ordering::Relaxed);
        self.active.push(Active {
            out,
            slot,
            prompt,
            fed: 0,
            run,
            sampler: Sampler::new(job.sampler),
            stops: StopFilter::new(job.stop),
            logprobs: job.logprobs,
            ready: None,
            next: None,
            stopped: false,
            fresh: true,
        });
    }

    /// One round: a prompt chunk, every running request's next token, one shared step.
    fn round(&mut self, engine: &mut Engine) -> tide_gpu::Result<()> {
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
        // New requests start their slots over.
        for a in self.active.iter_mut().filter(|a| a.fresh) {
            engine.use_slot(a.slot)?;
            engine.reset();
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
            engine.use_slot(a.slot)?;
            // The tail rides in the steps, so this never ends the prompt.
            let end = (a.fed + PREFILL_CHUNK).min(a.prompt.len() - tail);
            match engine.feed(&a.prompt[a.fed..end]) {
                Ok(()) => a.fed = end,
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
            match self.choose(i)? {
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
        if self.fault == Some(0) {
            self.fault = None;
            engine.lose_device();
        }
        self.n.steps.fetch_add(1, Ordering::Relaxed);
        if let [(slot, t)] = toks[..] {
            self.step_alone(engine, slot, t)?;
        } else {
            self.n.shared_steps.fetch_add(1, Ordering::Relaxed);
            let out = pollster::block_on(engine.step_seqs_some_async(&toks, &want))?;
            for ((slot, _), l) in toks.into_iter().zip(out) {
                if let Some(a) = self.active.iter_mut().find(|a| a.slot == slot) {
                    if a.fed_one() {
                        let l = l.ok_or_else(|| {
                            tide_gpu::Error::Gpu(format!("slot {slot}: no logits for its step"))
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
    fn step_alone(&mut self, engine: &mut Engine, slot: usize, t: u32) -> tide_gpu::Result<()> {
        let Some(a) = self.active.iter_mut().find(|a| a.slot == slot) else {
            return Ok(());
        };
        engine.use_slot(slot)?;
        engine.feed(&[t])?;
        if !a.fed_one() {
            return Ok(()); // more prompt to feed
        }
        a.ready = Some(if a.logprobs.is_none() {
            Ready::Token(engine.next_token(&mut a.sampler, a.run.history())?)
        } else {
            Ready::Logits(engine.logits()?)
        });
        Ok(())
    }

    /// Request i chooses from its logits, if it has them: Some when it is done.
    fn choose(&mut self, i: usize) -> tide_gpu::Result<Option<Ended>> {
        let tok = self.tok;
        let a = &mut self.active[i];
        let (t, lps) = match a.ready.take() {
            None => return Ok(None),
            Some(Ready::Token(t)) => (t, Vec::new()),
            Some(Ready::Logits(l)) => {
                let t = a.sampler.choose_from_logits(&l, a.run.history())?;
                let lps = match a.logprobs {
                    Some(n) => vec![token_logprob(tok, &l, t, n)],
                    None => Vec::new(),
                };
                (t, lps)
            }
        };
        // Positions the slot holds: the prompt and every token fed after it.
        let pos = a.prompt.len() + a.run.tokens().len();
        if let Some(piece) = a.run.accept(t, tok, pos)? {
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

    /// Free a's slot, and tell its handler how it ended.
    fn leave(&mut self, mut a: Active, left: Ended) {
        let n = self.n;
        n.running.fetch_sub(1, Ordering::Relaxed);
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
                    completion_tokens: g.tokens.len(),
                });
                n.completed.fetch_add(1, Ordering::Relaxed);
            }
            Ended::ClientGone => {
                n.cancelled.fetch_add(1, Ordering::Relaxed);
                n.last_cancelled_tokens
                    .store(a.run.tokens().len() as u64, Ordering::Relaxed);
                return;
            }
            Ended::Failed(status, message) => a.out.push(Event::Error { status, message }),
        }
        if a.out.flush() && !a.out.queue.is_empty() {
            self.draining.push(a.out);
        }
    }

    /// Every running request fails with this status and message.
    fn fail_all(&mut self, status: u16, message: &str) {
        for a in std::mem::take(&mut self.active) {
            self.leave(a, Ended::Failed(status, message.to_string()));
        }
    }
}

/// Log-softmax of `logits` at `token`, and the `n` most likely tokens with theirs.
fn token_logprob(tok: &TokenizerInfo, logits: &[f32], token: u32, n: usize) -> TokenLogprob {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln();
    let piece = |t: u32| tok.decode(&[t]).unwrap_or_default();
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    let n = n.min(order.len());
    if n > 0 {
        order.select_nth_unstable_by(n - 1, |a, b| {
            logits[*b as usize].total_cmp(&logits[*a as usize])
        });
    }
    let mut top: Vec<u32> = order[..n].to_vec();
    top.sort_by(|a, b| logits[*b as usize].total_cmp(&logits[*a as usize]));
    TokenLogprob {
        token: piece(token),
        logprob: logits[token as usize] - lse,
        top: top
            .into_iter()
            .map(|t| (piece(t), logits[t as usize] - lse))
            .collect(),
    }
}

/// Cuts the generated text at the first stop string. Text that could be the start of a stop
/// string is held back until the next piece shows whether it is, so a stop string split across
/// tokens is never sent.
struct StopFilter {
    stops: Vec<String>,
    held: String,
}

impl StopFilter {
    fn new(stops: Vec<String>) -> Self {
        StopFilter {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
        }
    }

    /// Add `piece`; the text that can be sent now, and whether a stop string was reached
    /// (the text then ends just before it).
    fn push(&mut self, piece: &str) -> (String, bool) {
        self.held.push_str(piece);
        if let Some(i) = self.stops.iter().filter_map(|s| self.held.find(s)).min() {
            let out = self.held[..i].to_string();
            self.held.clear();
            return (out, true);
        }
        let h = &self.held;
        let keep = self
            .stops
            .iter()
            .map(|s| {
                (1..s.len().min(h.len() + 1))
                    .rev()
                    .find(|&k| h.is_char_boundary(h.len() - k) && s.starts_with(&h[h.len() - k..]))
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0);
        let out: String = self.held.drain(..self.held.len() - keep).collect();
        (out, false)
    }

    /// What is still held at the end of the run.
    fn rest(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::StopFilter;

    /// Feeds `pieces`; the text sent and whether a stop string ended it.
    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut f = StopFilter::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for p in pieces {
            let (t, hit) = f.push(p);
            out += &t;
            if hit {
                return (out, true);
            }
        }
        (out + &f.rest(), false)
    }

    #[test]
    fn stop_strings_cut_the_text_even_across_pieces() {
        assert_eq!(
            run(&["\n\n"], &["Hello", " world", "\n", "\nmore"]),
            ("Hello world".into(), true)
        );
        assert_eq!(
            run(&["END"], &["abcE", "N", "D", "x"]),
            ("abc".into(), true)
        );
        // A held prefix that turns out not to be a stop string is sent after all.
        assert_eq!(run(&["END"], &["abcE", "Nx"]), ("abcENx".into(), false));
        assert_eq!(run(&["END"], &["abcEN"]), ("abcEN".into(), false));
        // The earliest of several stop strings wins; no stop strings pass everything.
        assert_eq!(run(&["b", "a"], &["xyab"]), ("xy".into(), true));
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
        // Multi-byte characters are never split when text is held back.
        assert_eq!(run(&["éz"], &["café", "!"]), ("café!".into(), false));
    }
}
