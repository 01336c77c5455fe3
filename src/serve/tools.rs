//! Tool calls in the model's own syntax: which syntax a chat template teaches (`Syntax::of`),
//! the grammar that forces a call (`tool_choice` "required" or a named function), and the
//! reading of a reply, streamed or whole, into text and calls (`CallReader`).
//!
//! Two families: Hermes-style, which Qwen2.5 and Qwen3 use, one call per
//! `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>` block (several blocks for
//! several calls); and Llama 3.1/3.2's, the whole reply one JSON object
//! `{"name": ..., "parameters": {...}}` (after `<|python_tag|>` at times; several separated
//! by `;`).
use serde_json::Value;

use crate::openai::{Tool, ToolChoice};

/// How a model writes a tool call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// `<tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>`
    Hermes,
    /// `{"name": "f", "parameters": {...}}` as the whole reply.
    LlamaJson,
}

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";
const PYTHON_TAG: &str = "<|python_tag|>";

impl Syntax {
    /// The syntax a chat template shows the model, or why tools cannot be used with it.
    pub fn of(template: Option<&str>) -> Result<Syntax, String> {
        if !crate::chat::has_tools(template) {
            return Err(
                "this model's chat template has no tool support: it never shows the \
                        model 'tools'"
                    .into(),
            );
        }
        let t = template.unwrap_or_default();
        if t.contains(OPEN) {
            Ok(Syntax::Hermes)
        } else if t.contains("\"parameters\": ") {
            Ok(Syntax::LlamaJson)
        } else {
            Err(
                "this model's chat template writes tool calls in a syntax tide cannot read \
                 (it reads Qwen/Hermes' <tool_call> blocks and Llama 3's JSON)"
                    .into(),
            )
        }
    }

    /// The key of a call's arguments.
    fn arguments_key(self) -> &'static str {
        match self {
            Syntax::Hermes => "arguments",
            Syntax::LlamaJson => "parameters",
        }
    }
}

/// One call read from a reply: its function and its arguments as JSON text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub name: String,
    pub arguments: String,
}

/// The Lark grammar (llguidance's) forcing exactly one call of the tools `choice` allows, in
/// `syntax`: the call's frame as literal text (the name among the allowed ones) and its
/// arguments valid against that tool's `parameters`, laid out as the templates show calls
/// (one space after ',' and ':'). None when the choice forces nothing.
pub fn forcing_grammar(syntax: Syntax, tools: &[Tool], choice: &ToolChoice) -> Option<String> {
    let allowed: Vec<&Tool> = match choice {
        ToolChoice::None | ToolChoice::Auto => return None,
        ToolChoice::Required => tools.iter().collect(),
        ToolChoice::Named(n) => tools.iter().filter(|t| &t.name == n).collect(),
    };
    let lit = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut rules = Vec::new();
    let mut alts = Vec::new();
    for (i, t) in allowed.iter().enumerate() {
        let mut schema = t.parameters.clone();
        super::grammar::set_layout(&mut schema);
        // Names are letters, digits, '_' and '-' (openai.rs): nothing to escape in JSON.
        let head = format!(
            "{{\"name\": \"{}\", \"{}\": ",
            t.name,
            syntax.arguments_key()
        );
        rules.push(format!("call_{i}: {} args_{i} \"}}\"", lit(&head)));
        rules.push(format!("args_{i}: %json {schema}"));
        alts.push(format!("call_{i}"));
    }
    let start = match syntax {
        Syntax::Hermes => format!(
            "start: {} call {}",
            lit("<tool_call>\n"),
            lit("\n</tool_call>")
        ),
        Syntax::LlamaJson => "start: call".to_string(),
    };
    Some(format!(
        "{start}\ncall: {}\n{}\n",
        alts.join(" | "),
        rules.join("\n")
    ))
}

/// A call object of `syntax` ({"name": string, "<arguments key>": object}), or None.
fn call_of(syntax: Syntax, v: &Value) -> Option<Call> {
    let o = v.as_object()?;
    let name = o.get("name")?.as_str()?;
    // Llama 3 models also write "arguments" at times.
    let args = o
        .get(syntax.arguments_key())
        .or_else(|| o.get("arguments"))
        .filter(|a| a.is_object())?;
    (o.len() == 2).then(|| Call {
        name: name.to_string(),
        arguments: args.to_string(),
    })
}

/// Llama 3's reply as calls: JSON objects separated by whitespace or ';', after an optional
/// `<|python_tag|>`; None unless all of it is calls.
fn llama_calls(text: &str) -> Option<Vec<Call>> {
    let mut rest = text.trim_start();
    rest = rest.strip_prefix(PYTHON_TAG).unwrap_or(rest);
    let mut calls = Vec::new();
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ';');
        if rest.is_empty() {
            break;
        }
        let mut it = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        let v = it.next()?.ok()?;
        calls.push(call_of(Syntax::LlamaJson, &v)?);
        rest = &rest[it.byte_offset()..];
    }
    (!calls.is_empty()).then_some(calls)
}

/// What a reader gives out: text to send as content, or a whole call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Out {
    Text(String),
    Call(Call),
}

