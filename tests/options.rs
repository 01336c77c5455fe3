//! The library takes its settings from `Options` only: the environment variables the CLI
//! maps (src/cli/env.rs) change nothing when the library is used directly, bad values are
//! refused by the CLI with the variable's name, and `--backend auto` ranks adapters so that
//! software OpenGL never beats the CPU reference.
mod common;

use std::process::Command;

use tide_gpu::decoder::specs::{Epilogue, Matmul};
use tide_gpu::gpu::adapter_rank;
use tide_gpu::model::DType;
use tide_gpu::options::PrefillTile;
use wgpu::{Backend, DeviceType};

fn defs(s: &tide_gpu::decoder::specs::Spec, k: &str) -> String {
    s.defs.0.get(k).cloned().unwrap_or_default()
}

#[test]
fn kernel_specs_ignore_the_environment() {
    let m = Matmul {
        epi: Epilogue::Residual,
        norm: None,
        dtype: DType::Q4_1,
        cols: 64,
        rows: 64,
        row0: 0,
    };
    // Before the options struct, Matmul::prefill read TIDE_PREFILL_TILE itself.
    std::env::set_var("TIDE_PREFILL_TILE", "2,2,16");
    let s = m.prefill();
    std::env::remove_var("TIDE_PREFILL_TILE");
    assert_eq!(defs(&s, "GR"), "8");
    assert_eq!(defs(&s, "TPL"), "4");
    assert_eq!(defs(&s, "WG"), "32");
    // The tile comes in as an argument instead.
    let t: PrefillTile = "2,2,16".parse().unwrap();
    let s = m.prefill_tiled(t);
    assert_eq!(
        (defs(&s, "GR"), defs(&s, "TPL"), defs(&s, "WG")),
        ("2".into(), "2".into(), "16".into())
    );
    assert_eq!(s.tokens_per_y, 32);
}

#[test]
fn prefill_tiles_are_checked() {
    for bad in ["", "1,2", "0,4,32", "8,4,32,1", "a,b,c", "8,4,100000"] {
        let e = bad.parse::<PrefillTile>().unwrap_err();
        assert!(e.contains("prefill tile"), "{bad}: {e}");
    }
}

/// A hardware GPU first, then a CPU adapter on Vulkan/Metal/DX12, then software OpenGL last
/// (slower than the CPU reference: issue 11 measured 0.1 tok/s prefill on llvmpipe's GL).
#[test]
fn adapters_rank_software_gl_last() {
    let gpu_vk = adapter_rank(Backend::Vulkan, DeviceType::DiscreteGpu, "Radeon").unwrap();
    let igpu_gl = adapter_rank(Backend::Gl, DeviceType::IntegratedGpu, "Mesa Intel").unwrap();
    let lavapipe = adapter_rank(Backend::Vulkan, DeviceType::Cpu, "llvmpipe (LLVM 15)").unwrap();
    let gl_sw = adapter_rank(
        Backend::Gl,
        DeviceType::Other,
        "llvmpipe (LLVM 15, 256 bits)",
    )
    .unwrap();
    let swiftshader = adapter_rank(Backend::Vulkan, DeviceType::Cpu, "SwiftShader Device").unwrap();
    assert!(gpu_vk > igpu_gl && igpu_gl > lavapipe && lavapipe > gl_sw);
    // A discrete GPU before an integrated one (as wgpu's HighPerformance request orders them),
    // whatever the API; the native API before GL for the same kind.
    let dgpu_gl = adapter_rank(Backend::Gl, DeviceType::DiscreteGpu, "Radeon").unwrap();
    let igpu_vk = adapter_rank(Backend::Vulkan, DeviceType::IntegratedGpu, "Intel").unwrap();
    assert!(dgpu_gl > igpu_vk && igpu_vk > igpu_gl && gpu_vk > dgpu_gl);
    assert_eq!(swiftshader, lavapipe);
    assert_eq!(adapter_rank(Backend::Noop, DeviceType::Other, "noop"), None);
}

