//! The `tide` command line as a user runs it: outputs, JSON fields, streaming text.
mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::smollm2;

fn tide(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tide"));
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    c.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = c.spawn().unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    let (out, err) = (
        String::from_utf8(o.stdout).expect("stdout is valid UTF-8"),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert!(!err.contains("panicked"), "tide {args:?} panicked: {err}");
    (o.status.success(), out, err)
}

#[test]
fn generate_json_and_streamed_text_agree() {
    let m = smollm2().display().to_string();
    let prompt = "The capital of France is";
    let (ok, out, err) = tide(
        &[
            "generate",
            "--model",
            &m,
            "--max-tokens",
            "12",
            "--temperature",
            "0",
            "--json",
            prompt,
        ],
        None,
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        v["prompt_tokens"],
        serde_json::json!([504, 3575, 282, 4649, 314])
    );
    assert_eq!(v["tokens"].as_array().unwrap().len(), 12);
    for k in [
        "text",
        "prefill_tokens_per_s",
        "decode_tokens_per_s",
        "adapter",
    ] {
        assert!(!v[k].is_null(), "--json lacks {k}");
    }
    // llama.cpp's greedy continuation starts " Paris." (tests/fixtures/llamacpp_smollm2.json).
    assert!(
        v["text"].as_str().unwrap().starts_with(" Paris."),
        "{}",
        v["text"]
    );
    // Without --json the same text streams to stdout after the prompt.
    let (ok, out, err) = tide(
        &[
            "generate",
            "--model",
            &m,
            "--max-tokens",
            "12",
            "--temperature",
            "0",
            prompt,
        ],
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(
        out.trim_end_matches('\n'),
        format!("{prompt}{}", v["text"].as_str().unwrap())
    );
    assert!(err.contains("tok/s decode"), "{err}");
}

#[test]
fn sampling_is_seeded_and_top_k_one_is_greedy() {
    let m = smollm2().display().to_string();
    let run = |extra: &[&str]| {
        let mut a = vec!["generate", "--model", &m, "--max-tokens", "10", "--json"];
        a.extend_from_slice(extra);
        a.push("Once upon a time");
        let (ok, out, err) = tide(&a, None);
        assert!(ok, "{err}");
        serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()["tokens"].clone()
    };
    let a = run(&[
        "--temperature",
        "1.0",
        "--seed",
        "7",
        "--repeat-penalty",
        "1.2",
    ]);
    let b = run(&[
        "--temperature",
        "1.0",
        "--seed",
        "7",
        "--repeat-penalty",
        "1.2",
    ]);
    assert_eq!(a, b, "same seed, same tokens");
    let greedy = run(&["--temperature", "0"]);
    let k1 = run(&["--temperature", "0.8", "--top-k", "1"]);
    assert_eq!(greedy, k1, "top-k 1 must equal greedy");
    // top-k 0 (full distribution, read back from the GPU) also runs.
    let full = run(&[
        "--temperature",
        "0.7",
        "--top-k",
        "0",
        "--top-p",
        "0.9",
        "--seed",
        "3",
    ]);
    assert_eq!(full.as_array().unwrap().len(), 10);
}

/// The README's first command (the embedded model, no sampling flags) samples with llama.cpp's
/// settings and a fixed seed: the same text twice, not greedy's, the settings in --json.
/// Greedy on this prompt repeats itself, which is why sampling is the default.
#[test]
fn generate_samples_by_default_and_repeats_itself() {
    let prompt = "In the beginning God created";
    let run = |extra: &[&str]| {
        let mut a = vec!["generate", "--max-tokens", "32", "--json"];
        a.extend_from_slice(extra);
        a.push(prompt);
        let (ok, out, err) = tide(&a, None);
        assert!(ok, "{err}");
        serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()
    };
    let a = run(&[]);
    let b = run(&[]);
    assert_eq!(a["tokens"], b["tokens"], "the default seed is fixed");
    assert_eq!(
        a["sampler"],
        serde_json::json!({
            "temperature": 0.8, "top_k": 40, "top_p": 0.95,
            "repeat_penalty": 1.0, "repeat_last_n": 64, "seed": 0
        })
    );
    let greedy = run(&["--temperature", "0"]);
    assert_eq!(greedy["sampler"]["temperature"], 0.0);
    assert_ne!(a["tokens"], greedy["tokens"], "the default is not greedy");
    // The same defaults written out give the same tokens; another seed other tokens.
    let explicit = run(&[
        "--temperature",
        "0.8",
        "--top-k",
        "40",
        "--top-p",
        "0.95",
        "--seed",
        "0",
    ]);
    assert_eq!(a["tokens"], explicit["tokens"]);
    assert_ne!(a["tokens"], run(&["--seed", "1"])["tokens"]);
}

/// Every `tide` command of README.md's quick starts, run as written (`tide` standing for the
/// binary), from a scratch folder that sees the repository's scripts/, models/ and tests/:
/// each must succeed and print something. `tide serve` is left to the page and API tests,
/// which also run README's JS and curl blocks.
#[test]
fn readme_quick_start_commands_run() {
    let repo = common::repo();
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let mut in_sh = false;
    let mut cmds = Vec::new();
    for line in readme.lines() {
        match line {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            l if in_sh && l.starts_with("tide ") && !l.starts_with("tide serve") => {
                cmds.push(l.to_string())
            }
            _ => {}
        }
    }
    assert!(cmds.len() >= 6, "README's quick starts: {cmds:?}");
    let dir = std::env::temp_dir().join(format!("tide-readme-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for d in ["scripts", "models", "tests"] {
        let link = dir.join(d);
        if !link.exists() {
            std::os::unix::fs::symlink(repo.join(d), link).unwrap();
        }
    }
    let bin = env!("CARGO_BIN_EXE_tide");
    for cmd in &cmds {
        let o = Command::new("bash")
            .arg("-c")
            .arg(format!("tide() {{ '{bin}' \"$@\"; }}\n{cmd}"))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "README: {cmd}\n{err}");
        assert!(!err.contains("panicked"), "README: {cmd}\n{err}");
        assert!(!o.stdout.is_empty(), "README: {cmd} printed nothing\n{err}");
    }
    // `tide inspect --svg` wrote its picture.
    let svg = std::fs::read_to_string(dir.join("router.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") || svg.starts_with("<?xml"),
        "{}",
        &svg[..80.min(svg.len())]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A session without XDG_RUNTIME_DIR (SSH, containers, CI): a run that works prints no
/// "error" line (the Vulkan loader's complaint), because the front end gives it a folder.
#[test]
fn a_run_without_a_runtime_dir_prints_no_error() {
    let o = Command::new(env!("CARGO_BIN_EXE_tide"))
        .args(["generate", "--max-tokens", "2", "In the beginning"])
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.to_lowercase().contains("error"), "{err}");
}

#[test]
fn tokenize_and_devices() {
    let m = smollm2().display().to_string();
    let (ok, out, _) = tide(
        &["tokenize", "--model", &m, "<|im_start|>user\nHi 123"],
        None,
    );
    assert!(ok);
    let ids: Vec<u32> = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(ids[0], 1, "<|im_start|> is one special token");
    assert_eq!(
        &ids[ids.len() - 3..],
        &[33, 34, 35],
        "digits split one by one"
    );
    let (ok, out, err) = tide(&["devices"], None);
    assert!(ok, "{err}");
    assert!(out.contains("max_storage_buffer_binding_size"), "{out}");
}

#[test]
fn bench_json_on_a_synthetic_model() {
    let (ok, out, err) = tide(
        &[
            "bench",
            "--model",
            "synthetic:smollm2-135m",
            "--prompt-len",
            "8",
            "--gen",
            "4",
            "--reps",
            "1",
            "--json",
        ],
        None,
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for k in [
        "prefill_tokens_per_s",
        "decode_tokens_per_s",
        "copy_bandwidth_gb_per_s",
        "roofline_fraction",
        "weight_bytes_per_token",
    ] {
        assert!(
            v[k].as_f64().is_some_and(|x| x > 0.0),
            "bench --json {k} = {}",
            v[k]
        );
    }
}

/// `tide bench --lime-overhead`: the backbone and the same with random LIMe mixes race, and
/// LIMe's row says how much slower it decodes.
#[test]
fn bench_lime_overhead_on_a_synthetic_model() {
    let (ok, out, err) = tide(
        &[
            "bench",
            "--model",
            "synthetic:smollm2-135m",
            "--lime-overhead",
            "--gen",
            "4",
            "--reps",
            "1",
            "--json",
        ],
        None,
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let rows = v["memory_overhead"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    assert_eq!(rows[1]["lime"].as_bool(), Some(true));
    for r in rows {
        assert!(
            r["decode_tokens_per_s"].as_f64().is_some_and(|x| x > 0.0),
            "{r}"
        );
    }
}

/// `tide bench --variants`: a row per model in the order given, the first the baseline
/// (overhead 0), with GPU buffers (the Engram model's own extra) and host tables; on the GPU
/// (a software adapter included: auto would take the CPU there).
#[test]
fn bench_variants_reports_each_model() {
    let dirs = ["tests/fixtures/tiny_lime", "tests/fixtures/tiny_engram"];
    let list = dirs.join(",");
    let args = [
        "bench",
        "--backend",
        "gpu",
        "--variants",
        &list,
        "--gen",
        "4",
        "--reps",
        "1",
        "--json",
    ];
    let (ok, out, err) = tide(&args, None);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let rows = v["variants"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    assert_eq!(rows[0]["overhead_vs_first"].as_f64(), Some(0.0));
    assert_eq!(rows[0]["extra_gpu_bytes"].as_i64(), Some(0));
    for (r, d) in rows.iter().zip(dirs) {
        assert_eq!(r["model"].as_str(), Some(d));
        assert!(
            r["decode_tokens_per_s"].as_f64().is_some_and(|x| x > 0.0),
            "{r}"
        );
        assert!(r["gpu_bytes"].as_u64().is_some_and(|x| x > 0), "{r}");
    }
    // Engram's tables live on the host; LIMe has none.
    assert_eq!(rows[0]["host_table_bytes"].as_u64(), Some(0));
    assert!(rows[1]["host_table_bytes"].as_u64().is_some_and(|x| x > 0));
    assert!(rows[1]["engram_rows"]["rows_requested"]
        .as_u64()
        .is_some_and(|x| x > 0));
}

/// `tide bench --seqs`: a row per count of sequences decoded together, one sequence the
/// ratio's unit; the CPU reference, which holds one sequence, is refused by name.
#[test]
fn bench_seqs_reports_each_count() {
    let args = |backend: &'static str| {
        vec![
            "bench",
            "--seqs",
            "1,3",
            "--prompt-len",
            "5",
            "--gen",
            "4",
            "--reps",
            "1",
            "--json",
            "--backend",
            backend,
        ]
    };
    let (ok, out, err) = tide(&args("gpu"), None);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    assert_eq!(
        (rows[0]["seqs"].as_u64(), rows[1]["seqs"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(rows[0]["over_one_seq"].as_f64(), Some(1.0));
    for r in rows {
        assert!(r["tokens_per_s"].as_f64().is_some_and(|x| x > 0.0), "{r}");
    }
    let (ok, _, err) = tide(&args("cpu"), None);
    assert!(!ok && err.contains("--seqs needs the GPU backend"), "{err}");
}

#[test]
fn chat_reads_turns_from_stdin() {
    let m = smollm2().display().to_string();
    let (ok, out, err) = tide(
        &["chat", "--model", &m, "--max-tokens", "8"],
        Some("What is 2+2?\n\n"),
    );
    assert!(ok, "{err}");
    assert!(out.starts_with("> "), "{out}");
    assert!(
        out.trim_start_matches("> ").trim().len() > 1,
        "no reply: {out:?}"
    );
    // chat samples with generate's defaults (fixed seed: the same reply again) and says so.
    assert!(
        err.contains("sampling: temperature 0.8, top-k 40, top-p 0.95, seed 0"),
        "{err}"
    );
    let (ok, again, err) = tide(
        &["chat", "--model", &m, "--max-tokens", "8"],
        Some("What is 2+2?\n\n"),
    );
    assert!(ok, "{err}");
    assert_eq!(out, again);
    let (ok, _, err) = tide(
        &[
            "chat",
            "--model",
            &m,
            "--max-tokens",
            "8",
            "--temperature",
            "0",
        ],
        Some("What is 2+2?\n\n"),
    );
    assert!(ok && err.contains("sampling: greedy"), "{err}");
}

/// Streaming decode: pieces are whole characters even when a token ends inside one, and they
/// add up to the full decode.
#[test]
fn streamed_pieces_are_whole_characters() {
    let model = tide_gpu::model::load(&smollm2()).unwrap();
    let text = "Emoji 🎉🇫🇷 and 東京は日本の首都です, ü ñ.";
    let ids = model.tokenizer.encode(text, false).unwrap();
    let tok = model.tokenizer.tokenizer.as_ref().unwrap();
    let mut s = tok.decode_stream(false);
    let mut joined = String::new();
    let mut pieces = 0;
    for &id in &ids {
        if let Some(p) = s.step(id).unwrap() {
            assert!(!p.contains('\u{FFFD}'), "piece {p:?} splits a character");
            joined.push_str(&p);
            pieces += 1;
        }
    }
    assert!(
        pieces < ids.len(),
        "some tokens end inside a character, so fewer pieces than ids"
    );
    assert_eq!(joined, text);
}

/// `tide inspect --svg`: the colour scale spans the data (legend = lowest and highest memory
/// share of the run's own JSON), the darkest cell is the highest share and the lightest the
/// lowest, the title fits the picture, and hovering a cell names every slot.
#[test]
fn inspect_svg_scale_spans_the_data() {
    let svg_path = std::env::temp_dir().join(format!("tide-inspect-{}.svg", std::process::id()));
    let text = "In the beginning was the Word, and the Word was with God";
    let (ok, out, err) = tide(
        &[
            "inspect",
            "--json",
            "--svg",
            svg_path.to_str().unwrap(),
            text,
        ],
        None,
    );
    assert!(ok, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    let k = j["k"].as_u64().unwrap() as usize;
    let shares: Vec<f64> = j["weights"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t.as_array().unwrap().iter())
        .map(|s| 1.0 - s[k].as_f64().unwrap())
        .collect();
    let lo = shares.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = shares.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    assert!(hi - lo > 0.01, "the text should give varied shares");
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let _ = std::fs::remove_file(&svg_path);
    let legend = |class: &str| -> f64 {
        let at = svg.find(&format!("class=\"{class}\"")).unwrap();
        let rest = &svg[at..];
        let a = rest.find('>').unwrap() + 1;
        let b = rest.find('<').unwrap();
        rest[a..b].parse().unwrap()
    };
    assert!(
        (legend("legend-min") - lo).abs() < 1e-3,
        "legend min vs {lo}"
    );
    assert!(
        (legend("legend-max") - hi).abs() < 1e-3,
        "legend max vs {hi}"
    );
    // Cells in token-major order, as in the JSON.
    let fills: Vec<&str> = svg
        .split("<rect x=")
        .filter(|r| r.contains("<title>token"))
        .map(|r| {
            let a = r.find("fill=\"").unwrap() + 6;
            &r[a..a + r[a..].find('"').unwrap()]
        })
        .collect();
    assert_eq!(fills.len(), shares.len());
    let at = |v: f64| shares.iter().position(|&s| s == v).unwrap();
    assert_eq!(fills[at(hi)], "rgb(0,0,255)", "highest share, darkest");
    assert_eq!(fills[at(lo)], "rgb(255,255,255)", "lowest share, lightest");
    assert!(
        svg.contains("block 0 ") && svg.contains(", NULL "),
        "tooltips name every slot"
    );
    let width: f64 = svg
        .split("width=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .parse()
        .unwrap();
    let title = svg.split("<text x=\"4\" y=\"14\">").nth(1).unwrap();
    let title_len = title[..title.find('<').unwrap()].chars().count() as f64;
    assert!(
        width >= 6.6 * title_len,
        "title of {title_len} characters cut at {width} px"
    );
}

/// Out of GPU memory is a clear error naming what did not fit and what to change, not a
/// crash: a K/V cache of ~7.8 GB (SmolLM2 at a context of 170,000) against an address space
/// capped at 6 GB by `ulimit -v`. That cap limits device memory only where it is host memory
/// (lavapipe: Linux, Vulkan, a CPU adapter), so elsewhere the test has nothing to cap. The
/// same cap with the default context runs, so the cap alone is not what fails.
#[cfg(target_os = "linux")]
#[test]
fn out_of_gpu_memory_is_a_clear_error() {
    let ctx = common::gpu();
    // Only a CPU adapter's device memory is host memory, which ulimit caps.
    if !common::lavapipe_or_skip(&ctx, "out_of_gpu_memory_is_a_clear_error") {
        return;
    }
    drop(ctx);
    let m = smollm2().display().to_string();
    let run = |ctx_len: &str| {
        let o = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "ulimit -v 6000000; exec \"$0\" generate --backend gpu --model \"$1\" \
                 --ctx {ctx_len} --max-tokens 2 --temperature 0 hello"
            ))
            .arg(env!("CARGO_BIN_EXE_tide"))
            .arg(&m)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!err.contains("panicked"), "ctx {ctx_len} panicked: {err}");
        (o.status.success(), err)
    };
    let (ok, err) = run("2048");
    assert!(ok, "the default context under the cap failed: {err}");
    let (ok, err) = run("170000");
    assert!(!ok, "a 7.8 GB K/V cache ran under a 6 GB cap: {err}");
    assert!(
        err.contains("out of GPU memory")
            && err.contains("170000 positions")
            && err.contains("--ctx"),
        "{err}"
    );
}
