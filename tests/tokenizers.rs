//! Tokenizers built from GGUF metadata against llama.cpp on real vocabularies: Llama 3 (BPE,
//! llama-bpe pre-tokenizer), Qwen2 (BPE, qwen2 pre-tokenizer) and Llama 2 (SentencePiece).
//! The vocab-only GGUF files are llama.cpp's (scripts/fetch-vocabs.sh); the expected ids are
//! llama.cpp's twice over: llama-cpp-python's on 120+ strings each
//! (tests/fixtures/tokenizers/, scripts/tokenizer_reference.py), and the .inp/.out test files
//! that ship beside the vocabularies.
mod common;

use std::path::Path;

use common::{json_ids, repo, vocab};
use tide_gpu::model::gguf::GgufFile;
use tide_gpu::model::tokenizer::TokenizerInfo;
use tide_gpu::model::Blob;

fn tokenizer(path: &Path) -> TokenizerInfo {
    let name = path.display().to_string();
    let g = GgufFile::parse(&name, Blob::map(path).unwrap()).unwrap();
    TokenizerInfo::from_gguf(&g).unwrap()
}

/// Every string of the committed fixture: ids, BOS, and the text decoded back.
fn check_fixture(name: &str, strings: usize) {
    let t = tokenizer(&vocab(name));
    let p = repo().join(format!("tests/fixtures/tokenizers/{name}.json"));
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let cases = j["cases"].as_array().unwrap();
    // Exactly what scripts/tokenizer_reference.py wrote: a lost string fails here.
    assert_eq!(cases.len(), strings, "{name}: the fixture's strings");
    let mut wrong = vec![];
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let want = json_ids(&c["ids"]);
        let got = t.encode(text, false).unwrap();
        if got != want {
            wrong.push(format!("{text:?}: got {got:?}, llama.cpp {want:?}"));
            continue;
        }
        let back = t.decode(&got).unwrap();
        let want_text = c["decoded"].as_str().unwrap();
        if back != want_text {
            wrong.push(format!(
                "{text:?}: decoded {back:?}, llama.cpp {want_text:?}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{name}: {} of {} strings differ from llama.cpp:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
    let plain = t.encode("Hi", false).unwrap();
    let with_bos = t.encode("Hi", true).unwrap();
    assert_eq!(
        with_bos[..with_bos.len() - plain.len()],
        json_ids(&j["bos_prefix"])[..],
        "{name}: BOS"
    );
}

/// llama.cpp's own test strings and ids for the vocabulary (its .inp and .out files).
fn check_llama_cpp_tests(name: &str) {
    let path = vocab(name);
    let t = tokenizer(&path);
    let inp = std::fs::read_to_string(path.with_extension("gguf.inp")).unwrap();
    let out = std::fs::read_to_string(path.with_extension("gguf.out")).unwrap();
    let texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    let texts = &texts[..texts.len() - 1];
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(texts.len(), lines.len(), "{name}: .inp and .out disagree");
    for (text, line) in texts.iter().zip(lines) {
        let want: Vec<u32> = line
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(t.encode(text, false).unwrap(), want, "{name}: {text:?}");
    }
}

#[test]
fn llama3_bpe_matches_llama_cpp() {
    check_fixture("llama-bpe", 124);
    check_llama_cpp_tests("llama-bpe");
}

#[test]
fn qwen2_bpe_matches_llama_cpp() {
    check_fixture("qwen2", 124);
    check_llama_cpp_tests("qwen2");
}

#[test]
fn sentencepiece_matches_llama_cpp() {
    check_fixture("llama-spm", 122);
    check_llama_cpp_tests("llama-spm");
}