/// Reads a reply, piece by piece, into text and calls. Text that may be the start of a call
/// is held back until it is known, and whitespace next to a call is dropped; text that turns
/// out not to be a well-formed call is sent as text after all.
pub struct CallReader {
    syntax: Syntax,
    held: String,
    /// Hermes: inside a `<tool_call>` block (`held` is its body so far).
    in_call: bool,
    /// Llama: the reply opened as JSON, so all of it is held to the end.
    json: bool,
    /// Llama: text was sent, so the reply is not a call.
    plain: bool,
    /// Whitespace not sent yet: dropped when a call follows it.
    space: String,
    calls: usize,
}

impl CallReader {
    pub fn new(syntax: Syntax) -> CallReader {
        CallReader {
            syntax,
            held: String::new(),
            in_call: false,
            json: false,
            plain: false,
            space: String::new(),
            calls: 0,
        }
    }

    /// Text to send, whitespace held until text follows it.
    fn text(&mut self, s: &str, out: &mut Vec<Out>) {
        let body = s.trim_end();
        if !body.is_empty() {
            out.push(Out::Text(std::mem::take(&mut self.space) + body));
        }
        self.space += &s[body.len()..];
    }

    fn call(&mut self, c: Call, out: &mut Vec<Out>) {
        self.space.clear();
        self.calls += 1;
        out.push(Out::Call(c));
    }

    /// Take `piece`: what can be given out now.
    pub fn push(&mut self, piece: &str) -> Vec<Out> {
        self.held += piece;
        let mut out = Vec::new();
        match self.syntax {
            Syntax::Hermes => self.hermes(&mut out),
            Syntax::LlamaJson => self.llama(&mut out),
        }
        out
    }

    fn hermes(&mut self, out: &mut Vec<Out>) {
        loop {
            if self.in_call {
                let Some(end) = self.held.find(CLOSE) else {
                    return;
                };
                let body = self.held[..end].to_string();
                self.held.drain(..end + CLOSE.len());
                self.in_call = false;
                let v = serde_json::from_str::<Value>(body.trim()).ok();
                match v.and_then(|v| call_of(Syntax::Hermes, &v)) {
                    Some(c) => self.call(c, out),
                    None => self.text(&format!("{OPEN}{body}{CLOSE}"), out),
                }
            } else if let Some(at) = self.held.find(OPEN) {
                let before = self.held[..at].to_string();
                self.text(&before, out);
                self.held.drain(..at + OPEN.len());
                self.in_call = true;
            } else {
                // Send all but a tail that may begin the tag.
                let h = &self.held;
                let keep = (1..OPEN.len().min(h.len() + 1))
                    .rev()
                    .find(|&k| {
                        h.is_char_boundary(h.len() - k) && OPEN.starts_with(&h[h.len() - k..])
                    })
                    .unwrap_or(0);
                let send: String = self.held.drain(..h.len() - keep).collect();
                self.text(&send, out);
                return;
            }
        }
    }

    fn llama(&mut self, out: &mut Vec<Out>) {
        if self.json {
            return;
        }
        if !self.plain {
            let t = self.held.trim_start();
            if t.is_empty() || (t.len() < PYTHON_TAG.len() && PYTHON_TAG.starts_with(t)) {
                return; // not known yet
            }
            if t.starts_with('{') || t.starts_with(PYTHON_TAG) {
                self.json = true;
                return;
            }
            self.plain = true;
        }
        let send = std::mem::take(&mut self.held);
        self.text(&send, out);
    }

    /// The reply has ended: what was held, as text or calls.
    pub fn finish(&mut self) -> Vec<Out> {
        let mut out = Vec::new();
        let held = std::mem::take(&mut self.held);
        match self.syntax {
            Syntax::Hermes if self.in_call => self.text(&format!("{OPEN}{held}"), &mut out),
            Syntax::LlamaJson if self.json => match llama_calls(&held) {
                Some(calls) => calls.into_iter().for_each(|c| self.call(c, &mut out)),
                None => self.text(&held, &mut out),
            },
            _ => self.text(&held, &mut out),
        }
        // Trailing whitespace is the reply's own unless calls were made.
        if self.calls == 0 && !self.space.is_empty() {
            out.push(Out::Text(std::mem::take(&mut self.space)));
        }
        out
    }
}

/// A whole reply read as (text, calls): the text outside the calls.
pub fn read_calls(syntax: Syntax, reply: &str) -> (String, Vec<Call>) {
    read_pieces(syntax, &[reply])
}

/// A reply that came in `pieces` (a stream's), read as (text, calls).
pub fn read_pieces(syntax: Syntax, pieces: &[&str]) -> (String, Vec<Call>) {
    let mut r = CallReader::new(syntax);
    let mut outs = Vec::new();
    for p in pieces {
        outs.extend(r.push(p));
    }
    outs.extend(r.finish());
    let mut text = String::new();
    let mut calls = Vec::new();
    for o in outs {
        match o {
            Out::Text(t) => text += &t,
            Out::Call(c) => calls.push(c),
        }
    }
    (text, calls)
}

#[cfg(test)]
#[path = "tools_tests.rs"]
mod tests;
