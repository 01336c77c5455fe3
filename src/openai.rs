//! The OpenAI-compatible API's request bodies (`tide serve`, src/cli/api.rs): a POST body's
//! bytes checked and turned into a `Request`, or a `Refusal` with the HTTP status and message
//! the client gets. Here, in the library, so that it can be fuzzed (fuzz/fuzz_targets/).
use serde_json::Value;

use crate::SamplerConfig;

mod tools;
use tools::message;
pub use tools::{Tool, ToolChoice, Tools};

/// What a reply must be (`response_format`); made into a token mask by `serve::grammar`.
#[derive(Clone, Debug, PartialEq)]
pub enum Format {
    /// Any JSON object (`{"type": "json_object"}`).
    JsonObject,
    /// JSON valid against this schema.
    JsonSchema(Value),
}

/// Which endpoint: /v1/chat/completions or /v1/completions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Chat,
    Text,
}

/// One chat message as the model's template gets it.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub role: String,
    /// The text (text parts joined; "" for an assistant's null content beside tool calls).
    pub content: String,
    /// An assistant's tool calls, as OpenAI sends them ({"id", "type", "function": {"name",
    /// "arguments"}}) but with `arguments` parsed from its JSON string into a value, as
    /// Hugging Face's templates expect (they write it with `tojson`).
    pub tool_calls: Vec<Value>,
    /// A tool's reply: the id of the call it answers.
    pub tool_call_id: Option<String>,
    /// A tool's reply: the function's name, when given.
    pub name: Option<String>,
}

impl Message {
    /// A plain message of `role` with `content`.
    pub fn text(role: &str, content: &str) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }
}

/// What to run: chat messages (rendered by the model's template) or plain text.
#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    Chat(Vec<Message>),
    Text(String),
}

/// A valid request, every field checked.
#[derive(Clone, Debug)]
pub struct Request {
    pub model: String,
    pub prompt: Prompt,
    /// The most tokens to generate, as asked (at most the server's cap); None: not asked
    /// (chat: until the context is full or the cap; completions: 16).
    pub max_tokens: Option<usize>,
    /// Sampling; `seed` is the request's, or None for the server to choose.
    pub sampler: SamplerConfig,
    pub seed: Option<u64>,
    /// Up to 4 stop strings.
    pub stop: Vec<String>,
    /// None: no log-probabilities; Some(n): the chosen token's and the n most likely.
    pub logprobs: Option<usize>,
    pub stream: bool,
    pub include_usage: bool,
    /// `response_format`: JSON (any object, or valid against a schema); None: text.
    pub format: Option<Format>,
    /// `tools`, `tool_choice` and `parallel_tool_calls`; None: no tools declared.
    pub tools: Option<Tools>,
}

/// Why a request is refused: the HTTP status, the message, and OpenAI's error code if any.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
    pub code: Option<&'static str>,
}

pub fn bad(msg: impl Into<String>) -> Refusal {
    Refusal {
        status: 400,
        message: msg.into(),
        code: None,
    }
}

/// A number field within [lo, hi], or `default` when absent or null.
fn number(v: &Value, key: &str, lo: f64, hi: f64, default: f64) -> Result<f64, Refusal> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(x) => match x.as_f64() {
            Some(f) if f >= lo && f <= hi => Ok(f),
            _ => Err(bad(format!(
                "'{key}' must be a number in [{lo}, {hi}], got {x}"
            ))),
        },
    }
}

fn count(v: &Value, key: &str, lo: u64, hi: u64) -> Result<Option<u64>, Refusal> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => match x.as_u64() {
            Some(n) if n >= lo && n <= hi => Ok(Some(n)),
            _ => Err(bad(format!(
                "'{key}' must be an integer in [{lo}, {hi}], got {x}"
            ))),
        },
    }
}

fn flag(v: &Value, key: &str) -> Result<bool, Refusal> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(x) => Err(bad(format!("'{key}' must be true or false, got {x}"))),
    }
}

/// The roles a chat message may have (OpenAI's; "developer" is its newer name for system).
pub const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

/// Message i's content: a string, or text parts. Only an assistant's may be absent or null
/// (OpenAI allows that beside tool calls).
fn content(m: &Value, i: usize, role: &str) -> Result<String, Refusal> {
    match m.get("content") {
        None | Some(Value::Null) if role == "assistant" => Ok(String::new()),
        None | Some(Value::Null) => Err(bad(format!(
            "messages[{i}].content is required for role '{role}' (a string or text parts)"
        ))),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| {
                match (
                    p.get("type").and_then(Value::as_str),
                    p.get("text").and_then(Value::as_str),
                ) {
                    (Some("text"), Some(t)) => Ok(t.to_string()),
                    _ => Err(bad(format!(
                        "messages[{i}].content: only text parts are supported"
                    ))),
                }
            })
            .collect(),
        Some(x) => Err(bad(format!(
            "messages[{i}].content must be a string or text parts, got {x}"
        ))),
    }
}

