//! `tide_gpu::openai::parse`, the API's request checks, without a server: what a full request
//! becomes, the defaults, and each refusal's status and the field it names (the HTTP-level
//! behaviour is tests/api/test_openai.py's, with the official client).
use serde_json::json;
use tide_gpu::openai::{parse, Kind, Prompt};

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
            ("system".into(), "Be brief.".into()),
            ("user".into(), "Hi there".into())
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
