//! The OpenAI API's response bodies, made from the scheduler's events: whole replies, the
//! chunks of a stream, usage and error bodies. `tide serve` sends them over HTTP; the
//! browser's worker hands the same objects to the page.
use serde_json::{json, Value};

use super::logprobs::TokenLogprob;
use super::scheduler::Event;
use super::tools::{read_calls, Call, CallReader, Out, Syntax};
use crate::openai::Kind;

/// What a reply looks like beyond its text: its endpoint, id, time and model.
#[derive(Clone, Debug)]
pub struct Shape {
    pub kind: Kind,
    pub include_usage: bool,
    pub id: String,
    pub created: u64,
    pub model: String,
}

/// An OpenAI-style error body.
pub fn error_body(status: u16, message: &str, code: Option<&str>) -> Value {
    let kind = match status {
        401 => "authentication_error",
        500.. => "server_error",
        _ => "invalid_request_error",
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

/// OpenAI's error code for a failed request's message, where it has one.
pub fn error_code(status: u16, message: &str) -> Option<&'static str> {
    (status == 400 && message.contains("context")).then_some("context_length_exceeded")
}

/// The error body of a request that failed with `status` and `message` (its OpenAI code
/// derived from them).
pub fn failure(status: u16, message: &str) -> Value {
    error_body(status, message, error_code(status, message))
}

pub fn usage(prompt: usize, cached: usize, completion: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached}})
}