/// `response_format`: {"type": "text"}, {"type": "json_object"} or {"type": "json_schema",
/// "json_schema": {"name", "schema", "strict"}}. (Whether the schema's features are supported
/// is the grammar engine's to say, once the request runs.)
fn response_format(v: &Value) -> Result<Option<Format>, Refusal> {
    let rf = match v.get("response_format") {
        None | Some(Value::Null) => return Ok(None),
        Some(rf @ Value::Object(_)) => rf,
        Some(x) => return Err(bad(format!("'response_format' must be an object, got {x}"))),
    };
    match rf.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(Format::JsonObject)),
        Some("json_schema") => {
            let js = rf
                .get("json_schema")
                .filter(|j| j.is_object())
                .ok_or_else(|| {
                    bad("'response_format.json_schema' must be an object with a 'schema'")
                })?;
            if !matches!(js.get("name"), None | Some(Value::String(_))) {
                return Err(bad("'response_format.json_schema.name' must be a string"));
            }
            match js.get("schema") {
                Some(s @ (Value::Object(_) | Value::Bool(true))) => {
                    Ok(Some(Format::JsonSchema(s.clone())))
                }
                _ => Err(bad(
                    "'response_format.json_schema.schema' must be a JSON schema (an object)",
                )),
            }
        }
        _ => Err(bad(
            "'response_format.type' must be \"text\", \"json_object\" or \"json_schema\"",
        )),
    }
}

/// A body's JSON object and its `model`, which must be `served` (404 otherwise).
fn object_for(body: &[u8], served: &str) -> Result<(Value, String), Refusal> {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return Err(bad("the body must be a JSON object")),
        Err(e) => return Err(bad(format!("the body is not valid JSON: {e}"))),
    };
    let model = match v.get("model").and_then(Value::as_str) {
        Some(m) => m.to_string(),
        None => return Err(bad("'model' is required (GET /v1/models lists it)")),
    };
    if model != served {
        return Err(Refusal {
            status: 404,
            message: format!("the model '{model}' does not exist; this server has '{served}'"),
            code: Some("model_not_found"),
        });
    }
    Ok((v, model))
}

/// Check the body of a `kind` request for the model `served`; a request may ask for at most
/// `max_tokens_cap` tokens (the server's `--max-tokens`).
pub fn parse(
    kind: Kind,
    body: &[u8],
    served: &str,
    max_tokens_cap: usize,
) -> Result<Request, Refusal> {
    let (v, model) = object_for(body, served)?;
    if count(&v, "n", 1, 1)?.is_some_and(|n| n != 1) {
        return Err(bad("only n = 1 is supported"));
    }
    for key in ["presence_penalty", "frequency_penalty"] {
        if number(&v, key, -2.0, 2.0, 0.0)? != 0.0 {
            return Err(bad(format!("'{key}' is not supported (only 0)")));
        }
    }
    let prompt = match kind {
        Kind::Chat => {
            let Some(msgs) = v
                .get("messages")
                .and_then(Value::as_array)
                .filter(|m| !m.is_empty())
            else {
                return Err(bad("'messages' must be a non-empty array"));
            };
            let mut out = Vec::new();
            for (i, m) in msgs.iter().enumerate() {
                if !m.is_object() {
                    return Err(bad(format!("messages[{i}] must be an object, got {m}")));
                }
                let Some(role) = m.get("role").and_then(Value::as_str) else {
                    return Err(bad(format!("messages[{i}].role must be a string")));
                };
                if !ROLES.contains(&role) {
                    return Err(bad(format!(
                        "messages[{i}].role '{role}' is not one of {}",
                        ROLES.join(", ")
                    )));
                }
                out.push(message(m, i, role, &out)?);
            }
            Prompt::Chat(out)
        }
        Kind::Text => match v.get("prompt") {
            Some(Value::String(s)) => Prompt::Text(s.clone()),
            Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
                Prompt::Text(a[0].as_str().unwrap_or_default().to_string())
            }
            _ => return Err(bad("'prompt' must be a string (one prompt per request)")),
        },
    };
    if kind == Kind::Text && v.get("echo").and_then(Value::as_bool) == Some(true) {
        return Err(bad("'echo' is not supported"));
    }
    let asked = match kind {
        Kind::Chat => count(&v, "max_completion_tokens", 1, u64::MAX)?.or(count(
            &v,
            "max_tokens",
            1,
            u64::MAX,
        )?),
        // Absent: OpenAI's 16 for completions, the context's end for chat (serve::job_for).
        Kind::Text => count(&v, "max_tokens", 1, u64::MAX)?,
    };
    if let Some(n) = asked.filter(|&n| n > max_tokens_cap as u64) {
        return Err(bad(format!(
            "'max_tokens' is {n}, above this server's limit of {max_tokens_cap} per request"
        )));
    }
    let max_tokens = asked.map(|n| n as usize);
    let stop = match v.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if a.len() <= 4 && a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(|s| s.as_str().map(String::from))
            .collect(),
        Some(x) => {
            return Err(bad(format!(
                "'stop' must be a string or up to 4 strings, got {x}"
            )))
        }
    };
    let logprobs = match kind {
        Kind::Chat => {
            let on = flag(&v, "logprobs")?;
            let top = count(&v, "top_logprobs", 0, 20)?;
            if top.is_some() && !on {
                return Err(bad("'top_logprobs' needs 'logprobs': true"));
            }
            on.then_some(top.unwrap_or(0) as usize)
        }
        Kind::Text => count(&v, "logprobs", 0, 5)?.map(|n| n as usize),
    };
    let seed = count(&v, "seed", 0, u64::MAX)?;
    let sampler = SamplerConfig {
        temperature: number(&v, "temperature", 0.0, 2.0, 1.0)? as f32,
        top_k: 0,
        top_p: number(&v, "top_p", 0.0, 1.0, 1.0)? as f32,
        repeat_penalty: 1.0,
        seed: seed.unwrap_or(0),
        ..SamplerConfig::default()
    };
    if sampler.top_p <= 0.0 {
        return Err(bad("'top_p' must be above 0"));
    }
    let stream = flag(&v, "stream")?;
    let include_usage = stream
        && v.pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false);
    let format = response_format(&v)?;
    let tools = tools::tools(&v, kind)?;
    if let (Some(t), Some(_)) = (&tools, &format) {
        if t.choice != ToolChoice::None {
            return Err(bad(
                "'response_format' cannot be combined with 'tools' unless 'tool_choice' is \"none\"",
            ));
        }
    }
    Ok(Request {
        tools,
        format,
        model,
        prompt,
        max_tokens,
        sampler,
        seed,
        stop,
        logprobs,
        stream,
        include_usage,
    })
}

