//! The TIDE memory reader: any bytes as a memory.safetensors for the tiny test model's
//! backbone (loaded once), read as `attach_memory` reads a file: the safetensors header, the
//! tide.* tensors and metadata checked against the backbone (shapes, K, NaN, truncation) and
//! the token counts. Memory the reader accepts must give rows for every token.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tide_gpu::model::safetensors::{index_file, token_counts};
use tide_gpu::model::{Blob, Config, ModelFiles, TensorSet, TideMemory};

const CONFIG: &[u8] = include_bytes!("../../tests/fixtures/tiny_tide/config.json");
const MODEL: &[u8] = include_bytes!("../../tests/fixtures/tiny_tide/model.safetensors");

fn config() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(|| {
        let files = ModelFiles {
            source: "tiny_tide".into(),
            files: vec![
                ("config.json".into(), Blob::from_static(CONFIG)),
                ("model.safetensors".into(), Blob::from_static(MODEL)),
            ],
        };
        files.load().unwrap().config
    })
}

fuzz_target!(|data: &[u8]| {
    let c = config();
    let mut set = TensorSet::default();
    if index_file("memory.safetensors", &Blob::from_vec(data.to_vec()), &mut set).is_err() {
        return;
    }
    let _ = token_counts("memory.safetensors", &set, c.vocab);
    if let Ok(Some(mem)) = TideMemory::from_set("memory.safetensors", &set, c) {
        let mut out = Vec::new();
        let ids = [0, (c.vocab - 1) as u32];
        if let Err(e) = tide_gpu::memory::tide_local(&mem).gather(&ids, &mut out) {
            panic!("accepted memory gives no rows for tokens {ids:?}: {e}");
        }
        assert!(!out.is_empty(), "accepted memory gave empty rows");
    }
});
