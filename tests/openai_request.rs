//! `tide_gpu::openai::parse`, the API's request checks, without a server: what a full request
//! becomes, the defaults, and each refusal's status and the field it names (the HTTP-level
//! behaviour is tests/api/test_openai.py's, with the official client).
use serde_json::json;
use tide_gpu::openai::{parse, Kind, Message, Prompt};

fn body(v: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn a_full_chat_request_and_the_defaults() {
    let r = parse(
        Kind::Chat,
        &body(json!({
            "model": "m",
            "messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": [{"type": "text", "text": "Hi"},
                                                      {"type": "text", "text": " there"}]}],
            "max_completion_tokens": 500, "temperature": 0.5, "top_p": 0.9, "seed": 7,
            "stop": ["a", "b"], "logprobs": true, "top_logprobs": 3, "stream": true,
            "stream_options": {"include_usage": true}
        })),
        "m",
        2048,
    )
    .unwrap();
    assert_eq!(
        r.prompt,
        Prompt::Chat(vec![
            Message::text("system", "Be brief."),
            Message::text("user", "Hi there")
        ])
    );
    assert_eq!(r.max_tokens, Some(500));
    assert_eq!((r.sampler.temperature, r.sampler.top_p), (0.5, 0.9));
    assert_eq!(r.seed, Some(7));
    assert_eq!(r.stop, ["a", "b"]);
    assert_eq!(r.logprobs, Some(3));
    assert!(r.stream && r.include_usage);

    let r = parse(
        Kind::Text,
        &body(json!({"model": "m", "prompt": ["Once"], "stream_options": {"include_usage": true}})),
        "m",
        2048,
    )
    .unwrap();
    assert_eq!(r.prompt, Prompt::Text("Once".into()));
    assert_eq!(
        r.max_tokens, None,
        "not asked (serve::job_for gives completions 16)"
    );
    assert_eq!((r.sampler.temperature, r.sampler.top_p), (1.0, 1.0));
    assert_eq!((r.seed, r.logprobs), (None, None));
    assert!(
        !r.stream && !r.include_usage,
        "usage chunks only when streaming"
    );
}

