//! A memory model on a fetched backbone (models/smollm2-tide's layout, docs/format.md): a folder
//! whose config.json names the GGUF backbone, with the memory beside it. Here with SmolLM2's
//! real GGUF and a memory file made in the test: it loads through the library and the CLI (which
//! fetches the backbone with the project's script), and every wrong folder is refused by name,
//! nothing half-loaded.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::st_file::{write_st, StFile};
use common::{repo, smollm2};

const GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// A valid 4-bit memory for a model of `vocab` x `dim` with `layers` routers (K = 1): scales
/// 0.01, minimum -0.05, nibbles from a counter.
fn memory_file(name: &str, vocab: usize, dim: usize, layers: usize) -> PathBuf {
    let block = |i: usize| {
        let mut b = Vec::with_capacity(20);
        b.extend_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
        b.extend_from_slice(&half::f16::from_f32(-0.05).to_le_bytes());
        b.extend((0..16).map(|j| ((i * 7 + j * 13) % 256) as u8));
        b
    };
    let rows: Vec<u8> = (0..vocab * dim / 32).flat_map(block).collect();
    let f32s = |v: Vec<f32>| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let mut tensors = vec![
        (
            "tide.memory.0.rows".to_string(),
            safetensors::Dtype::U8,
            vec![vocab, dim / 32 * 20],
            rows,
        ),
        (
            "tide.memory.0.gamma".to_string(),
            safetensors::Dtype::F32,
            vec![dim],
            f32s(vec![1.0; dim]),
        ),
    ];
    for l in 0..layers {
        let w = (0..2 * dim)
            .map(|i| ((i % 7) as f32 - 3.0) * 0.01)
            .collect();
        tensors.push((
            format!("tide.router.{l}.weight"),
            safetensors::Dtype::F32,
            vec![2, dim],
            f32s(w),
        ));
    }
    let meta = [
        ("tide.k", "1".to_string()),
        ("tide.rows", "q4_1".into()),
        ("tide.vocab", vocab.to_string()),
        ("tide.dim", dim.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    write_st(&StFile { tensors, meta }, name)
}

fn card(fetch: &str, bytes: u64) -> String {
    format!(
        r#"{{"tide_backbone": {{"file": "{GGUF}", "bytes": {bytes}, "fetch": "{fetch}"}},
            "memory": "memory.safetensors"}}"#
    )
}

/// A memory model folder: the card, and (when given) the memory and the backbone as links.
fn folder(tag: &str, card_json: &str, memory: Option<&Path>, backbone: bool) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tide-card-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("config.json"), card_json).unwrap();
    if let Some(m) = memory {
        std::os::unix::fs::symlink(m, d.join("memory.safetensors")).unwrap();
    }
    if backbone {
        std::os::unix::fs::symlink(smollm2(), d.join(GGUF)).unwrap();
    }
    d
}

fn gguf_bytes() -> u64 {
    std::fs::metadata(smollm2()).unwrap().len()
}

fn load_err(dir: &Path) -> String {
    match tide_gpu::model::load(dir) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "{p:?} not in the message: {msg}");
    }
}

#[test]
fn a_card_folder_loads_the_backbone_with_its_memory() {
    let mem = memory_file("smollm2-k1.safetensors", 49152, 576, 30);
    let d = folder(
        "ok",
        &card("scripts/fetch-smollm2.sh", gguf_bytes()),
        Some(&mem),
        true,
    );
    let m = tide_gpu::model::load(&d).unwrap();
    assert_eq!(m.memory.as_ref().map(|m| m.k), Some(1));
    assert_eq!((m.config.n_layers, m.config.dim), (30, 576));
    // The backbone's own tokenizer and chat template come with it (SmolLM2's ChatML).
    let tmpl = m.tokenizer.chat_template.as_deref().unwrap_or("");
    assert!(tmpl.contains("<|im_start|>"), "{tmpl}");
    // The memory is used: logits differ from the backbone's alone.
    let with = common::cpu_logits(&m, &[504, 3458, 282]);
    let alone = common::cpu_logits(
        &tide_gpu::model::load(&smollm2()).unwrap(),
        &[504, 3458, 282],
    );
    let d = with
        .iter()
        .zip(&alone)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(d > 1e-2, "memory changed no logit ({d})");
}

#[test]
fn wrong_folders_are_refused_by_name() {
    let good = memory_file("smollm2-k1b.safetensors", 49152, 576, 30);
    let fetch = "scripts/fetch-smollm2.sh";
    // No backbone in the folder: the library says which file and how to fetch it.
    let d = folder("nobackbone", &card(fetch, gguf_bytes()), Some(&good), false);
    has(&load_err(&d), &[GGUF, "is not in the folder", fetch]);
    // A backbone of another size.
    let d = folder("size", &card(fetch, gguf_bytes() + 1), Some(&good), true);
    has(
        &load_err(&d),
        &[GGUF, "another file", &(gguf_bytes() + 1).to_string()],
    );
    // No memory file.
    let d = folder("nomemory", &card(fetch, gguf_bytes()), None, true);
    has(
        &load_err(&d),
        &["its memory file memory.safetensors is missing"],
    );
    // A memory of another vocabulary, width or depth.
    for (tag, vocab, dim, layers, what) in [
        ("vocab", 4096, 576, 30, "tide.vocab"),
        ("dim", 49152, 192, 30, "tide.dim"),
        ("layers", 49152, 576, 6, "tide.router.6.weight"),
    ] {
        let mem = memory_file(&format!("smollm2-{tag}.safetensors"), vocab, dim, layers);
        let d = folder(tag, &card(fetch, gguf_bytes()), Some(&mem), true);
        has(&load_err(&d), &["memory.safetensors", what]);
    }
    // A card that is not one: a backbone outside the folder, or not a GGUF.
    let bad = r#"{"tide_backbone": {"file": "../x.gguf", "bytes": 1}}"#;
    has(
        &load_err(&folder("path", bad, None, false)),
        &["not a file name within the folder"],
    );
    let bad = r#"{"tide_backbone": {"file": "x.bin", "bytes": 1}}"#;
    has(
        &load_err(&folder("gguf", bad, None, false)),
        &["must be a .gguf file"],
    );
    let bad = r#"{"tide_backbone": {"file": "x.gguf"}}"#;
    has(
        &load_err(&folder("field", bad, None, false)),
        &["missing field `bytes`"],
    );
}

