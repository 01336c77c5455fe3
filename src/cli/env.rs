//! The one place that reads environment variables: developer switches, mapped onto the
//! library's `Options` (src/options.rs documents each field). A bad value is an error that
//! names the variable, not a silent default.
use anyhow::{bail, Context, Result};
use tide_gpu::options::{KernelSet, Options, RouterPlacement};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Fill the switches of `o` from TIDE_WORKGROUPS, TIDE_ROUTER, TIDE_PREFILL_TILE,
/// TIDE_TOKEN_BY_TOKEN, TIDE_WEIGHTS, TIDE_SUBGROUPS, TIDE_QUICK_START, TIDE_CPU_KERNELS,
/// TIDE_SHADER_DIR and wgpu's own WGPU_* variables.
pub fn apply(o: &mut Options) -> Result<()> {
    if let Some(v) = var("TIDE_WORKGROUPS") {
        o.decoder.kernels = match v.as_str() {
            "big" => KernelSet::CpuAdapter,
            "many" => KernelSet::Gpu,
            _ => bail!("TIDE_WORKGROUPS={v}: want big (CPU-adapter kernels) or many (GPU kernels)"),
        };
    }
    if let Some(v) = var("TIDE_ROUTER") {
        o.decoder.router = match v.as_str() {
            "separate" => RouterPlacement::Separate,
            "auto" => RouterPlacement::Auto,
            _ => bail!("TIDE_ROUTER={v}: want separate or auto"),
        };
    }
    if let Some(v) = var("TIDE_PREFILL_TILE") {
        o.decoder.prefill_tile = v
            .parse()
            .map_err(anyhow::Error::msg)
            .context("TIDE_PREFILL_TILE")?;
    }
    if let Some(v) = var("TIDE_TOKEN_BY_TOKEN") {
        o.decoder.token_by_token_upto = v.parse().map_err(|_| {
            anyhow::anyhow!("TIDE_TOKEN_BY_TOKEN={v}: want a number of tokens (0: always prefill)")
        })?;
    }
    if let Some(v) = var("TIDE_WEIGHTS") {
        o.gpu.weight_textures = Some(match v.as_str() {
            "texture" => true,
            "buffer" => false,
            _ => bail!("TIDE_WEIGHTS={v}: want texture or buffer"),
        });
    }
    if let Some(v) = var("TIDE_SUBGROUPS") {
        o.gpu.subgroups = match v.as_str() {
            "off" => false,
            "on" => true,
            _ => bail!("TIDE_SUBGROUPS={v}: want on or off"),
        };
    }
    if let Some(v) = var("TIDE_QUICK_START") {
        o.decoder.quick_start = match v.as_str() {
            "off" => false,
            "on" => true,
            _ => bail!("TIDE_QUICK_START={v}: want on or off"),
        };
    }
    if let Some(v) = var("TIDE_CPU_KERNELS") {
        o.cpu.portable = match v.as_str() {
            "portable" => true,
            "auto" => false,
            _ => bail!("TIDE_CPU_KERNELS={v}: want portable or auto"),
        };
    }
    if let Some(v) = var("TIDE_SHADER_DIR") {
        let p = std::path::PathBuf::from(&v);
        if !p.is_dir() {
            bail!("TIDE_SHADER_DIR={v}: not a folder");
        }
        o.gpu.shader_dir = Some(p);
    }
    // wgpu's own variables (WGPU_BACKEND, WGPU_VALIDATION, WGPU_DX12_COMPILER, ...).
    o.gpu.backends = wgpu::Backends::from_env();
    o.gpu.instance_flags = Some(wgpu::InstanceFlags::default().with_env());
    o.gpu.backend_options = Some(wgpu::BackendOptions::default().with_env());
    Ok(())
}

/// Give the Vulkan loader a runtime folder where the session has none (SSH, containers, CI):
/// without one it prints "error: XDG_RUNTIME_DIR is invalid or not set" on a run that works.
/// A private folder under the temporary directory, named by the user's id, as
/// scripts/runtime-dir.sh makes for the tests. Runs first, before any thread starts.
#[cfg(target_os = "linux")]
pub fn ensure_runtime_dir() {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let ok = |p: &std::path::Path| p.is_dir();
    if var("XDG_RUNTIME_DIR").is_some_and(|d| ok(std::path::Path::new(&d))) {
        return;
    }
    let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("tide-xdg-{uid}"));
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    // Only a folder of ours that no one else can enter (another user could have made it).
    let mine = std::fs::metadata(&dir)
        .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.permissions().mode() & 0o077 == 0);
    if mine {
        std::env::set_var("XDG_RUNTIME_DIR", &dir);
    }
}

#[cfg(not(target_os = "linux"))]
pub fn ensure_runtime_dir() {}
