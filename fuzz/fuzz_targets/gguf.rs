//! The GGUF reader: any bytes either parse (header, metadata, tensor table, every tensor's
//! bytes within the file) or give an error; never a panic, a hang or an allocation beyond what
//! the input can back. (Building a model from a parsed file runs the tokenizer's construction,
//! too slow for a million runs: the model-level checks have their tests in tests/bad_input.rs.)
#![no_main]
use libfuzzer_sys::fuzz_target;
use tide_gpu::model::gguf::GgufFile;
use tide_gpu::model::Blob;

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = GgufFile::parse("fuzz.gguf", Blob::from_vec(data.to_vec())) {
        // Every tensor the table lists must lie within the file.
        for t in &g.tensors {
            let i = &t.info;
            assert!(i.start <= i.end && i.end <= t.blob.len(), "{}: outside the file", i.name);
        }
    }
});
