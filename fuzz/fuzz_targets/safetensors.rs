//! A Hugging Face model folder from bytes: the input is split into config.json and
//! model.safetensors (a 2-byte little-endian length of the config first), then loaded.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tide_gpu::model::{Blob, ModelFiles};

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let n = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
    let (config, weights) = data[2..].split_at(n);
    let files = ModelFiles {
        source: "fuzz".into(),
        files: vec![
            ("config.json".into(), Blob::from_vec(config.to_vec())),
            ("model.safetensors".into(), Blob::from_vec(weights.to_vec())),
        ],
    };
    let _ = files.load();
});
