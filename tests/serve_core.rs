//! The serving core (`tide_gpu::serve::Scheduler`) without HTTP: greedy replies through the
//! scheduler, with the prefix cache reusing earlier requests' K/V (a shared system prompt, a
//! conversation's next turn, a repeat) and several requests at once, each equal to
//! `generate` run alone on a fresh sequence (the CLI's path, no scheduler). On the GPU
//! decoder (lavapipe in CI: 3 slots) and the fast CPU backend (1 slot), for a TIDE model and
//! an Engram one (whose hash and convolution read earlier positions).
mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use tide_gpu::decoder::{DecoderOptions, GpuDecoder};
use tide_gpu::generate::generate;
use tide_gpu::memory::MemoryRows;
use tide_gpu::model::tokenizer::TokenizerInfo;
use tide_gpu::openai::Prompt;
use tide_gpu::serve::grammar::Format;
use tide_gpu::serve::{Counters, Event, Job, NoPrefetch, Scheduler, Sink, SinkError};
use tide_gpu::{Backend, Engine, Model, Options, Sampler, SamplerConfig};

/// A request's events, kept.
#[derive(Clone, Default)]
struct Kept(Rc<RefCell<Vec<Event>>>);

impl Sink for Kept {
    fn try_send(&mut self, ev: Event) -> Result<(), SinkError> {
        self.0.borrow_mut().push(ev);
        Ok(())
    }
    fn is_closed(&self) -> bool {
        false
    }
}

impl Kept {
    /// The reply's text and the cached tokens its usage reported.
    fn reply(&self) -> (String, usize) {
        let mut text = String::new();
        for ev in self.0.borrow().iter() {
            match ev {
                Event::Piece { text: t, .. } => text += t,
                Event::Done { cached_tokens, .. } => return (text, *cached_tokens),
                Event::Error { message, .. } => panic!("the request failed: {message}"),
                Event::Started { .. } => {}
            }
        }
        panic!("the request did not finish: {:?}", self.0.borrow());
    }
}

const MAX_TOKENS: usize = 12;

fn greedy() -> SamplerConfig {
    SamplerConfig {
        temperature: 0.0,
        ..SamplerConfig::default()
    }
}

/// A greedy request for `prompt` of MAX_TOKENS tokens, its events kept in `events`.
fn job(prompt: &str, events: Kept) -> Job<Kept> {
    Job {
        prompt: Prompt::Text(prompt.into()),
        max_tokens: MAX_TOKENS,
        fit: false,
        sampler: greedy(),
        stop: vec![],
        logprobs: None,
        format: None,
        tools: None,
        events,
        arrived: web_time::Instant::now(),
    }
}

/// Run `prompts` through a scheduler, `together` admitted at once (as slots allow), waiting
/// for each group to finish before the next: each one's text and cached tokens.
fn serve(
    engine: &mut Engine,
    tok: &TokenizerInfo,
    ctx: usize,
    prompts: &[String],
    together: usize,
    cache: bool,
) -> Vec<(String, usize)> {
    let mut s = Scheduler::new(ctx, engine.slots(), cache, Arc::new(Counters::default()));
    let mut out = Vec::new();
    for group in prompts.chunks(together) {
        let kept: Vec<Kept> = group.iter().map(|_| Kept::default()).collect();
        for (p, k) in group.iter().zip(&kept) {
            assert!(s.has_room(engine));
            s.admit(job(p, k.clone()), tok, engine);
        }
        while s.busy() {
            pollster::block_on(s.round(engine, tok, &NoPrefetch)).unwrap();
        }
        out.extend(kept.iter().map(Kept::reply));
    }
    out
}

/// `generate` alone on a fresh sequence: the reference.
fn alone(engine: &mut Engine, tok: &TokenizerInfo, ctx: usize, prompt: &str) -> String {
    engine.use_slot(0).unwrap();
    engine.reset();
    let ids = tok.encode(prompt, true).unwrap();
    let mut sampler = Sampler::new(greedy());
    generate(engine, tok, &ids, MAX_TOKENS, &mut sampler, ctx, |_| {})
        .unwrap()
        .text
}

const SYSTEM: &str =
    "The following is a story about a king, his daughters and the old mill by the river.";

/// Prompts that share prefixes, each right after the one it shares with: a conversation's next
/// turn (its first turn, the reply, and more), the system prompt with another question, an
/// exact repeat, and one sharing nothing.
fn prompts(first_reply: &str) -> Vec<String> {
    vec![
        format!("{SYSTEM} Who lived in the mill?"),
        format!("{SYSTEM} Who lived in the mill?{first_reply} And then"),
        format!("{SYSTEM} What did the eldest daughter say?"),
        format!("{SYSTEM} What did the eldest daughter say?"),
        "In the beginning God created".to_string(),
    ]
}

