//! The request fields of tool calling: `tools`, `tool_choice`, `parallel_tool_calls`, and the
//! messages that carry calls (an assistant's `tool_calls`) and their results (`role: "tool"`).
//! What the model's template makes of them is `crate::chat`'s; how calls are forced and read
//! back is `crate::serve::tools`'.
use serde_json::Value;

use super::{bad, content, Kind, Message, Refusal};

/// One declared function.
#[derive(Clone, Debug, PartialEq)]
pub struct Tool {
    pub name: String,
    /// The JSON schema of its arguments (an object's; `{"type": "object", "properties": {}}`
    /// when the request gave none).
    pub parameters: Value,
    /// The tool as the request gave it ({"type": "function", "function": {...}}): what the
    /// template is given, as Hugging Face's apply_chat_template gives it.
    pub spec: Value,
}

/// `tool_choice`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model answers in text; its output is never read as calls.
    None,
    /// The model may call tools; calls in its output are read back, anything else is text.
    Auto,
    /// The model must call one of the tools (forced by a grammar).
    Required,
    /// The model must call this function (forced by a grammar).
    Named(String),
}

/// A request's tools.
#[derive(Clone, Debug, PartialEq)]
pub struct Tools {
    pub list: Vec<Tool>,
    pub choice: ToolChoice,
    /// `parallel_tool_calls` (default true): accepted; a forced choice makes one call.
    pub parallel: bool,
}

/// OpenAI's rule for function names.
fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn tool(t: &Value, i: usize) -> Result<Tool, Refusal> {
    if t.get("type").and_then(Value::as_str) != Some("function") {
        return Err(bad(format!("tools[{i}].type must be \"function\"")));
    }
    let Some(f) = t.get("function").filter(|f| f.is_object()) else {
        return Err(bad(format!("tools[{i}].function must be an object")));
    };
    let name = match f.get("name").and_then(Value::as_str) {
        Some(n) if valid_name(n) => n.to_string(),
        _ => {
            return Err(bad(format!(
                "tools[{i}].function.name must be 1 to 64 letters, digits, '_' or '-'"
            )))
        }
    };
    if !matches!(
        f.get("description"),
        None | Some(Value::Null | Value::String(_))
    ) {
        return Err(bad(format!(
            "tools[{i}].function.description must be a string"
        )));
    }
    if !matches!(f.get("strict"), None | Some(Value::Null | Value::Bool(_))) {
        return Err(bad(format!(
            "tools[{i}].function.strict must be true or false"
        )));
    }
    let parameters = match f.get("parameters") {
        None | Some(Value::Null) => serde_json::json!({"type": "object", "properties": {}}),
        Some(p @ Value::Object(_)) => p.clone(),
        Some(_) => {
            return Err(bad(format!(
                "tools[{i}].function.parameters must be a JSON schema (an object)"
            )))
        }
    };
    Ok(Tool {
        name,
        parameters,
        spec: t.clone(),
    })
}

/// The body's tools, if it declares any: each checked, and the choice among them.
pub(super) fn tools(v: &Value, kind: Kind) -> Result<Option<Tools>, Refusal> {
    let given = |k: &str| !matches!(v.get(k), None | Some(Value::Null));
    if kind == Kind::Text {
        if let Some(k) = ["tools", "tool_choice"].into_iter().find(|k| given(k)) {
            return Err(bad(format!("'{k}' is for /v1/chat/completions")));
        }
        return Ok(None);
    }
    let parallel = match v.get("parallel_tool_calls") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(x) => {
            return Err(bad(format!(
                "'parallel_tool_calls' must be true or false, got {x}"
            )))
        }
    };
    let list = match v.get("tools") {
        None | Some(Value::Null) => {
            if given("tool_choice") {
                return Err(bad("'tool_choice' is only allowed when 'tools' are given"));
            }
            return Ok(None);
        }
        Some(Value::Array(a)) if !a.is_empty() && a.len() <= 128 => a,
        Some(_) => return Err(bad("'tools' must be an array of 1 to 128 tools")),
    };
    let mut out: Vec<Tool> = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let t = tool(t, i)?;
        if out.iter().any(|o| o.name == t.name) {
            return Err(bad(format!(
                "tools[{i}].function.name '{}' is declared twice",
                t.name
            )));
        }
        out.push(t);
    }
    let choice = match v.get("tool_choice") {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) if s == "none" => ToolChoice::None,
        Some(Value::String(s)) if s == "auto" => ToolChoice::Auto,
        Some(Value::String(s)) if s == "required" => ToolChoice::Required,
        Some(c @ Value::Object(_)) => {
            let name = (c.get("type").and_then(Value::as_str) == Some("function"))
                .then(|| c.pointer("/function/name").and_then(Value::as_str))
                .flatten();
            match name {
                Some(n) if out.iter().any(|t| t.name == n) => ToolChoice::Named(n.to_string()),
                Some(n) => {
                    return Err(bad(format!(
                        "'tool_choice.function.name' names '{n}', which is not among 'tools'"
                    )))
                }
                None => {
                    return Err(bad(
                        "'tool_choice' must be \"none\", \"auto\", \"required\" or \
                         {\"type\": \"function\", \"function\": {\"name\": ...}}",
                    ))
                }
            }
        }
        Some(_) => {
            return Err(bad(
                "'tool_choice' must be \"none\", \"auto\", \"required\" or \
                 {\"type\": \"function\", \"function\": {\"name\": ...}}",
            ))
        }
    };
    Ok(Some(Tools {
        list: out,
        choice,
        parallel,
    }))
}

