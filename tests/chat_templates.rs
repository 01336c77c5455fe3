//! Chat templates rendered by minijinja (src/chat.rs) against Python's Jinja2 set up as Hugging
//! Face's apply_chat_template sets it up (tests/fixtures/chat_templates.json, made by
//! scripts/chat_template_reference.py): the templates of Llama 3.1/3.2, DeepSeek-R1-Distill,
//! Qwen2.5, Qwen3, Mistral Nemo, Gemma 2, Phi-3.5, SmolLM3 and Granite 3.3 (llama.cpp's copies,
//! scripts/fetch-vocabs.sh) and the ones inside SmolLM2's and the Qwen2 vocabulary's GGUF files,
//! over three conversations each, and the four that show tools (Llama 3.1/3.2, Qwen2.5, Qwen3)
//! over three conversations with tools, tool calls and tool replies, taken from OpenAI request
//! bodies by `openai::parse`. Exact text; a template that raises must raise here too.
mod common;

use common::{repo, smollm2, vocab};
use tide_gpu::chat::{render, strftime, TemplateVars};
use tide_gpu::model::gguf::GgufFile;
use tide_gpu::model::Blob;
use tide_gpu::openai::{parse, Kind, Message, Prompt};

fn fixture() -> serde_json::Value {
    let p = repo().join("tests/fixtures/chat_templates.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn gguf_template(path: &std::path::Path) -> String {
    let g = GgufFile::parse("t", Blob::map(path).unwrap()).unwrap();
    g.get("tokenizer.chat_template")
        .and_then(|v| v.as_str())
        .unwrap()
        .to_string()
}

fn template_text(source: &str) -> String {
    match source {
        s if s.starts_with("templates/") => {
            let dir = vocab("qwen2").parent().unwrap().to_path_buf();
            std::fs::read_to_string(dir.join(s)).unwrap()
        }
        s if s.starts_with("smollm2/") => gguf_template(&smollm2()),
        s if s.starts_with("vocabs/") => gguf_template(&vocab("qwen2")),
        s => panic!("unknown template source {s}"),
    }
}

#[test]
fn templates_render_as_jinja2_does() {
    let f = fixture();
    let now = f["now_unix"].as_u64().unwrap();
    let convs: Vec<Vec<Message>> = f["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c.as_array()
                .unwrap()
                .iter()
                .map(|m| Message::text(m[0].as_str().unwrap(), m[1].as_str().unwrap()))
                .collect()
        })
        .collect();
    // The tool conversations as a request brings them: messages and the tools' specs.
    let tool_convs: Vec<(Vec<Message>, Vec<serde_json::Value>)> = f["tool_conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let body = serde_json::json!({"model": "m", "messages": c["messages"],
                "tools": c["tools"]});
            let r = parse(Kind::Chat, &serde_json::to_vec(&body).unwrap(), "m", 64).unwrap();
            let Prompt::Chat(msgs) = r.prompt else {
                panic!("a chat")
            };
            let specs = r.tools.unwrap().list.into_iter().map(|t| t.spec).collect();
            (msgs, specs)
        })
        .collect();
    let mut with_tools = 0;
    let templates = f["templates"].as_array().unwrap();
    // scripts/chat_template_reference.py's list: 10 of llama.cpp's copies + 2 inside GGUFs.
    assert_eq!(templates.len(), 12, "the fixture's templates");
    for t in templates {
        let name = t["name"].as_str().unwrap();
        let text = template_text(t["source"].as_str().unwrap());
        let vars = TemplateVars {
            bos: t["bos"].as_str().unwrap().into(),
            eos: t["eos"].as_str().unwrap().into(),
            now_unix: Some(now),
        };
        let plain = convs.iter().map(|c| (c, None));
        let tooled = tool_convs.iter().map(|(c, t)| (c, Some(&t[..])));
        let mut wants = t["renders"].as_array().unwrap().clone();
        if let Some(w) = t.get("tool_renders") {
            wants.extend(w.as_array().unwrap().iter().cloned());
            with_tools += 1;
        }
        for (i, ((conv, tools), want)) in plain.chain(tooled).zip(&wants).enumerate() {
            let got = render(Some(&text), conv, tools, &vars);
            match (want.get("text"), want.get("error")) {
                (Some(w), _) => {
                    let got = got.unwrap_or_else(|e| panic!("{name} conversation {i}: {e}"));
                    assert_eq!(got, w.as_str().unwrap(), "{name} conversation {i}");
                }
                (_, Some(e)) => {
                    let msg = match got {
                        Err(err) => err.to_string(),
                        Ok(text) => {
                            panic!("{name} conversation {i}: rendered {text:?}, Jinja2 raised {e}")
                        }
                    };
                    assert!(
                        msg.contains(e.as_str().unwrap()),
                        "{name} conversation {i}: {msg}"
                    );
                }
                _ => panic!("bad fixture"),
            }
        }
    }
    assert_eq!(with_tools, 4, "templates rendered with tools");
}

