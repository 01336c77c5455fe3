//! llama.cpp's split GGUF models: the parts gguf-py's writer makes (tests/fixtures/split/, by
//! scripts/split_gguf.py from tests/fixtures/arch/qwen2.gguf and
//! tests/fixtures/kquant/tiny.q4_k_m.gguf) load from any part's path, or as the browser's files
//! in any order, into the same model as the whole file: every tensor's bytes equal, the CPU
//! reference's logits bit for bit equal at every position of the fixtures' sequences (the
//! whole files are held to llama.cpp's logits in tests/archs.rs and tests/llamacpp.rs), and
//! the same greedy tokens from the CLI. A missing, foreign or renamed part is refused by name.
mod common;

use std::path::{Path, PathBuf};

use common::{cpu_logits, json_ids, repo};
use tide_gpu::model::gguf::GgufFile;
use tide_gpu::model::{self, Blob, Model, ModelFiles};

fn split_dir() -> PathBuf {
    repo().join("tests/fixtures/split")
}

fn parts(stem: &str, n: usize) -> Vec<PathBuf> {
    (1..=n)
        .map(|i| split_dir().join(format!("{stem}-{i:05}-of-{n:05}.gguf")))
        .collect()
}

/// Every tensor of `a` is in `b` with the same name, type, shape and bytes, and the same
/// hyper-parameters and vocabulary.
fn same_model(a: &Model, b: &Model) {
    assert_eq!(format!("{:?}", a.config), format!("{:?}", b.config));
    let (ta, tb) = (&a.tokenizer, &b.tokenizer);
    assert_eq!(
        (ta.bos, &ta.eos, &ta.chat_template),
        (tb.bos, &tb.eos, &tb.chat_template)
    );
    let text = "Hello, split world";
    let enc = |t: &tide_gpu::model::tokenizer::TokenizerInfo| {
        t.tokenizer
            .as_ref()
            .map(|k| k.encode(text, false).unwrap().get_ids().to_vec())
    };
    assert_eq!(enc(ta), enc(tb));
    let wa: Vec<_> = a.matrices().collect();
    let wb: Vec<_> = b.matrices().collect();
    assert_eq!(wa.len(), wb.len());
    for (x, y) in wa.iter().zip(&wb) {
        assert_eq!(x.info.name, y.info.name);
        assert_eq!(x.info.shape, y.info.shape);
        assert_eq!(x.dtype(), y.dtype());
        assert!(x.bytes() == y.bytes(), "{}: bytes differ", x.info.name);
    }
    assert!(a.token_embd.bytes() == b.token_embd.bytes());
    assert!(a.output_norm.bytes() == b.output_norm.bytes());
}

#[test]
fn split_parts_load_as_the_whole_file() {
    for (whole, stem, n, golden) in [
        (
            "tests/fixtures/arch/qwen2.gguf",
            "qwen2",
            3,
            "tests/fixtures/arch/qwen2.json",
        ),
        (
            "tests/fixtures/kquant/tiny.q4_k_m.gguf",
            "tiny.q4_k_m",
            2,
            "tests/fixtures/kquant/tiny.q4_k_m.json",
        ),
    ] {
        let w = model::load(&repo().join(whole)).unwrap();
        let j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(repo().join(golden)).unwrap()).unwrap();
        let tokens = json_ids(&j["tokens"]);
        let want = cpu_logits(&w, &tokens);
        for p in parts(stem, n) {
            // Any part's path opens the whole model.
            let s = model::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            same_model(&w, &s);
            assert_eq!(cpu_logits(&s, &tokens), want, "{}", p.display());
        }
        // The browser hands the parts over as named files, in whatever order they came.
        let mut files: Vec<(String, Blob)> = parts(stem, n)
            .iter()
            .map(|p| {
                let name = p.file_name().unwrap().to_str().unwrap().to_string();
                (name, Blob::from_vec(std::fs::read(p).unwrap()))
            })
            .collect();
        files.reverse();
        let m = ModelFiles {
            source: format!("/models/{stem}/"),
            files,
        }
        .load()
        .unwrap();
        same_model(&w, &m);
    }
}