/// An assistant's tool call j of message i, its arguments parsed for the template.
fn tool_call(c: &Value, i: usize, j: usize) -> Result<Value, Refusal> {
    let at = format!("messages[{i}].tool_calls[{j}]");
    if !c.is_object() {
        return Err(bad(format!("{at} must be an object")));
    }
    if !matches!(c.get("type"), None | Some(Value::Null))
        && c.get("type").and_then(Value::as_str) != Some("function")
    {
        return Err(bad(format!("{at}.type must be \"function\"")));
    }
    let Some(id) = c.get("id").and_then(Value::as_str) else {
        return Err(bad(format!("{at}.id must be a string")));
    };
    let Some(name) = c.pointer("/function/name").and_then(Value::as_str) else {
        return Err(bad(format!("{at}.function.name must be a string")));
    };
    let arguments = match c.pointer("/function/arguments") {
        Some(Value::String(s)) => serde_json::from_str::<Value>(s)
            .map_err(|e| bad(format!("{at}.function.arguments is not valid JSON: {e}")))?,
        _ => {
            return Err(bad(format!(
                "{at}.function.arguments must be a string of JSON"
            )))
        }
    };
    Ok(serde_json::json!({"id": id, "type": "function",
        "function": {"name": name, "arguments": arguments}}))
}

/// Message i of `role` checked, after the messages `before` it: an assistant's tool calls,
/// a tool's reply to one of the calls of the assistant's turn just before.
pub(super) fn message(
    m: &Value,
    i: usize,
    role: &str,
    before: &[Message],
) -> Result<Message, Refusal> {
    let mut out = Message::text(role, &content(m, i, role)?);
    match role {
        "assistant" => match m.get("tool_calls") {
            None | Some(Value::Null) => {}
            Some(Value::Array(calls)) => {
                for (j, c) in calls.iter().enumerate() {
                    out.tool_calls.push(tool_call(c, i, j)?);
                }
            }
            Some(_) => return Err(bad(format!("messages[{i}].tool_calls must be an array"))),
        },
        "tool" => {
            let Some(id) = m.get("tool_call_id").and_then(Value::as_str) else {
                return Err(bad(format!(
                    "messages[{i}].tool_call_id is required for role 'tool' (a string)"
                )));
            };
            // The assistant turn the tool replies answer: the last before them.
            let asked = before.iter().rev().find(|b| b.role != "tool");
            let ids = asked.map_or(Vec::new(), |a| {
                a.tool_calls
                    .iter()
                    .filter_map(|c| c.get("id").and_then(Value::as_str))
                    .collect()
            });
            if !ids.contains(&id) {
                return Err(bad(format!(
                    "messages[{i}]: a 'tool' message must answer a call of the assistant's \
                     message before it; no call there has the id '{id}'"
                )));
            }
            out.tool_call_id = Some(id.to_string());
            match m.get("name") {
                None | Some(Value::Null) => {}
                Some(Value::String(n)) => out.name = Some(n.clone()),
                Some(_) => return Err(bad(format!("messages[{i}].name must be a string"))),
            }
        }
        _ => {}
    }
    Ok(out)
}
