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
    /// Write each variant built at load to DIR/<shader>.<entry>.<defines>.wgsl, with
    /// index.json (file, label) beside them (top-k kernels are built per K on first use and
    /// not listed). DIR must be empty or not exist yet.
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// Time each variant's first dispatch (compile + run) and a second one, for one token and
    /// for a batch; run with an empty driver shader cache (Mesa: MESA_SHADER_CACHE_DIR=<new
    /// folder>) to see what a cold start compiles.
    #[arg(long, conflicts_with = "dump")]
    pub compile_times: bool,
}

pub fn run(a: KernelsArgs) -> Result<()> {
    let m = a.model.load()?;
    let Engine::Gpu(dec) = a.model.engine(&m)? else {
        bail!("no GPU adapter opened: the kernels are the GPU backend's (try --backend gpu)");
    };
    if a.compile_times {
        let mut rows = dec.first_dispatch_times()?;
        let total: f64 = rows.iter().map(|r| r.2 - r.3).sum();
        rows.sort_by(|x, y| (y.2 - y.3).total_cmp(&(x.2 - x.3)));
        println!(
            "{:>9} {:>9} {:>6}  kernel",
            "first ms", "again ms", "tokens"
        );
        for (label, n, first, again) in rows {
            println!("{:>9.1} {:>9.1} {n:>6}  {label}", first * 1e3, again * 1e3);
        }
        println!("first dispatches cost {total:.2} s more than the second ones");
        return Ok(());
    }
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