#[test]
fn strftime_now_formats_as_python() {
    for case in fixture()["strftime"].as_array().unwrap() {
        let (t, fmt, want) = (
            case[0].as_u64().unwrap(),
            case[1].as_str().unwrap(),
            case[2].as_str().unwrap(),
        );
        assert_eq!(strftime(fmt, t), want, "time {t}");
    }
}

#[test]
fn chatml_without_a_template_and_bad_templates_named() {
    let msgs = vec![Message::text("user", "Hi")];
    let v = TemplateVars::default();
    assert_eq!(
        render(None, &msgs, None, &v).unwrap(),
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    let e = render(Some("{% for m in messages %}"), &msgs, None, &v).unwrap_err();
    assert!(e.to_string().starts_with("chat template:"), "{e}");
    let e = render(
        Some("{{ raise_exception('no tools here') }}"),
        &msgs,
        None,
        &v,
    )
    .unwrap_err();
    assert!(e.to_string().contains("no tools here"), "{e}");
}

/// A template that writes BOS itself (Llama 3's), with a tokenizer that adds BOS: the encoded
/// prompt starts with exactly one BOS, and the control tokens come out whole.
#[test]
fn chat_prompt_never_doubles_bos() {
    let path = vocab("llama-bpe");
    let g = GgufFile::parse("llama-bpe", Blob::map(&path).unwrap()).unwrap();
    let mut tok = tide_gpu::model::tokenizer::TokenizerInfo::from_gguf(&g).unwrap();
    tok.chat_template = Some(template_text(
        "templates/meta-llama-Llama-3.1-8B-Instruct.jinja",
    ));
    assert!(tok.add_bos);
    let ids = tok
        .encode(
            &tok.chat_prompt(&[("user".into(), "Hi".into())]).unwrap(),
            true,
        )
        .unwrap();
    let bos = tok.bos.unwrap();
    assert_eq!(ids[0], bos);
    assert_eq!(ids.iter().filter(|&&i| i == bos).count(), 1, "{ids:?}");
    let header = tok
        .tokenizer
        .as_ref()
        .unwrap()
        .token_to_id("<|start_header_id|>");
    assert_eq!(ids[1], header.unwrap());
}

/// The tool-call syntax each real template teaches, or why tools are refused with it.
#[test]
fn tool_syntax_of_real_templates() {
    use tide_gpu::serve::tools::Syntax;
    let of = |s: &str| Syntax::of(Some(&template_text(s)));
    for (name, want) in [
        ("meta-llama-Llama-3.1-8B-Instruct", Syntax::LlamaJson),
        ("meta-llama-Llama-3.2-3B-Instruct", Syntax::LlamaJson),
        ("Qwen-Qwen2.5-7B-Instruct", Syntax::Hermes),
        ("Qwen-Qwen3-0.6B", Syntax::Hermes),
    ] {
        assert_eq!(of(&format!("templates/{name}.jinja")), Ok(want), "{name}");
    }
    let e = of("templates/mistralai-Mistral-Nemo-Instruct-2407.jinja").unwrap_err();
    assert!(e.contains("syntax"), "{e}");
    for s in ["templates/google-gemma-2-2b-it.jinja", "smollm2/"] {
        assert!(of(s).unwrap_err().contains("no tool support"), "{s}");
    }
}
