//! The GGUF reader and the model built from it: any bytes named model.gguf either load or give
//! an error; never a panic, a hang or an allocation beyond what the input can back.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tide_gpu::model::{Blob, ModelFiles};

fuzz_target!(|data: &[u8]| {
    let files = ModelFiles {
        source: "fuzz".into(),
        files: vec![("model.gguf".into(), Blob::from_vec(data.to_vec()))],
    };
    let _ = files.load();
});
