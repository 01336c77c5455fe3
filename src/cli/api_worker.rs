//! The engine thread behind `tide serve`'s OpenAI API: it owns the model and runs the
//! library's serving core (`tide_gpu::serve::Scheduler`: continuous batching over `--parallel`
//! K/V cache slots, the prefix cache) on requests from a bounded queue in arrival order,
//! streaming each request's events back to its handler over a channel.
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};

use tide_gpu::model::tokenizer::TokenizerInfo;
use tide_gpu::openai::EmbedInput;
use tide_gpu::serve::embed::{embed, input_ids, Pooling};
use tide_gpu::serve::{Counters, Event, NoPrefetch, Scheduler, Sink, SinkError};
use tide_gpu::Engine;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

use super::common::ModelArgs;

/// A handler's end of its request's events.
pub struct Channel(pub mpsc::Sender<Event>);

impl Sink for Channel {
    fn try_send(&mut self, ev: Event) -> Result<(), SinkError> {
        match self.0.try_send(ev) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(ev)) => Err(SinkError::Full(ev)),
            Err(TrySendError::Closed(_)) => Err(SinkError::Closed),
        }
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

pub type Job = tide_gpu::serve::Job<Channel>;

/// The vectors of an embeddings request and the tokens they took, or the status and message
/// of its failure.
pub type EmbedReply = Result<(Vec<Vec<f32>>, usize), (u16, String)>;

/// An embeddings request: its inputs, and where its reply goes.
pub struct EmbedJob {
    pub inputs: Vec<EmbedInput>,
    pub reply: oneshot::Sender<EmbedReply>,
}

/// What the engine thread takes from the queue.
pub enum Work {
    // Boxed: a job is many times the size of an embedding request.
    Complete(Box<Job>),
    Embed(EmbedJob),
}

impl Work {
    /// Answer it with a failure, without running it.
    fn fail(self, status: u16, message: String) {
        match self {
            Work::Complete(j) => {
                let _ = j.events.0.blocking_send(Event::Error { status, message });
            }
            Work::Embed(e) => {
                let _ = e.reply.send(Err((status, message)));
            }
        }
    }
}

/// Where the engine thread is: /health answers from it.
#[derive(Clone)]
pub enum Status {
    Loading,
    Ready { ctx_len: usize, slots: usize },
    Failed(String),
}

/// Start the engine thread for `args`' model (its `slots` requests decode together);
/// requests wait in a queue of `queue` places.
pub fn spawn(
    args: ModelArgs,
    queue: usize,
    prefix_cache: bool,
    pooling: Pooling,
    lose_device_after: Option<usize>,
) -> (SyncSender<Work>, Arc<Mutex<Status>>, Arc<Counters>) {
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
                let mut sched = Scheduler::new(ctx_len, engine.slots(), prefix_cache, n.clone());
                sched.fault = lose_device_after;
                let reopen = || open_engine(&m);
                let run = Run {
                    tok: &m.tokenizer,
                    vocab: m.config.vocab,
                    ctx_len,
                    pooling,
                };
                match serve(&mut sched, &rx, &mut engine, &run, &reopen) {
                    Ok(()) => return, // the server is shutting down
                    Err(e) => format!("the GPU device was lost and no new one opened: {e:#}"),
                }
            }
            Err(e) => format!("the model did not load: {e:#}"),
        };
        eprintln!("serve: {why}");
        set(Status::Failed(why.clone()));
        // Answer what arrives with the reason rather than leaving it queued.
        for work in rx {
            n.queued.fetch_sub(1, Ordering::Relaxed);
            work.fail(503, why.clone());
        }
    });
    (tx, status, counters)
}

/// Serve until the queue closes (Ok), or the GPU device is lost and no new engine opens
/// (that error). A lost device fails the requests running on it with a 503 naming it; the
/// next ones run on a new device (`reopen`): the server keeps serving.
fn serve(
    sched: &mut Scheduler<Channel>,
    rx: &Receiver<Work>,
    engine: &mut Engine,
    run: &Run,
    reopen: &dyn Fn() -> anyhow::Result<Engine>,
) -> anyhow::Result<()> {
    let tok = run.tok;
    let mut open = true;
    loop {
        let draining = sched.drain();
        while open && sched.has_room(engine) {
            let job = if !sched.busy() && !draining {
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
            match job {
                Work::Complete(job) => sched.admit(*job, tok, engine),
                Work::Embed(e) => {
                    n_dequeued(sched);
                    run.embed(sched, engine, e);
                    if engine.is_lost() {
                        eprintln!("serve: the GPU device was lost; opening a new one");
                        *engine = reopen()?;
                        sched.engine_replaced();
                    }
                }
            }
        }
        if !sched.busy() {
            if !open && !sched.drain() {
                return Ok(());
            }
            if sched.drain() {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            continue;
        }
        if let Err(e) = pollster::block_on(sched.round(engine, tok, &NoPrefetch)) {
            // Only a lost device comes back as an error.
            let message = e.to_string();
            eprintln!("serve: {message}; opening a new device");
            sched.fail_all(
                503,
                &format!(
                    "the GPU device was lost during this request ({message}); the server \
                     opens a new one for the next"
                ),
            );
            *engine = reopen()?;
            sched.engine_replaced();
        }
    }
}

/// What the engine thread runs beside the scheduler's requests.
struct Run<'a> {
    tok: &'a TokenizerInfo,
    vocab: usize,
    ctx_len: usize,
    pooling: Pooling,
}

impl Run<'_> {
    /// An embeddings request, at once, in a free slot: every input in turn, while the streams
    /// running wait (a request's inputs are bounded by the body limit, 1 MiB, and each by the
    /// context).
    fn embed(&self, sched: &mut Scheduler<Channel>, engine: &mut Engine, e: EmbedJob) {
        let Some(slot) = sched.lend_slot(engine) else {
            let _ = e.reply.send(Err((503, "no K/V cache slot is free".into())));
            return;
        };
        let mut tokens = 0;
        let mut run = || -> Result<Vec<Vec<f32>>, (u16, String)> {
            let bad = |e: tide_gpu::Error| (400, e.to_string());
            let ids: Vec<Vec<u32>> = (e.inputs.iter().enumerate())
                .map(|(i, x)| input_ids(x, i, self.tok, self.vocab, self.ctx_len))
                .collect::<Result<_, _>>()
                .map_err(bad)?;
            engine.use_slot(slot).map_err(|e| (500, e.to_string()))?;
            let mut out = Vec::with_capacity(ids.len());
            for x in &ids {
                tokens += x.len();
                let v = pollster::block_on(embed(engine, x, self.pooling))
                    .map_err(|e| (500, e.to_string()))?;
                out.push(v);
            }
            Ok(out)
        };
        let r = run().map_err(|(status, m)| match engine.is_lost() {
            true => (
                503,
                format!("the GPU device was lost during this request ({m})"),
            ),
            false => (status, m),
        });
        sched.give_back(slot);
        let _ = e.reply.send(r.map(|v| (v, tokens)));
    }
}

/// An embeddings request left the queue (the scheduler counts its own requests).
fn n_dequeued(sched: &Scheduler<Channel>) {
    Counters::sub_one(&sched.counters().queued);
}
