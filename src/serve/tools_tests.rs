use super::*;
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::ApproximateTokEnv;
use llguidance::{Matcher, ParserFactory};
use serde_json::json;

fn call(name: &str, arguments: &str) -> Call {
    Call {
        name: name.into(),
        arguments: arguments.into(),
    }
}

/// Every way of cutting `reply` in two at a character boundary, and one character a piece,
/// read as a stream: the same text and calls as the whole reply.
fn streams_agree(syntax: Syntax, reply: &str) {
    let whole = read_calls(syntax, reply);
    let gather = |pieces: &[&str]| read_pieces(syntax, pieces);
    for (i, _) in reply.char_indices().skip(1) {
        assert_eq!(
            gather(&[&reply[..i], &reply[i..]]),
            whole,
            "{reply:?} cut at {i}"
        );
    }
    let chars: Vec<String> = reply.chars().map(String::from).collect();
    let chars: Vec<&str> = chars.iter().map(String::as_str).collect();
    assert_eq!(gather(&chars), whole, "{reply:?} a character at a time");
}

#[test]
fn hermes_calls_are_read_and_everything_else_stays_text() {
    let h = |s: &str| read_calls(Syntax::Hermes, s);
    let one = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
    assert_eq!(
        h(one),
        (
            String::new(),
            vec![call("get_weather", r#"{"city":"Paris"}"#)]
        )
    );
    let two =
        format!("{one}\n<tool_call>\n{{\"name\": \"f\", \"arguments\": {{}}}}\n</tool_call>\n");
    assert_eq!(
        h(&two),
        (
            String::new(),
            vec![call("get_weather", r#"{"city":"Paris"}"#), call("f", "{}")]
        )
    );
    // Text before a call is content; the whitespace next to the call is not.
    assert_eq!(
        h(&format!("Let me look.\n\n{one}")),
        (
            "Let me look.".into(),
            vec![call("get_weather", r#"{"city":"Paris"}"#)]
        )
    );
    // Key order of the arguments is kept.
    assert_eq!(
        h(r#"<tool_call>{"name": "g", "arguments": {"z": 1, "a": [true, null]}}</tool_call>"#).1,
        vec![call("g", r#"{"z":1,"a":[true,null]}"#)]
    );
    // Malformed: bad JSON, no name, arguments not an object, extra keys, unterminated.
    for bad in [
        "<tool_call>\n{\"name\": \"f\", \"arguments\": {\n</tool_call>",
        "<tool_call>{\"arguments\": {}}</tool_call>",
        "<tool_call>{\"name\": \"f\", \"arguments\": \"x\"}</tool_call>",
        "<tool_call>{\"name\": \"f\", \"arguments\": {}, \"x\": 1}</tool_call>",
        "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}",
        "a <tool_call",
        "plain text\n",
        "",
    ] {
        assert_eq!(h(bad), (bad.to_string(), vec![]), "{bad:?}");
    }
    for s in [one, &two, "Let me look.\n\n<tool_call>{\"name\": \"f\", \"arguments\": {\"é\": \"ü\"}}</tool_call> after", "<tool_call>{\"name\": 1}</tool_call> <tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>", "a <tool_c", "x\n\n"] {
        streams_agree(Syntax::Hermes, s);
    }
}

#[test]
fn llama_calls_are_the_whole_reply() {
    let l = |s: &str| read_calls(Syntax::LlamaJson, s);
    assert_eq!(
        l(r#"{"name": "get_weather", "parameters": {"city": "Paris"}}"#),
        (
            String::new(),
            vec![call("get_weather", r#"{"city":"Paris"}"#)]
        )
    );
    assert_eq!(
        l("<|python_tag|>{\"name\": \"f\", \"arguments\": {}}; {\"name\": \"g\", \"parameters\": {\"n\": 2}}\n"),
        (String::new(), vec![call("f", "{}"), call("g", r#"{"n":2}"#)])
    );
    for text in [
        "The weather is fine.",
        r#"{"answer": 42}"#,
        r#"{"name": "f", "parameters": {}} and more"#,
        r#"{"name": "f", "parameters": "#,
        "Call {\"name\": \"f\", \"parameters\": {}}",
        "  ",
        "",
    ] {
        assert_eq!(l(text), (text.to_string(), vec![]), "{text:?}");
    }
    for s in [
        "  {\"name\": \"f\", \"parameters\": {\"a\": \"b\"}}",
        "<|python_tag|>{\"name\": \"f\", \"parameters\": {}}",
        "Plain words, then {\"name\": \"f\", \"parameters\": {}}",
        "<|pyth",
        "<|no",
    ] {
        streams_agree(Syntax::LlamaJson, s);
    }
}

#[test]
fn the_syntax_comes_from_the_template() {
    let hermes = "{% if tools %}{{ tools | tojson }}<tool_call>{% endif %}";
    let llama = "{% if tools %}{{ '{\"name\": x, \"parameters\": y}' }}{% endif %}";
    assert_eq!(Syntax::of(Some(hermes)), Ok(Syntax::Hermes));
    assert_eq!(Syntax::of(Some(llama)), Ok(Syntax::LlamaJson));
    assert!(Syntax::of(None).unwrap_err().contains("no tool support"));
    assert!(Syntax::of(Some("{{ messages }}"))
        .unwrap_err()
        .contains("no tool support"));
    assert!(Syntax::of(Some("{{ tools }}[TOOL_CALLS]"))
        .unwrap_err()
        .contains("syntax"));
}

fn tool(name: &str, parameters: Value) -> Tool {
    Tool {
        name: name.into(),
        parameters,
        spec: Value::Null,
    }
}

/// How many bytes of `text` the grammar takes (a vocabulary of single bytes), and whether
/// it is then complete.
fn takes(grammar: &str, text: &str) -> (usize, bool) {
    let env = ApproximateTokEnv::single_byte_env();
    let factory = ParserFactory::new_simple(&env).unwrap();
    let parser = factory
        .create_parser(TopLevelGrammar::from_lark(grammar.to_string()))
        .unwrap();
    let mut m = Matcher::new(Ok(parser));
    assert_eq!(m.get_error(), None);
    let ids: Vec<u32> = text.bytes().map(u32::from).collect();
    let n = m.try_consume_tokens(&ids).unwrap();
    (n, m.is_accepting().unwrap())
}

#[test]
fn forcing_grammars_take_exactly_a_call_of_an_allowed_tool() {
    let tools = [
        tool(
            "get_weather",
            json!({"type": "object", "properties": {"city": {"type": "string"}},
            "required": ["city"], "additionalProperties": false}),
        ),
        tool(
            "now",
            json!({"type": "object", "properties": {}, "additionalProperties": false}),
        ),
    ];
    let named = ToolChoice::Named("get_weather".into());
    assert_eq!(
        forcing_grammar(Syntax::Hermes, &tools, &ToolChoice::Auto),
        None
    );
    assert_eq!(
        forcing_grammar(Syntax::Hermes, &tools, &ToolChoice::None),
        None
    );
    let g = forcing_grammar(Syntax::Hermes, &tools, &named).unwrap();
    let ok = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>";
    assert_eq!(takes(&g, ok), (ok.len(), true));
    let other = "<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>";
    assert!(takes(&g, other).0 < other.len(), "only the named tool");
    let missing = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}";
    assert!(takes(&g, missing).0 < missing.len(), "its schema holds");
    let g = forcing_grammar(Syntax::Hermes, &tools, &ToolChoice::Required).unwrap();
    assert_eq!(takes(&g, ok), (ok.len(), true));
    assert_eq!(takes(&g, other), (other.len(), true));
    let g = forcing_grammar(Syntax::LlamaJson, &tools, &ToolChoice::Required).unwrap();
    let ok = "{\"name\": \"now\", \"parameters\": {}}";
    assert_eq!(takes(&g, ok), (ok.len(), true));
    let extra = format!("{ok}{ok}");
    assert_eq!(takes(&g, &extra).0, ok.len(), "one call");
    // What a forced call says reads back as that call.
    assert_eq!(read_calls(Syntax::LlamaJson, ok).1, vec![call("now", "{}")]);
}
