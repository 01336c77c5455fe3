//! The engine thread behind `tide serve`'s OpenAI API: it owns the model and runs one request
//! at a time, in arrival order, from a bounded queue, and streams each request's tokens back
//! to its handler. A handler that goes away (its client disconnected) ends its run at the next
//! token, and a queued request whose client left is skipped.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use tide_gpu::generate::Run;
use tide_gpu::model::tokenizer::TokenizerInfo;
use tide_gpu::openai::Prompt;
use tide_gpu::{Engine, Sampler, SamplerConfig};
use tokio::sync::mpsc;

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
    Ready { ctx_len: usize },
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
}

/// Start the engine thread for `args`' model; requests wait in a queue of `queue` places.
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
        let opened = args.load().and_then(|m| {
            let ctx_len = args.ctx_len(&m)?;
            let e = args.engine(&m)?;
            Ok((m, e, ctx_len))
        });
        let why = match opened {
            Ok((m, mut engine, ctx_len)) => {
                set(Status::Ready { ctx_len });
                let mut fault = lose_device_after;
                let reopen = || args.engine(&m);
                match serve_jobs(&rx, &mut engine, &m, ctx_len, &n, &mut fault, &reopen) {
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

/// Run the queue's jobs until it closes (Ok) or the GPU device is lost and no new engine opens
/// (that error). After a lost device the failed request gets a 503 naming it and the next one
/// runs on a new device (`reopen`): the server keeps serving.
fn serve_jobs(
    rx: &Receiver<Job>,
    engine: &mut Engine,
    m: &tide_gpu::Model,
    ctx_len: usize,
    n: &Counters,
    fault: &mut Option<usize>,
    reopen: &dyn Fn() -> anyhow::Result<Engine>,
) -> anyhow::Result<()> {
    let tok = &m.tokenizer;
    for job in rx {
        n.queued.fetch_sub(1, Ordering::Relaxed);
        if job.events.is_closed() {
            n.cancelled.fetch_add(1, Ordering::Relaxed);
            n.last_cancelled_tokens.store(0, Ordering::Relaxed);
            continue; // its client left while it waited
        }
        n.running.fetch_add(1, Ordering::Relaxed);
        let mut lost = false;
        match run_job(engine, tok, ctx_len, &job, fault) {
            Ok(Ended::Finished) => {
                n.completed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Ended::ClientLeft(tokens)) => {
                n.cancelled.fetch_add(1, Ordering::Relaxed);
                n.last_cancelled_tokens
                    .store(tokens as u64, Ordering::Relaxed);
            }
            Err((_, message)) if engine.is_lost() => {
                eprintln!("serve: {message}; opening a new device");
                let _ = job.events.blocking_send(Event::Error {
                    status: 503,
                    message: format!(
                        "the GPU device was lost during this request ({message}); the server \
                         opens a new one for the next"
                    ),
                });
                lost = true;
            }
            Err((status, message)) => {
                let _ = job.events.blocking_send(Event::Error { status, message });
            }
        }
        n.running.fetch_sub(1, Ordering::Relaxed);
        if lost {
            *engine = reopen()?;
            n.device_resets.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// How a run that did not fail ended.
enum Ended {
    Finished,
    /// Its client went away after this many tokens.
    ClientLeft(usize),
}

fn run_job(
    engine: &mut Engine,
    tok: &TokenizerInfo,
    ctx_len: usize,
    job: &Job,
    fault: &mut Option<usize>,
) -> Result<Ended, (u16, String)> {
    let bad = |e: tide_gpu::Error| (400u16, e.to_string());
    let text = match &job.prompt {
        Prompt::Text(t) => t.clone(),
        Prompt::Chat(m) => tok.chat_prompt(m).map_err(bad)?,
    };
    let ids = tok.encode(&text, true).map_err(bad)?;
    let mut run = Run::start(engine, &ids, job.max_tokens, ctx_len).map_err(|e| match e {
        tide_gpu::Error::Input(m) => (400, m),
        e => (500, e.to_string()),
    })?;
    let send = |ev: Event| job.events.blocking_send(ev).is_ok();
    if !send(Event::Started {
        prompt_tokens: ids.len(),
    }) {
        return Ok(Ended::ClientLeft(0));
    }
    let mut sampler = Sampler::new(job.sampler.clone());
    let mut stops = StopFilter::new(job.stop.clone());
    let mut stopped = false;
    run.keep_logits(job.logprobs.is_some());
    loop {
        if *fault == Some(0) {
            *fault = None;
            engine.lose_device();
        }
        let piece = pollster::block_on(run.step(engine, tok, &mut sampler))
            .map_err(|e| (500, e.to_string()))?;
        if let Some(left) = fault.as_mut() {
            *left = left.saturating_sub(1);
        }
        let Some(piece) = piece else { break };
        let lps = match (run.take_logits(), job.logprobs, run.tokens().last()) {
            (Some(l), Some(n), Some(&t)) => vec![token_logprob(tok, &l, t, n)],
            _ => Vec::new(),
        };
        let (text, hit) = stops.push(&piece);
        if !send(Event::Piece {
            text,
            logprobs: lps,
        }) {
            run.cancel(); // the client is gone: free the engine now
            return Ok(Ended::ClientLeft(run.tokens().len()));
        }
        if hit {
            stopped = true;
            run.cancel();
            break;
        }
    }
    let rest = stops.rest();
    if !rest.is_empty()
        && !send(Event::Piece {
            text: rest,
            logprobs: Vec::new(),
        })
    {
        return Ok(Ended::ClientLeft(run.tokens().len()));
    }
    let g = run.result();
    let finish_reason = match g.stop.as_str() {
        _ if stopped => "stop",
        "eos" => "stop",
        _ => "length",
    };
    let done = send(Event::Done {
        finish_reason,
        prompt_tokens: ids.len(),
        completion_tokens: g.tokens.len(),
    });
    Ok(if done {
        Ended::Finished
    } else {
        Ended::ClientLeft(g.tokens.len())
    })
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