fn tide(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tide"));
    c.args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn the_cli_refuses_bad_switches_by_name() {
    for (var, val) in [
        ("TIDE_WEIGHTS", "bogus"),
        ("TIDE_WORKGROUPS", "lots"),
        ("TIDE_ROUTER", "inline"),
        ("TIDE_SUBGROUPS", "maybe"),
        ("TIDE_PREFILL_TILE", "8,4"),
        ("TIDE_TOKEN_BY_TOKEN", "some"),
        ("TIDE_SHADER_DIR", "/nonexistent/shaders"),
    ] {
        let o = tide(
            &["generate", "--backend", "cpu", "--max-tokens", "1", "Hi"],
            &[(var, val)],
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{var}={val} was accepted");
        assert!(err.contains(var), "{var}={val}: {err}");
    }
}

/// `--backend auto` on a machine whose only adapter is software OpenGL takes the CPU
/// reference and says why. With Vulkan pointed at no driver, wgpu finds at most llvmpipe's GL
/// (or nothing, where GL is missing too): either way the answer is the CPU reference.
#[test]
fn auto_does_not_take_software_gl() {
    let o = tide(
        &["generate", "--max-tokens", "2", "--temperature", "0", "Hi"],
        &[
            ("VK_ICD_FILENAMES", "/nonexistent.json"),
            ("VK_DRIVER_FILES", "/nonexistent.json"),
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("backend: cpu"), "{err}");
    assert!(err.contains("note:"), "{err}");
}

/// On a machine whose only adapter is a software one (lavapipe here), `hardware_only` refuses
/// it by name before a device opens, and `--backend auto` then runs the fast CPU backend and
/// says why; `--backend gpu` keeps the adapter.
#[test]
fn auto_passes_over_a_software_adapter() {
    let ctx = common::gpu();
    if !common::lavapipe_or_skip(&ctx, "auto_passes_over_a_software_adapter") {
        return;
    }
    let opts = tide_gpu::options::GpuOptions {
        hardware_only: true,
        ..Default::default()
    };
    let err = match pollster::block_on(tide_gpu::gpu::GpuContext::new(&opts)) {
        Ok(c) => panic!("hardware_only opened {}", c.describe()),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("software renderer") && err.contains("llvmpipe"),
        "{err}"
    );
    let gen = ["generate", "--max-tokens", "2", "--temperature", "0", "Hi"];
    let o = tide(&gen, &[]);
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    assert!(log.contains("backend: cpu"), "{log}");
    assert!(
        log.contains("software renderer") && log.contains("llvmpipe"),
        "{log}"
    );
    let o = tide(&[&gen[..], &["--backend", "gpu"]].concat(), &[]);
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    assert!(
        log.contains("llvmpipe") && !log.contains("backend: cpu"),
        "{log}"
    );
}

/// `tide kernels --dump DIR` writes every variant the decoder builds, as valid WGSL named by
/// its key, with an index; it refuses a folder that already holds files.
#[test]
fn kernels_dump_writes_the_wgsl_that_runs() {
    let dir = std::env::temp_dir().join(format!("tide-kernels-dump-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    let o = tide(&["kernels", "--backend", "gpu", "--dump", d], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    let files = index.as_array().unwrap();
    // The embedded TIDE model: embedding, memory gather, QKV, attention, output, router,
    // gate/up, down, LM head, penalty: at least ten variants.
    assert!(files.len() >= 10, "{index}");
    let mut shaders = std::collections::BTreeSet::new();
    for f in files {
        let name = f["file"].as_str().unwrap();
        let src = std::fs::read_to_string(dir.join(name)).unwrap();
        naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(src.contains("@compute"), "{name}");
        assert!(
            !src.contains("{{") && !src.contains("#if"),
            "{name}: not preprocessed"
        );
        shaders.insert(name.split('.').next().unwrap().to_string());
    }
    for s in ["embed", "memory", "attention", "router", "sample"] {
        assert!(shaders.contains(s), "no {s} kernel in {shaders:?}");
    }
    let o = tide(&["kernels", "--backend", "gpu", "--dump", d], &[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not empty"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `tide kernels --compile-times` times every variant's first and second dispatch.
#[test]
fn kernels_compile_times_lists_every_step_kind() {
    let o = tide(&["kernels", "--backend", "gpu", "--compile-times"], &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // One token and a batch of 8, the decode and the prefill kernels.
    assert!(out
        .lines()
        .any(|l| l.contains("matvec_rows:main") || l.contains("matvec:main")));
    assert!(out.lines().any(|l| l.contains("matmul:main")), "{out}");
    assert!(out.contains("first dispatches cost"), "{out}");
}
