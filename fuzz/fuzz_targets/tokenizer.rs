//! Tokenizer input: the embedded default model's BPE tokenizer encodes any text (the input as
//! UTF-8, lossily) and decodes any ids (the input as u32s, most out of range).
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tide_gpu::model::tokenizer::TokenizerInfo;

fn tokenizer() -> &'static TokenizerInfo {
    static T: OnceLock<TokenizerInfo> = OnceLock::new();
    T.get_or_init(|| tide_gpu::model::embedded::default_model().unwrap().tokenizer)
}

fuzz_target!(|data: &[u8]| {
    let t = tokenizer();
    let text = String::from_utf8_lossy(data);
    if let Ok(ids) = t.encode(&text, true) {
        let _ = t.decode(&ids);
    }
    let ids: Vec<u32> = data
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) % 10_000)
        .collect();
    let _ = t.decode(&ids);
});