fn tide(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_tide"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!err.contains("panicked"), "tide {args:?} panicked: {err}");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into(),
        err,
    )
}

#[test]
fn the_cli_fetches_the_backbone_with_the_projects_script() {
    let mem = memory_file("smollm2-k1c.safetensors", 49152, 576, 30);
    let fetch = "scripts/fetch-smollm2.sh";
    let d = folder("cli", &card(fetch, gguf_bytes()), Some(&mem), false);
    let ds = d.display().to_string();
    // From the repository root the card's script runs (it finds the file already fetched).
    let (ok, out, err) = tide(&repo(), &["tokenize", "--model", &ds, "Hello"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "[19556]", "{err}");
    assert!(
        err.contains(&format!("backbone: {GGUF} via {fetch}")),
        "{err}"
    );
    // Elsewhere (no scripts/ there, and the folder is not in a repository) it says what to do.
    let (ok, _, err) = tide(
        &std::env::temp_dir(),
        &["tokenize", "--model", &ds, "Hello"],
    );
    assert!(!ok);
    has(&err, &[GGUF, "run from the repository root"]);
    // A card cannot make tide run a script of its choosing.
    let d = folder(
        "evil",
        &card("scripts/evil.sh", gguf_bytes()),
        Some(&mem),
        false,
    );
    let (ok, _, err) = tide(
        &repo(),
        &["tokenize", "--model", &d.display().to_string(), "x"],
    );
    assert!(!ok);
    has(&err, &["scripts/evil.sh", "not one tide runs"]);
}

#[test]
fn compressing_a_card_folder_gives_a_card_folder() {
    let mem = memory_file("smollm2-k1d.safetensors", 49152, 576, 30);
    let d = folder(
        "compress",
        &card("scripts/fetch-smollm2.sh", gguf_bytes()),
        Some(&mem),
        true,
    );
    let out = std::env::temp_dir().join(format!("tide-card-{}-compressed", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let (ok, _, err) = tide(
        &repo(),
        &[
            "compress",
            "--model",
            &d.display().to_string(),
            "--bits",
            "8",
        ]
        .into_iter()
        .chain(["--out", &out.display().to_string()])
        .collect::<Vec<_>>(),
    );
    assert!(ok, "{err}");
    // The card as it was, the 8-bit memory beside it, and no backbone copied.
    let read = |p: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    assert_eq!(read(out.join("config.json")), read(d.join("config.json")));
    assert!(!out.join(GGUF).exists() && !out.join("model.safetensors").exists());
    std::os::unix::fs::symlink(smollm2(), out.join(GGUF)).unwrap();
    let m = tide_gpu::model::load(&out).unwrap();
    let mem = m.memory.unwrap();
    assert_eq!(mem.k, 1);
    assert_eq!(mem.tables[0].dtype(), tide_gpu::model::DType::Q8_0);
}

/// `tide serve --model <card folder>`: /models.json lists the memory and the backbone under its
/// card name, marked for streaming, and both files are served (the memory by Range).
#[test]
fn serve_offers_the_backbone_beside_the_memory_for_streaming() {
    use std::io::{BufRead, BufReader};
    let mem = memory_file("smollm2-k1e.safetensors", 49152, 576, 30);
    let d = folder(
        "serve",
        &card("scripts/fetch-smollm2.sh", gguf_bytes()),
        Some(&mem),
        false,
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_tide"))
        .args([
            "serve",
            "--no-api",
            "--port",
            "0",
            "--model",
            &d.display().to_string(),
        ])
        .current_dir(repo())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let url = url.trim().to_string();
    let get = |path: &str, range: Option<&str>| {
        let mut r = ureq::get(format!("{url}{}", path.trim_start_matches('/')));
        if let Some(range) = range {
            r = r.header("Range", range);
        }
        let mut resp = r.call().unwrap();
        (
            resp.status().as_u16(),
            resp.body_mut().read_to_vec().unwrap(),
        )
    };
    let (st, body) = get("/models.json", None);
    let _ = st;
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let name = d.file_name().unwrap().to_str().unwrap();
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {list}"));
    assert_eq!(entry["memory"], "stream", "{entry}");
    let files: Vec<(String, u64)> = entry["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["url"].as_str().unwrap().to_string(),
                f["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    let gguf_url = format!("/models/{name}/{GGUF}");
    assert!(
        files.contains(&(gguf_url.clone(), gguf_bytes())),
        "{files:?}"
    );
    let mem_len = std::fs::metadata(&mem).unwrap().len();
    assert!(files.contains(&(format!("/models/{name}/memory.safetensors"), mem_len)));
    let (st, part) = get(
        &format!("/models/{name}/memory.safetensors"),
        Some("bytes=100-199"),
    );
    assert_eq!(
        (st, part.as_slice()),
        (206, &std::fs::read(&mem).unwrap()[100..200])
    );
    let (st, head) = get(&gguf_url, Some("bytes=0-3"));
    assert_eq!((st, head.as_slice()), (206, b"GGUF".as_slice()));
    let _ = child.kill();
    let _ = child.wait();
}