#[test]
fn refusals_name_what_is_wrong() {
    let cases: [(Kind, &[u8], u16, &str); 18] = [
        (Kind::Chat, b"{", 400, "not valid JSON"),
        (Kind::Chat, b"[1]", 400, "JSON object"),
        (Kind::Chat, br#"{"messages": []}"#, 400, "'model' is required"),
        (Kind::Chat, br#"{"model": "x", "messages": []}"#, 404, "'x' does not exist"),
        (Kind::Chat, br#"{"model": "m", "messages": []}"#, 400, "'messages'"),
        (Kind::Chat, br#"{"model": "m", "messages": [{"content": "a"}]}"#, 400, "messages[0].role"),
        (Kind::Chat, br#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#, 400, "only text parts"),
        (Kind::Chat, br#"{"model": "m", "messages": [{"role": "user", "content": "a"}], "top_logprobs": 2}"#, 400, "needs 'logprobs'"),
        (Kind::Text, br#"{"model": "m", "prompt": ["a", "b"]}"#, 400, "one prompt per request"),
        (Kind::Text, br#"{"model": "m", "prompt": "a", "n": 2}"#, 400, "'n'"),
        (Kind::Text, br#"{"model": "m", "prompt": "a", "stop": ["1", "2", "3", "4", "5"]}"#, 400, "'stop'"),
        (Kind::Text, br#"{"model": "m", "prompt": "a", "top_p": 0}"#, 400, "'top_p'"),
        // Found by hand before they were checked: an unknown role, a user's null content.
        (Kind::Chat, br#"{"model": "m", "messages": [{"role": "wizard", "content": "a"}]}"#, 400, "messages[0].role 'wizard'"),
        (Kind::Chat, br#"{"model": "m", "messages": [{"role": "user", "content": null}]}"#, 400, "messages[0].content is required"),
        (Kind::Chat, br#"{"model": "m", "messages": [{"role": "system"}]}"#, 400, "messages[0].content is required"),
        (Kind::Chat, br#"{"model": "m", "messages": ["hi"]}"#, 400, "messages[0] must be an object"),
        (Kind::Chat, br#"{"model": "m", "messages": [{"role": "user", "content": "a"}], "max_tokens": 65}"#, 400, "limit of 64"),
        (Kind::Text, br#"{"model": "m", "prompt": "a", "max_tokens": 0}"#, 400, "'max_tokens'"),
    ];
    for (kind, b, status, want) in cases {
        let e = parse(kind, b, "m", 64).expect_err(&String::from_utf8_lossy(b));
        assert_eq!(e.status, status, "{e:?}");
        assert!(
            e.message.contains(want),
            "{:?}: {e:?}",
            String::from_utf8_lossy(b)
        );
    }
    let e = parse(Kind::Text, br#"{"model": "x", "prompt": "a"}"#, "m", 64).unwrap_err();
    assert_eq!(e.code, Some("model_not_found"));
    // An assistant's turn may come without content (beside tool calls); the cap is inclusive.
    let ok = br#"{"model": "m", "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": null}], "max_tokens": 64}"#;
    assert_eq!(parse(Kind::Chat, ok, "m", 64).unwrap().max_tokens, Some(64));
}

fn chat(extra: serde_json::Value) -> Result<tide_gpu::openai::Request, tide_gpu::openai::Refusal> {
    let mut v = json!({"model": "m", "messages": [{"role": "user", "content": "a"}]});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    parse(Kind::Chat, &body(v), "m", 64)
}

fn weather() -> serde_json::Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "d",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}})
}

#[test]
fn tools_and_tool_choice() {
    use tide_gpu::openai::ToolChoice;
    let r = chat(
        json!({"tools": [weather(), {"type": "function", "function": {"name": "now"}}],
        "parallel_tool_calls": false}),
    )
    .unwrap();
    let t = r.tools.unwrap();
    assert_eq!(t.choice, ToolChoice::Auto, "auto when tools are given");
    assert!(!t.parallel);
    assert_eq!(t.list[0].name, "get_weather");
    assert_eq!(t.list[0].spec, weather(), "given to the template as sent");
    assert_eq!(
        t.list[1].parameters,
        json!({"type": "object", "properties": {}}),
        "no parameters: none"
    );
    assert!(chat(json!({})).unwrap().tools.is_none());
    for (choice, want) in [
        (json!("none"), ToolChoice::None),
        (json!("auto"), ToolChoice::Auto),
        (json!("required"), ToolChoice::Required),
        (
            json!({"type": "function", "function": {"name": "get_weather"}}),
            ToolChoice::Named("get_weather".into()),
        ),
    ] {
        let r = chat(json!({"tools": [weather()], "tool_choice": choice})).unwrap();
        assert_eq!(r.tools.unwrap().choice, want);
    }
    let fmt = json!({"type": "json_object"});
    let r = chat(json!({"tools": [weather()], "tool_choice": "none", "response_format": fmt}));
    assert!(
        r.unwrap().format.is_some(),
        "text answers may have a format"
    );

    let w = weather();
    let cases = [
        (json!({"tools": []}), "'tools' must be an array"),
        (json!({"tools": {"a": 1}}), "'tools' must be an array"),
        (json!({"tools": [w, {"type": "code"}]}), "tools[1].type"),
        (
            json!({"tools": [{"type": "function"}]}),
            "tools[0].function must be an object",
        ),
        (
            json!({"tools": [w, {"type": "function", "function": {"name": "a b"}}]}),
            "tools[1].function.name",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "x".repeat(65)}}]}),
            "tools[0].function.name",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": ""}}]}),
            "tools[0].function.name",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]}),
            "tools[0].function.parameters",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f", "description": 3}}]}),
            "tools[0].function.description",
        ),
        (
            json!({"tools": [w, w]}),
            "tools[1].function.name 'get_weather' is declared twice",
        ),
        (json!({"tool_choice": "auto"}), "only allowed when 'tools'"),
        (
            json!({"tools": [w], "tool_choice": "always"}),
            "'tool_choice' must be",
        ),
        (
            json!({"tools": [w], "tool_choice": {"type": "function"}}),
            "'tool_choice' must be",
        ),
        (
            json!({"tools": [w], "tool_choice": {"type": "function", "function": {"name": "nope"}}}),
            "'nope', which is not among 'tools'",
        ),
        (
            json!({"tools": [w], "parallel_tool_calls": "yes"}),
            "'parallel_tool_calls'",
        ),
        (
            json!({"tools": [w], "response_format": {"type": "json_object"}}),
            "'response_format' cannot be combined with 'tools'",
        ),
    ];
    for (extra, want) in cases {
        let e = chat(extra.clone()).expect_err(&extra.to_string());
        assert_eq!(e.status, 400);
        assert!(e.message.contains(want), "{extra}: {e:?}");
    }
    let e = parse(
        Kind::Text,
        br#"{"model": "m", "prompt": "a", "tools": []}"#,
        "m",
        64,
    )
    .unwrap_err();
    assert!(
        e.message.contains("'tools' is for /v1/chat/completions"),
        "{e:?}"
    );
}

#[test]
fn tool_calls_and_tool_replies_in_messages() {
    let call = json!({"id": "c1", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}});
    let msgs = |extra: serde_json::Value| {
        json!({"messages": [{"role": "user", "content": "a"},
            {"role": "assistant", "content": null, "tool_calls": [call]}, extra]})
    };
    let r = chat(msgs(
        json!({"role": "tool", "tool_call_id": "c1", "content": "sunny"}),
    ))
    .unwrap();
    let Prompt::Chat(m) = r.prompt else { panic!() };
    assert_eq!(m[1].content, "");
    assert_eq!(
        m[1].tool_calls,
        vec![json!({"id": "c1", "type": "function",
            "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}})],
        "arguments parsed for the template"
    );
    assert_eq!(m[2].tool_call_id.as_deref(), Some("c1"));
    assert_eq!(m[2].content, "sunny");

    let bad_call = |c: serde_json::Value| {
        json!({"messages": [{"role": "user", "content": "a"},
        {"role": "assistant", "tool_calls": [c]}]})
    };
    let cases = [
        (
            msgs(json!({"role": "tool", "content": "x"})),
            "messages[2].tool_call_id is required",
        ),
        (
            msgs(json!({"role": "tool", "tool_call_id": "c9", "content": "x"})),
            "no call there has the id 'c9'",
        ),
        (
            msgs(json!({"role": "tool", "tool_call_id": "c1"})),
            "messages[2].content is required",
        ),
        (
            msgs(json!({"role": "tool", "tool_call_id": "c1", "content": "x", "name": 1})),
            "messages[2].name",
        ),
        (
            json!({"messages": [{"role": "tool", "tool_call_id": "c1", "content": "x"}]}),
            "messages[0]: a 'tool' message must answer",
        ),
        (
            bad_call(
                json!({"id": "c", "type": "function", "function": {"name": "f", "arguments": "{"}}),
            ),
            "messages[1].tool_calls[0].function.arguments is not valid JSON",
        ),
        (
            bad_call(json!({"id": "c", "function": {"name": "f", "arguments": {}}})),
            "messages[1].tool_calls[0].function.arguments must be a string",
        ),
        (
            bad_call(json!({"type": "function", "function": {"name": "f", "arguments": "{}"}})),
            "messages[1].tool_calls[0].id",
        ),
        (
            bad_call(json!({"id": "c", "function": {"arguments": "{}"}})),
            "messages[1].tool_calls[0].function.name",
        ),
        (
            bad_call(json!({"id": "c", "type": "x", "function": {"name": "f", "arguments": "{}"}})),
            "messages[1].tool_calls[0].type",
        ),
        (
            json!({"messages": [{"role": "assistant", "tool_calls": {}}]}),
            "messages[0].tool_calls must be an array",
        ),
    ];
    for (extra, want) in cases {
        let e = chat(extra.clone()).expect_err(&extra.to_string());
        assert_eq!(e.status, 400);
        assert!(e.message.contains(want), "{extra}: {e:?}");
    }
}
