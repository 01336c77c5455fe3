//! The one place that reads environment variables: developer switches, mapped onto the
//! library's `Options` (src/options.rs documents each field). A bad value is an error that
//! names the variable, not a silent default.
use anyhow::{bail, Context, Result};
use tide_gpu::options::{KernelSet, Options, RouterPlacement};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Fill the switches of `o` from TIDE_WORKGROUPS, TIDE_ROUTER, TIDE_PREFILL_TILE,
/// TIDE_TOKEN_BY_TOKEN, TIDE_WEIGHTS, TIDE_SUBGROUPS, TIDE_QUICK_START, TIDE_SHADER_DIR and
/// wgpu's own WGPU_* variables.
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
