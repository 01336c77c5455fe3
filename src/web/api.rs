//! The OpenAI API in the browser: requests checked by `crate::openai` and run by the serving
//! core (`crate::serve::Scheduler`: continuous batching over the session's K/V cache slots, the
//! prefix cache, stop strings, log-probabilities), their replies shaped by `crate::serve::shape`
//! exactly as `tide serve` sends them. The worker submits requests at any time and pumps the
//! scheduler one round at a time in between its other operations.
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use serde_json::{json, Value};

use crate::error::Result;
use crate::memory::fetch::Fetcher;
use crate::memory::store::RowStore;
use crate::openai::{self, Kind};
use crate::serve::shape::error_body;
use crate::serve::{
    Chunker, Chunks, Counters, Event, Job, Prefetch, Scheduler, Sink, SinkError, Whole,
};

/// A request's events, queued for the next pump to hand to the page.
#[derive(Clone, Default)]
pub(super) struct Queued {
    events: Rc<RefCell<VecDeque<Event>>>,
    closed: Rc<Cell<bool>>,
}

impl Sink for Queued {
    fn try_send(&mut self, ev: Event) -> std::result::Result<(), SinkError> {
        if self.closed.get() {
            return Err(SinkError::Closed);
        }
        self.events.borrow_mut().push_back(ev);
        Ok(())
    }

    fn is_closed(&self) -> bool {
        self.closed.get()
    }
}

/// How a request's reply is made.
enum Reply {
    Stream(Chunker),
    Whole(Whole),
}

struct Request {
    sink: Queued,
    reply: Reply,
}

/// Requests between the page and the scheduler: submitted ones wait here until a pump admits
/// them; their events wait until a pump hands them out. Never borrowed across an await, so
/// that a request can be submitted or cancelled while a round runs.
#[derive(Default)]
pub(super) struct Book {
    waiting: VecDeque<Job<Queued>>,
    requests: BTreeMap<u32, Request>,
    next: u32,
}

/// The scheduler of a session, made at its first request.
pub(super) struct Core {
    pub sched: Scheduler<Queued>,
    counters: Arc<Counters>,
}

impl Core {
    pub fn new(ctx_len: usize, slots: usize) -> Core {
        let counters = Arc::new(Counters::default());
        Core {
            sched: Scheduler::new(ctx_len, slots, true, counters.clone()),
            counters,
        }
    }

    pub fn stats(&self, slots: usize) -> Value {
        let (n, g) = (&self.counters, Counters::get);
        json!({"requests_completed": g(&n.completed), "steps": g(&n.steps),
            "shared_steps": g(&n.shared_steps), "prefix_hits": g(&n.prefix_hits),
            "prompt_tokens": g(&n.prompt_tokens), "cached_tokens": g(&n.cached_tokens),
            "generated_tokens": g(&n.generated_tokens), "slots": slots})
    }
}

/// A streamed memory's rows fetched before each step.
pub(super) struct Rows<'a> {
    pub store: Option<&'a RowStore>,
    pub fetcher: Option<&'a Fetcher>,
}

impl Prefetch for Rows<'_> {
    fn prefetch<'a>(&'a self, tokens: &'a [u32]) -> LocalBoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match (self.store, self.fetcher) {
                (Some(s), Some(f)) => f.prefetch(s, tokens).await,
                _ => Ok(()),
            }
        })
    }
}

fn now() -> u64 {
    (js_sys::Date::now() / 1000.0) as u64
}

impl Book {
    /// Check a request (`kind` "chat" or "text", `body` its JSON) for the model `served`:
    /// {"id"} once queued, or {"status", "error"} as the server would answer it.
    pub fn submit(&mut self, kind: &str, body: &str, served: &str, ctx_len: usize) -> Value {
        let kind = match kind {
            "chat" => Kind::Chat,
            "text" => Kind::Text,
            k => {
                let m = format!("unknown request kind {k:?}: expected chat or text");
                return json!({"status": 400, "error": error_body(400, &m, None)});
            }
        };
        let r = match openai::parse(kind, body.as_bytes(), served, ctx_len) {
            Ok(r) => r,
            Err(e) => {
                return json!({"status": e.status, "error": error_body(e.status, &e.message, e.code)})
            }
        };
        let id = self.next;
        self.next += 1;
        let seed = (js_sys::Math::random() * 2f64.powi(53)) as u64;
        let sink = Queued::default();
        let (job, shape, stream) = crate::serve::job_for(
            r,
            kind,
            u64::from(id),
            seed,
            ctx_len,
            ctx_len,
            now(),
            sink.clone(),
        );
        self.waiting.push_back(job);
        let reply = match stream {
            true => Reply::Stream(Chunker::new(shape)),
            false => Reply::Whole(Whole::new(shape)),
        };
        self.requests.insert(id, Request { sink, reply });
        json!({"id": id})
    }

    /// The page no longer wants request `id`: it leaves its slot at the next round.
    pub fn cancel(&mut self, id: u32) {
        if let Some(r) = self.requests.remove(&id) {
            r.sink.closed.set(true);
        }
    }

    /// Jobs to admit while the scheduler has room.
    pub fn next_job(&mut self) -> Option<Job<Queued>> {
        // A job whose request was cancelled while it waited is admitted and skipped at once.
        self.waiting.pop_front()
    }

    pub fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// What each request has to say since the last pump: [{id, chunks?, reply?, error?,
    /// status?, end}]; ended requests are dropped.
    pub fn outputs(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut ended = Vec::new();
        for (&id, r) in self.requests.iter_mut() {
            let events: Vec<Event> = r.sink.events.borrow_mut().drain(..).collect();
            let mut o = json!({"id": id});
            let (mut chunks, mut end) = (Vec::new(), false);
            let fail = |o: &mut Value, status: u16, e: Value| {
                o["status"] = json!(status);
                o["error"] = e;
            };
            for ev in events {
                match &mut r.reply {
                    Reply::Stream(c) => match c.event(ev) {
                        Chunks::Send(cs) => chunks.extend(cs),
                        Chunks::End(cs) => {
                            chunks.extend(cs);
                            end = true;
                        }
                        Chunks::Failed(status, e) => {
                            fail(&mut o, status, e);
                            end = true;
                        }
                    },
                    Reply::Whole(w) => match w.event(ev) {
                        None => {}
                        Some(Ok(v)) => {
                            o["reply"] = v;
                            end = true;
                        }
                        Some(Err((status, e))) => {
                            fail(&mut o, status, e);
                            end = true;
                        }
                    },
                }
            }
            if !end && chunks.is_empty() {
                continue;
            }
            o["end"] = json!(end);
            if !chunks.is_empty() {
                o["chunks"] = Value::Array(chunks);
            }
            if end {
                ended.push(id);
            }
            out.push(o);
        }
        for id in ended {
            self.requests.remove(&id);
        }
        out
    }

    /// Requests not yet ended.
    pub fn open(&self) -> usize {
        self.requests.len()
    }
}
