//! `tide kernels [--dump DIR]`: list, or write out, each preprocessed WGSL variant the decoder
//! builds for a model on this adapter, so a reader can see the shader that actually runs.
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use tide_gpu::Engine;

use super::common::ModelArgs;

#[derive(Args)]
pub struct KernelsArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Write each variant to DIR/<shader>.<entry>.<defines>.wgsl, with index.json (file,
    /// label) beside them. DIR must be empty or not exist yet.
    #[arg(long)]
    pub dump: Option<PathBuf>,
}

pub fn run(a: KernelsArgs) -> Result<()> {
    let m = a.model.load()?;
    let Engine::Gpu(dec) = a.model.engine(&m)? else {
        bail!("no GPU adapter opened: the kernels are the GPU backend's (try --backend gpu)");
    };
    let sources = dec.kernel_sources()?;
    let Some(dir) = a.dump else {
        for (file, label, src) in &sources {
            println!("{label}  ({} lines)  {file}", src.lines().count());
        }
        return Ok(());
    };
    if dir.exists() {
        let mut entries = std::fs::read_dir(&dir)
            .with_context(|| format!("--dump {}: cannot read it", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "--dump {}: the folder is not empty; give a new or empty folder",
                dir.display()
            );
        }
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("--dump {}", dir.display()))?;
    let mut index = Vec::new();
    for (file, label, src) in &sources {
        let p = dir.join(file);
        std::fs::write(&p, src).with_context(|| format!("writing {}", p.display()))?;
        index.push(serde_json::json!({ "file": file, "label": label }));
    }
    let p = dir.join("index.json");
    std::fs::write(&p, serde_json::to_string_pretty(&index)?)
        .with_context(|| format!("writing {}", p.display()))?;
    eprintln!(
        "wrote {} kernel variants to {}",
        sources.len(),
        dir.display()
    );
    Ok(())
}
