//! The engine thread behind `tide serve`'s OpenAI API: it owns the model and runs the
//! library's serving core (`tide_gpu::serve::Scheduler`: continuous batching over `--parallel`
//! K/V cache slots, the prefix cache) on requests from a bounded queue in arrival order,
//! streaming each request's events back to its handler over a channel.
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};

use tide_gpu::model::tokenizer::TokenizerInfo;
use tide_gpu::serve::{Counters, Event, NoPrefetch, Scheduler, Sink, SinkError};
use tide_gpu::Engine;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

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
                let mut sched = Scheduler::new(ctx_len, engine.slots(), prefix_cache, n.clone());
                sched.fault = lose_device_after;
                let reopen = || open_engine(&m);
                match serve(&mut sched, &rx, &mut engine, &m.tokenizer, &reopen) {
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
            let _ = job.events.0.blocking_send(Event::Error {
                status: 503,
                message: why.clone(),
            });
        }
    });
    (tx, status, counters)
}

/// Serve until the queue closes (Ok), or the GPU device is lost and no new engine opens
/// (that error). A lost device fails the requests running on it with a 503 naming it; the
/// next ones run on a new device (`reopen`): the server keeps serving.
fn serve(
    sched: &mut Scheduler<Channel>,
    rx: &Receiver<Job>,
    engine: &mut Engine,
    tok: &TokenizerInfo,
    reopen: &dyn Fn() -> anyhow::Result<Engine>,
) -> anyhow::Result<()> {
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
            sched.admit(job, tok, engine);
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
