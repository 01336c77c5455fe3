//! HTTP request handling: the body of a POST to /v1/chat/completions, /v1/completions or
//! /v1/embeddings (the first byte picks which) checked by `tide_gpu::openai::parse` (or
//! `parse_embeddings`), as `tide serve` checks it before anything runs. A refusal is a 400, or a 404 naming the model; an accepted request
//! stays within what the engine is promised (the max_tokens cap, 4 stop strings, 20 top
//! log-probabilities, sampling ranges). (The HTTP framing itself is hyper's.)
#![no_main]
use libfuzzer_sys::fuzz_target;
use tide_gpu::openai::{parse, parse_embeddings, EmbedInput, Kind, MAX_EMBED_INPUTS, ROLES};

fuzz_target!(|data: &[u8]| {
    let Some((&k, body)) = data.split_first() else {
        return;
    };
    if k % 3 == 2 {
        // /v1/embeddings
        match parse_embeddings(body, "tide-k4") {
            Ok(r) => {
                assert_eq!(r.model, "tide-k4");
                assert!((1..=MAX_EMBED_INPUTS).contains(&r.inputs.len()));
                assert!(r
                    .inputs
                    .iter()
                    .all(|i| matches!(i, EmbedInput::Text(_) | EmbedInput::Ids(_))));
            }
            Err(e) => assert!(e.status == 400 || e.status == 404, "{e:?}"),
        }
        return;
    }
    let kind = if k % 3 == 0 { Kind::Chat } else { Kind::Text };
    match parse(kind, body, "tide-k4", 2048) {
        Ok(r) => {
            assert_eq!(r.model, "tide-k4");
            assert!(r.max_tokens.is_none_or(|n| (1..=2048).contains(&n)), "{r:?}");
            assert!(r.stop.len() <= 4);
            assert!(r.sampler.top_p > 0.0 && r.sampler.top_p <= 1.0);
            assert!((0.0..=2.0).contains(&r.sampler.temperature));
            assert!(r.logprobs.is_none_or(|n| n <= 20));
            assert!(!r.include_usage || r.stream);
            if let tide_gpu::openai::Prompt::Chat(m) = &r.prompt {
                assert!(m.iter().all(|m| ROLES.contains(&m.role.as_str())));
                // Tool replies answer a call; only an assistant's turn carries calls.
                assert!(m.iter().all(|m| (m.role == "tool") == m.tool_call_id.is_some()));
                assert!(m.iter().all(|m| m.role == "assistant" || m.tool_calls.is_empty()));
            }
            if let Some(t) = &r.tools {
                assert_eq!(kind, Kind::Chat);
                assert!(!t.list.is_empty() && t.list.len() <= 128);
                assert!(t.list.iter().all(|t| t.parameters.is_object()));
                if let tide_gpu::openai::ToolChoice::Named(n) = &t.choice {
                    assert!(t.list.iter().any(|t| &t.name == n));
                }
                if t.choice != tide_gpu::openai::ToolChoice::None {
                    assert!(r.format.is_none());
                }
            }
        }
        Err(e) => assert!(
            e.status == 400 || (e.status == 404 && e.code == Some("model_not_found")),
            "{e:?}"
        ),
    }
});