fn check(name: &str, m: &Model, engine: &mut Engine, ctx: usize) {
    let tok = &m.tokenizer;
    let first = alone(engine, tok, ctx, &prompts("")[0]);
    let prompts = prompts(&first);
    let want: Vec<String> = prompts.iter().map(|p| alone(engine, tok, ctx, p)).collect();
    // One at a time, the cache on: every reply equal, and the shared prefixes reused.
    let got = serve(engine, tok, ctx, &prompts, 1, true);
    for (i, ((text, _), w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(text, w, "{name}: request {i} with the prefix cache");
    }
    // A slot holds the last request's prompt and reply but its last token; each request
    // reuses what it shares with the one before (the prompt's last token is fed again).
    let cached: Vec<usize> = got.iter().map(|g| g.1).collect();
    let n = |p: &str| tok.encode(p, true).unwrap().len();
    let ok = cached[0] == 0
        && cached[1] >= n(&prompts[0])
        && cached[2] >= n(SYSTEM) - 1
        && cached[3] == n(&prompts[3]) - 1
        && cached[4] == 0;
    assert!(ok, "{name}: cached tokens {cached:?}");
    // The cache off: the same replies, nothing reused.
    let got = serve(engine, tok, ctx, &prompts, 1, false);
    assert!(got.iter().all(|g| g.1 == 0), "{name}: {got:?}");
    assert_eq!(
        got.iter().map(|g| &g.0).collect::<Vec<_>>(),
        want.iter().collect::<Vec<_>>()
    );
    // As many at once as there are slots, twice over (the second round reuses the first's).
    let slots = engine.slots();
    let twice: Vec<String> = prompts.iter().chain(&prompts).cloned().collect();
    let got = serve(engine, tok, ctx, &twice, slots, true);
    for (i, (text, _)) in got.iter().enumerate() {
        assert_eq!(
            text,
            &want[i % want.len()],
            "{name}: request {i}, {slots} at once"
        );
    }
}

fn model(dir: &str) -> Model {
    let path = common::repo().join(dir);
    tide_gpu::model::load(&path).unwrap()
}

#[test]
fn prefix_cache_replies_equal_fresh_runs_on_the_gpu() {
    const CTX: usize = 256;
    for dir in ["models/tide-k4", "models/tide-engram"] {
        let m = model(dir);
        let opts = DecoderOptions {
            ctx_len: CTX,
            slots: 3,
            ..Default::default()
        };
        let dec = GpuDecoder::new(common::gpu(), &m, opts).unwrap();
        let mut engine = Engine::Gpu(Box::new(dec));
        check(dir, &m, &mut engine, CTX);
    }
}

#[test]
fn prefix_cache_replies_equal_fresh_runs_on_the_cpu() {
    const CTX: usize = 256;
    for dir in ["models/tide-k4", "models/tide-engram"] {
        let m = model(dir);
        let mut o = Options::default();
        o.decoder.ctx_len = CTX;
        let rows = MemoryRows::local(&m);
        let (mut engine, _) = Engine::new(&m, &rows, Backend::Cpu, &o).unwrap();
        check(dir, &m, &mut engine, CTX);
    }
}

/// One greedy request through a fresh scheduler: its text.
fn one(
    engine: &mut Engine,
    tok: &TokenizerInfo,
    prompt: &str,
    set: impl FnOnce(&mut Job<Kept>),
) -> String {
    let mut s = Scheduler::new(256, engine.slots(), false, Arc::new(Counters::default()));
    let k = Kept::default();
    let mut j = job(prompt, k.clone());
    j.max_tokens = 120;
    set(&mut j);
    s.admit(j, tok, engine);
    while s.busy() {
        pollster::block_on(s.round(engine, tok, &NoPrefetch)).unwrap();
    }
    k.reply().0
}

#[test]
fn structured_output_on_the_gpus_candidates_equals_every_logit_masked() {
    // On the GPU a structured request chooses among the top-k candidates the grammar allows
    // (k * 8 bytes read back); with log-probabilities asked it reads every logit and masks them.
    // Greedy, both must pick the same tokens.
    let m = model("models/tide-k4");
    let opts = DecoderOptions {
        ctx_len: 256,
        slots: 1,
        ..Default::default()
    };
    let mut engine = Engine::Gpu(Box::new(GpuDecoder::new(common::gpu(), &m, opts).unwrap()));
    let schema = serde_json::json!({"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 10},
        "n": {"type": "integer", "minimum": 0, "maximum": 50},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2}},
        "required": ["name", "n", "tags"], "additionalProperties": false});
    for prompt in ["In the beginning God created", "The king said"] {
        let f = Format::JsonSchema(schema.clone());
        let fast = one(&mut engine, &m.tokenizer, prompt, |j| {
            j.format = Some(f.clone())
        });
        let full = one(&mut engine, &m.tokenizer, prompt, |j| {
            j.format = Some(f.clone());
            j.logprobs = Some(0);
        });
        assert_eq!(fast, full, "{prompt:?}");
        let v: serde_json::Value = serde_json::from_str(&fast).unwrap();
        assert!(v["n"].as_u64().is_some_and(|n| n <= 50), "{fast}");
        // Unconstrained, the model writes no JSON here.
        let free = one(&mut engine, &m.tokenizer, prompt, |_| {});
        assert!(
            serde_json::from_str::<serde_json::Value>(&free).is_err(),
            "{free}"
        );
    }
}