fn temp_copy(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tide-split-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for p in parts("qwen2", 3) {
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    dir
}

fn load_err(p: &Path) -> String {
    match model::load(p) {
        Ok(_) => panic!("{} loaded", p.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn broken_split_sets_are_refused_by_name() {
    // A part missing from the folder: named, with its place.
    let dir = temp_copy("missing");
    std::fs::remove_file(dir.join("qwen2-00003-of-00003.gguf")).unwrap();
    let e = load_err(&dir.join("qwen2-00001-of-00003.gguf"));
    assert!(
        e.contains("part 3") && e.contains("qwen2-00003-of-00003.gguf"),
        "{e}"
    );
    // Two parts swapped under each other's names: the part's own split.no says so.
    let dir = temp_copy("swapped");
    let (a, b) = (
        dir.join("qwen2-00002-of-00003.gguf"),
        dir.join("qwen2-00003-of-00003.gguf"),
    );
    std::fs::rename(&a, dir.join("x")).unwrap();
    std::fs::rename(&b, &a).unwrap();
    std::fs::rename(dir.join("x"), &b).unwrap();
    let e = load_err(&a);
    assert!(
        e.contains("qwen2-00002-of-00003.gguf") && e.contains("split.no"),
        "{e}"
    );
    // One part renamed to a plain name: it says it is a part and where to start.
    let dir = temp_copy("renamed");
    let lone = dir.join("qwen2.gguf");
    std::fs::rename(dir.join("qwen2-00001-of-00003.gguf"), &lone).unwrap();
    let e = load_err(&lone);
    assert!(e.contains("part 1 of a model split into 3 files"), "{e}");
    // A part of another split model with the same count in the set: its tensors clash or its
    // count differs; here a 2-part model's part under a 3-part name.
    let dir = temp_copy("foreign");
    std::fs::copy(
        split_dir().join("tiny.q4_k_m-00002-of-00002.gguf"),
        dir.join("qwen2-00002-of-00003.gguf"),
    )
    .unwrap();
    let e = load_err(&dir.join("qwen2-00001-of-00003.gguf"));
    assert!(e.contains("qwen2-00002-of-00003.gguf"), "{e}");
    assert!(e.contains("split.no") || e.contains("split.count"), "{e}");
    // The browser's set short of a part.
    let files = parts("qwen2", 3)[..2]
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            (name, Blob::from_vec(std::fs::read(p).unwrap()))
        })
        .collect();
    let e = match (ModelFiles {
        source: "/models/qwen2/".into(),
        files,
    })
    .load()
    {
        Ok(_) => panic!("two of three parts loaded"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("3 files") && e.contains("2 were given"), "{e}");
    // Joining checks the tensor count the first part gives.
    let ps: Vec<GgufFile> = parts("qwen2", 3)
        .iter()
        .map(|p| GgufFile::parse(&p.display().to_string(), Blob::map(p).unwrap()).unwrap())
        .collect();
    let mut short = ps;
    short[2].tensors.pop();
    let e = match GgufFile::join(short) {
        Ok(_) => panic!("a part short of a tensor joined"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("split.tensors.count"), "{e}");
    for t in ["missing", "swapped", "renamed", "foreign"] {
        let _ = std::fs::remove_dir_all(
            std::env::temp_dir().join(format!("tide-split-{t}-{}", std::process::id())),
        );
    }
}

/// The CLI runs a split model from its first part's path with the whole file's greedy tokens.
#[test]
fn the_cli_generates_from_a_split_model() {
    let run = |m: &Path| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_tide"))
            .args(["generate", "--backend", "reference", "--max-tokens", "8"])
            .args(["--temperature", "0", "--model"])
            .arg(m)
            .arg("Hello")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let whole = run(&repo().join("tests/fixtures/kquant/tiny.q4_k_m.gguf"));
    let split = run(&parts("tiny.q4_k_m", 2)[0]);
    assert_eq!(whole, split);
    assert!(!whole.trim().is_empty());
}