impl Shape {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Text, _) => "text_completion",
        }
    }

    /// Log-probabilities in the request kind's shape, for the tokens of one piece or a whole
    /// reply; `offset` is the text offset of the first (completions' text_offset).
    pub fn logprobs(&self, lps: &[TokenLogprob], mut offset: usize) -> Value {
        if lps.is_empty() {
            return Value::Null;
        }
        let bytes = |t: &str| t.as_bytes().to_vec();
        match self.kind {
            Kind::Chat => json!({"content": lps.iter().map(|l| json!({
                "token": l.token, "logprob": l.logprob, "bytes": bytes(&l.token),
                "top_logprobs": l.top.iter().map(|(t, p)| json!({"token": t, "logprob": p, "bytes": bytes(t)})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>()}),
            Kind::Text => {
                let mut offsets = Vec::new();
                for l in lps {
                    offsets.push(offset);
                    offset += l.token.len();
                }
                json!({
                    "tokens": lps.iter().map(|l| &l.token).collect::<Vec<_>>(),
                    "token_logprobs": lps.iter().map(|l| l.logprob).collect::<Vec<_>>(),
                    "top_logprobs": lps.iter().map(|l| l.top.iter().map(|(t, p)| (t.clone(), json!(p))).collect::<serde_json::Map<_, _>>()).collect::<Vec<_>>(),
                    "text_offset": offsets,
                })
            }
        }
    }

    /// Call i's id: unique to this reply, the same whether streamed or not.
    fn call_id(&self, i: usize) -> String {
        format!("call_{}_{i}", self.id.trim_start_matches("chatcmpl-"))
    }

    /// The whole reply as one object; `calls`: the tool calls read from it (`text` is then
    /// what is outside them: null when nothing).
    pub fn whole(
        &self,
        text: &str,
        calls: &[Call],
        lps: &[TokenLogprob],
        finish: &str,
        usage: Value,
    ) -> Value {
        let logprobs = self.logprobs(lps, 0);
        let mut message = json!({"role": "assistant", "content": text});
        if !calls.is_empty() {
            if text.is_empty() {
                message["content"] = Value::Null;
            }
            message["tool_calls"] = (calls.iter().enumerate())
                .map(|(i, c)| {
                    json!({"id": self.call_id(i), "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments}})
                })
                .collect();
        }
        let choice = match self.kind {
            Kind::Chat => json!({"index": 0, "message": message,
                "logprobs": logprobs, "finish_reason": finish}),
            Kind::Text => {
                json!({"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish})
            }
        };
        json!({"id": self.id, "object": self.object(false), "created": self.created,
            "model": self.model, "choices": [choice], "usage": usage})
    }

    /// One streamed chunk: `choices` (empty for the usage chunk) and, with include_usage,
    /// `usage` (null but in the usage chunk).
    fn chunk(&self, choices: Value, usage: Option<Value>) -> Value {
        let mut c = json!({"id": self.id, "object": self.object(true), "created": self.created,
            "model": self.model, "choices": choices});
        if self.include_usage {
            c["usage"] = usage.unwrap_or(Value::Null);
        }
        c
    }

    /// A chat chunk's choice with `delta.tool_calls`.
    fn tool_delta(&self, calls: Value) -> Value {
        json!([{"index": 0, "delta": {"tool_calls": calls}, "logprobs": null,
            "finish_reason": null}])
    }

    fn choice(&self, text: Option<&str>, logprobs: Value, finish: Option<&str>) -> Value {
        match self.kind {
            Kind::Chat => {
                let delta = match text {
                    Some(t) => json!({"content": t}),
                    None => json!({}),
                };
                json!([{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}])
            }
            Kind::Text => json!([{"index": 0, "text": text.unwrap_or(""), "logprobs": logprobs,
                "finish_reason": finish}]),
        }
    }
}

/// The finish reason of a reply that made `calls` tool calls: "tool_calls" when it ended
/// by itself after them.
fn finish_with_calls(finish: &'static str, calls: usize) -> &'static str {
    match (finish, calls) {
        ("stop", 1..) => "tool_calls",
        (f, _) => f,
    }
}

/// Turns a request's events into stream chunks, in order.
pub struct Chunker {
    pub shape: Shape,
    opened: bool,
    offset: usize,
    /// Tool calls are read from the reply (the request has tools): text that may be a call
    /// is held back, calls go out as `delta.tool_calls`.
    reader: Option<CallReader>,
    calls: usize,
}

/// What one event makes of a stream.
pub enum Chunks {
    /// Chunks to send (none for an empty piece).
    Send(Vec<Value>),
    /// The last chunks; then `[DONE]`.
    End(Vec<Value>),
    /// The request failed: its status and an error object to send, then close.
    Failed(u16, Value),
}

impl Chunker {
    pub fn new(shape: Shape) -> Chunker {
        Chunker {
            shape,
            opened: false,
            offset: 0,
            reader: None,
            calls: 0,
        }
    }

    /// The chunks of what a call reader gave out; `lp` goes with the first (or alone, with
    /// empty content, when there is nothing to send).
    fn outs(&mut self, outs: Vec<Out>, mut lp: Value, out: &mut Vec<Value>) {
        for o in outs {
            let choice = match o {
                Out::Text(t) => self.shape.choice(Some(&t), std::mem::take(&mut lp), None),
                Out::Call(c) => {
                    // The call's id, type and name first, then its arguments, as OpenAI's.
                    let i = self.calls;
                    self.calls += 1;
                    let head = json!([{"index": i, "id": self.shape.call_id(i),
                        "type": "function", "function": {"name": c.name, "arguments": ""}}]);
                    out.push(self.shape.chunk(self.shape.tool_delta(head), None));
                    let args = json!([{"index": i, "function": {"arguments": c.arguments}}]);
                    self.shape.tool_delta(args)
                }
            };
            out.push(self.shape.chunk(choice, None));
        }
        if !lp.is_null() {
            let c = self.shape.choice(Some(""), lp, None);
            out.push(self.shape.chunk(c, None));
        }
    }

    pub fn event(&mut self, ev: Event) -> Chunks {
        let mut out = Vec::new();
        if !self.opened && !matches!(ev, Event::Error { .. }) {
            self.opened = true;
            // A chat stream opens with the assistant's role.
            if self.shape.kind == Kind::Chat {
                let c = json!([{"index": 0, "delta": {"role": "assistant", "content": ""},
                    "logprobs": null, "finish_reason": null}]);
                out.push(self.shape.chunk(c, None));
            }
        }
        match ev {
            Event::Started { calls, .. } => {
                self.reader = calls.map(CallReader::new);
                Chunks::Send(out)
            }
            Event::Piece { text, logprobs } if self.reader.is_some() => {
                let lp = self.shape.logprobs(&logprobs, 0);
                let outs = (self.reader.as_mut()).map_or(Vec::new(), |r| r.push(&text));
                self.outs(outs, lp, &mut out);
                Chunks::Send(out)
            }
            Event::Piece { text, logprobs } => {
                if !(text.is_empty() && logprobs.is_empty()) {
                    let lp = self.shape.logprobs(&logprobs, self.offset);
                    self.offset += text.len();
                    out.push(
                        self.shape
                            .chunk(self.shape.choice(Some(&text), lp, None), None),
                    );
                }
                Chunks::Send(out)
            }
            Event::Done {
                finish_reason,
                prompt_tokens,
                cached_tokens,
                completion_tokens,
            } => {
                if let Some(outs) = self.reader.as_mut().map(CallReader::finish) {
                    self.outs(outs, Value::Null, &mut out);
                }
                let finish_reason = finish_with_calls(finish_reason, self.calls);
                let c = self.shape.choice(None, Value::Null, Some(finish_reason));
                out.push(self.shape.chunk(c, None));
                if self.shape.include_usage {
                    let u = usage(prompt_tokens, cached_tokens, completion_tokens);
                    out.push(self.shape.chunk(json!([]), Some(u)));
                }
                Chunks::End(out)
            }
            Event::Error { status, message } => Chunks::Failed(status, failure(status, &message)),
        }
    }
}

/// Gathers a request's events into its whole reply.
pub struct Whole {
    pub shape: Shape,
    text: String,
    lps: Vec<TokenLogprob>,
    /// Tool calls are read from the reply, in this syntax.
    calls: Option<Syntax>,
}

impl Whole {
    pub fn new(shape: Shape) -> Whole {
        Whole {
            shape,
            text: String::new(),
            lps: Vec::new(),
            calls: None,
        }
    }

    /// Take one event: Some(Ok(reply)) once done, Some(Err((status, error body))) if it
    /// failed, None while more is to come.
    pub fn event(&mut self, ev: Event) -> Option<std::result::Result<Value, (u16, Value)>> {
        match ev {
            Event::Started { calls, .. } => {
                self.calls = calls;
                None
            }
            Event::Piece { text, logprobs } => {
                self.text += &text;
                self.lps.extend(logprobs);
                None
            }
            Event::Done {
                finish_reason,
                prompt_tokens,
                cached_tokens,
                completion_tokens,
            } => {
                let u = usage(prompt_tokens, cached_tokens, completion_tokens);
                let (text, calls) = match self.calls {
                    Some(s) => read_calls(s, &self.text),
                    None => (std::mem::take(&mut self.text), Vec::new()),
                };
                let finish_reason = finish_with_calls(finish_reason, calls.len());
                Some(Ok((self.shape).whole(
                    &text,
                    &calls,
                    &self.lps,
                    finish_reason,
                    u,
                )))
            }
            Event::Error { status, message } => Some(Err((status, failure(status, &message)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(kind: Kind, include_usage: bool) -> Shape {
        Shape {
            kind,
            include_usage,
            id: "x".into(),
            created: 1,
            model: "m".into(),
        }
    }

    #[test]
    fn a_chat_stream_opens_with_the_role_and_ends_with_usage() {
        let mut c = Chunker::new(shape(Kind::Chat, true));
        let Chunks::Send(first) = c.event(Event::Started {
            prompt_tokens: 5,
            cached_tokens: 2,
            calls: None,
        }) else {
            panic!("the start is not the end")
        };
        assert_eq!(first[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(first[0]["usage"], Value::Null);
        let Chunks::Send(p) = c.event(Event::Piece {
            text: "hi".into(),
            logprobs: vec![],
        }) else {
            panic!()
        };
        assert_eq!(p[0]["choices"][0]["delta"]["content"], "hi");
        assert_eq!(p[0]["object"], "chat.completion.chunk");
        let Chunks::End(end) = c.event(Event::Done {
            finish_reason: "length",
            prompt_tokens: 5,
            cached_tokens: 2,
            completion_tokens: 1,
        }) else {
            panic!()
        };
        assert_eq!(end[0]["choices"][0]["finish_reason"], "length");
        assert_eq!(end[1]["choices"], json!([]));
        assert_eq!(end[1]["usage"]["total_tokens"], 6);
        assert_eq!(end[1]["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
    }

    #[test]
    fn completions_logprobs_carry_text_offsets() {
        let s = shape(Kind::Text, false);
        let lp = |t: &str| TokenLogprob {
            token: t.into(),
            logprob: -1.0,
            top: vec![(t.into(), -1.0)],
        };
        let v = s.logprobs(&[lp("ab"), lp("c")], 3);
        assert_eq!(v["text_offset"], json!([3, 5]));
        assert_eq!(v["tokens"], json!(["ab", "c"]));
        let mut w = Whole::new(s);
        assert!(w
            .event(Event::Piece {
                text: "abc".into(),
                logprobs: vec![]
            })
            .is_none());
        let r = w.event(Event::Done {
            finish_reason: "stop",
            prompt_tokens: 1,
            cached_tokens: 0,
            completion_tokens: 2,
        });
        let v = r.unwrap().unwrap();
        assert_eq!(v["choices"][0]["text"], "abc");
        assert_eq!(v["object"], "text_completion");
    }
}