/// A forced tool call through the core alone, in each call syntax: the scheduler's events,
/// shaped whole and streamed, give the same one call of the named tool, its arguments valid,
/// finish_reason "tool_calls". (The templates are small ones that show tools the way
/// Qwen2.5's and Llama 3's do; tests/api/test_tools.py runs the real ones.)
#[test]
fn forced_tool_calls_come_out_of_the_core_whole_and_streamed() {
    use tide_gpu::openai::{Kind, Message, Tool, ToolChoice, Tools};
    use tide_gpu::serve::{Chunker, Chunks, Shape, Whole};
    let mut m = model("models/tide-k4");
    let opts = DecoderOptions {
        ctx_len: 256,
        slots: 1,
        ..Default::default()
    };
    let mut engine = Engine::Gpu(Box::new(GpuDecoder::new(common::gpu(), &m, opts).unwrap()));
    let params = serde_json::json!({"type": "object", "properties": {
        "city": {"enum": ["Paris", "Oslo"]}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
        "required": ["city", "days"], "additionalProperties": false});
    let tool = |name: &str| Tool {
        name: name.into(),
        parameters: params.clone(),
        spec: serde_json::json!({"type": "function", "function": {"name": name}}),
    };
    let body = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:";
    for (template, head) in [
        ("{% if tools %}Tools: {{ tools | tojson }}. Write <tool_call>{}</tool_call>.\n{% endif %}", "<tool_call>"),
        ("{% if tools %}Tools: {{ tools | tojson }}. Write {\"name\": f, \"parameters\": {}}.\n{% endif %}", "{\"name\""),
    ] {
        m.tokenizer.chat_template = Some(format!("{template}{body}"));
        let mut s = Scheduler::new(256, engine.slots(), false, Arc::new(Counters::default()));
        let k = Kept::default();
        let mut j = job("", k.clone());
        j.prompt = Prompt::Chat(vec![Message::text("user", "Weather in Oslo?")]);
        j.max_tokens = 160;
        j.tools = Some(Tools {
            list: vec![tool("get_weather"), tool("other")],
            choice: ToolChoice::Named("get_weather".into()),
            parallel: true,
        });
        s.admit(j, &m.tokenizer, &engine);
        while s.busy() {
            pollster::block_on(s.round(&mut engine, &m.tokenizer, &NoPrefetch)).unwrap();
        }
        let raw = k.reply().0;
        assert!(raw.starts_with(head), "{raw}");
        let shape = Shape {
            kind: Kind::Chat,
            include_usage: false,
            id: "chatcmpl-t".into(),
            created: 0,
            model: "m".into(),
        };
        let events = k.0.borrow().clone();
        let mut w = Whole::new(shape.clone());
        let whole = events.iter().find_map(|e| w.event(e.clone())).unwrap().unwrap();
        let choice = &whole["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls", "{whole}");
        assert_eq!(choice["message"]["content"], serde_json::Value::Null);
        let call = &choice["message"]["tool_calls"][0];
        assert_eq!(call["function"]["name"], "get_weather");
        let args: serde_json::Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert!(["Paris", "Oslo"].contains(&args["city"].as_str().unwrap()), "{args}");
        assert!((1..=7).contains(&args["days"].as_u64().unwrap()), "{args}");
        // Streamed: the same call, reassembled from its deltas.
        let mut c = Chunker::new(shape);
        let (mut name, mut arguments, mut finish) = (String::new(), String::new(), None);
        for e in events {
            let (Chunks::Send(cs) | Chunks::End(cs)) = c.event(e) else {
                panic!("failed")
            };
            for ch in cs {
                let d = &ch["choices"][0];
                assert!(d["delta"]["content"].as_str().unwrap_or("").is_empty(), "{ch}");
                for tc in d["delta"]["tool_calls"].as_array().into_iter().flatten() {
                    name += tc["function"]["name"].as_str().unwrap_or("");
                    arguments += tc["function"]["arguments"].as_str().unwrap_or("");
                }
                finish = d["finish_reason"].as_str().map(String::from).or(finish);
            }
        }
        assert_eq!((name.as_str(), arguments.as_str()), ("get_weather", call["function"]["arguments"].as_str().unwrap()));
        assert_eq!(finish.as_deref(), Some("tool_calls"));
    }
}
