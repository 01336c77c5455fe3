//! The TIDE memory reader: the tiny test model's backbone with any bytes as its
//! memory.safetensors (checked against the backbone: shapes, K, NaN, truncation).
#![no_main]
use libfuzzer_sys::fuzz_target;
use tide_gpu::model::{Blob, ModelFiles};

const CONFIG: &[u8] = include_bytes!("../../tests/fixtures/tiny_tide/config.json");
const MODEL: &[u8] = include_bytes!("../../tests/fixtures/tiny_tide/model.safetensors");

fuzz_target!(|data: &[u8]| {
    let files = ModelFiles {
        source: "fuzz".into(),
        files: vec![
            ("config.json".into(), Blob::from_static(CONFIG)),
            ("model.safetensors".into(), Blob::from_static(MODEL)),
            ("memory.safetensors".into(), Blob::from_vec(data.to_vec())),
        ],
    };
    if let Ok(m) = files.load() {
        // Rows the loader accepted must be readable for every token.
        if let Some(mem) = &m.memory {
            let mut out = Vec::new();
            let _ = mem.rows.gather(&[0, (m.config.vocab - 1) as u32], &mut out);
        }
    }
});