/// One input of an embeddings request: text, or token ids.
#[derive(Clone, Debug, PartialEq)]
pub enum EmbedInput {
    Text(String),
    Ids(Vec<u32>),
}

/// A valid embeddings request.
#[derive(Clone, Debug)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub inputs: Vec<EmbedInput>,
    /// The vectors as base64 of little-endian f32 (`encoding_format: "base64"`), not numbers.
    pub base64: bool,
}

/// Most inputs in one embeddings request (OpenAI's limit).
pub const MAX_EMBED_INPUTS: usize = 2048;

/// Check the body of a POST to /v1/embeddings for the model `served`.
pub fn parse_embeddings(body: &[u8], served: &str) -> Result<EmbeddingsRequest, Refusal> {
    let (v, model) = object_for(body, served)?;
    let ids = |a: &[Value]| -> Option<Vec<u32>> {
        a.iter()
            .map(|x| x.as_u64().and_then(|n| u32::try_from(n).ok()))
            .collect()
    };
    let inputs = match v.get("input") {
        Some(Value::String(s)) => vec![EmbedInput::Text(s.clone())],
        Some(Value::Array(a)) if a.is_empty() => return Err(bad("'input' must not be empty")),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
            .iter()
            .map(|s| EmbedInput::Text(s.as_str().unwrap_or_default().to_string()))
            .collect(),
        Some(Value::Array(a)) if a.iter().all(Value::is_number) => match ids(a) {
            Some(t) => vec![EmbedInput::Ids(t)],
            None => return Err(bad("'input': token ids must be integers in [0, 2^32)")),
        },
        Some(Value::Array(a)) if a.iter().all(Value::is_array) => {
            let mut out = Vec::with_capacity(a.len());
            for (i, x) in a.iter().enumerate() {
                match x.as_array().and_then(|x| ids(x)) {
                    Some(t) => out.push(EmbedInput::Ids(t)),
                    None => {
                        return Err(bad(format!(
                            "'input[{i}]': token ids must be integers in [0, 2^32)"
                        )))
                    }
                }
            }
            out
        }
        _ => {
            return Err(bad(
                "'input' must be a string, an array of strings, an array of token ids, or an \
                 array of arrays of token ids",
            ))
        }
    };
    if inputs.len() > MAX_EMBED_INPUTS {
        return Err(bad(format!(
            "'input' has {} items; at most {MAX_EMBED_INPUTS}",
            inputs.len()
        )));
    }
    let base64 = match v.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(f)) if f == "float" => false,
        Some(Value::String(f)) if f == "base64" => true,
        Some(x) => {
            return Err(bad(format!(
                "'encoding_format' must be \"float\" or \"base64\", got {x}"
            )))
        }
    };
    if !matches!(v.get("dimensions"), None | Some(Value::Null)) {
        return Err(bad(
            "'dimensions' is not supported: the vectors have the model's width",
        ));
    }
    Ok(EmbeddingsRequest {
        model,
        inputs,
        base64,
    })
}
