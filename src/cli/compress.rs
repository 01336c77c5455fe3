//! `tide compress`: write a copy of a model whose memory tables are re-quantised and
//! optionally SVD-factored (src/memory/compress.rs), with a report of the size and error.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use tide_gpu::memory::compress::{
    compress, progress_total, rows_name, write_memory_file, write_without_memory, CompressOptions,
    Compressed, RankRule,
};
use tide_gpu::model::{shard_names, DType, MEMORY_FILE};

use super::common::ModelArgs;

#[derive(Clone, Copy, ValueEnum)]
pub enum Bits {
    #[value(name = "4")]
    Four,
    #[value(name = "8")]
    Eight,
    #[value(name = "16")]
    Sixteen,
    #[value(name = "32")]
    ThirtyTwo,
}

#[derive(Args)]
pub struct CompressArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Bits per stored value: 4 (q4_1 groups of 32), 8 (q8_0), 16 (f16) or 32 (f32).
    #[arg(long, value_enum, default_value = "4")]
    pub bits: Bits,
    /// Keep this many singular directions per block (1..=d).
    #[arg(long, group = "svd")]
    pub svd_rank: Option<usize>,
    /// Keep this share of the rank per block, in (0, 1] (0.5: a 50% rank reduction).
    #[arg(long, group = "svd")]
    pub svd_ratio: Option<f64>,
    /// Keep the fewest directions holding this share of each block's energy (sum of squared
    /// singular values), in (0, 1].
    #[arg(long, group = "svd")]
    pub svd_energy: Option<f64>,
    /// With SVD: the precision of the bases B_k, which stay on the GPU (f16 halves them).
    #[arg(long, value_enum, default_value = "f16")]
    pub svd_basis: BasisType,
    /// Output folder (must not exist or be empty): a model that --model accepts, its memory
    /// in memory.safetensors, and compress_report.json.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum BasisType {
    F16,
    F32,
}

/// A file of the backbone to carry into the output folder.
enum Part {
    /// Copied as it is (config.json is updated on the way).
    Small(String, Vec<u8>),
    /// A safetensors weight file (or shard), written without its tide.* tensors.
    Weights(String, WeightBytes),
    /// model.safetensors.index.json, written without its tide.* entries.
    Index(Vec<u8>),
}

enum WeightBytes {
    Embedded(&'static [u8]),
    File(PathBuf),
}

const INDEX: &str = "model.safetensors.index.json";

/// The backbone's files to carry over (None for a GGUF: only the memory is written): a
/// single model.safetensors, or the shards an index lists; a memory model's card alone.
fn backbone_files(model: &Option<PathBuf>) -> Result<Option<Vec<Part>>> {
    const SMALL: [&str; 5] = [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        "special_tokens_map.json",
    ];
    let Some(p) = model else {
        let files = tide_gpu::model::embedded::default_model_files();
        return Ok(Some(
            files
                .iter()
                .map(|&(n, b)| match n.ends_with(".safetensors") {
                    true => Part::Weights(n.to_string(), WeightBytes::Embedded(b)),
                    false => Part::Small(n.to_string(), b.to_vec()),
                })
                .collect(),
        ));
    };
    // A memory model's card: the new folder is the card with the compressed memory beside it
    // (the backbone stays where it is fetched to).
    if tide_gpu::model::read_card(p)?.is_some() {
        let card = p.join("config.json");
        let bytes = std::fs::read(&card).with_context(|| format!("reading {}", card.display()))?;
        return Ok(Some(vec![Part::Small("config.json".into(), bytes)]));
    }
    let (dir, single) = if p.is_dir() {
        (p.clone(), p.join("model.safetensors"))
    } else if p.extension().is_some_and(|e| e == "safetensors") {
        (
            p.parent().unwrap_or(Path::new(".")).to_path_buf(),
            p.clone(),
        )
    } else {
        return Ok(None); // a GGUF: only the memory file is written
    };
    let read = |f: &Path| std::fs::read(f).with_context(|| format!("reading {}", f.display()));
    let mut out = Vec::new();
    for n in SMALL {
        let f = dir.join(n);
        if f.exists() {
            out.push(Part::Small(n.to_string(), read(&f)?));
        }
    }
    if single.exists() {
        out.push(Part::Weights(
            "model.safetensors".into(),
            WeightBytes::File(single),
        ));
        return Ok(Some(out));
    }
    let index = read(&dir.join(INDEX))?;
    for shard in shard_names(&index, &dir.join(INDEX).display().to_string())? {
        let f = dir.join(&shard);
        out.push(Part::Weights(shard, WeightBytes::File(f)));
    }
    out.push(Part::Index(index));
    Ok(Some(out))
}

/// The index without its tide.* entries (the memory moves to memory.safetensors).
fn index_without_memory(index: &[u8]) -> Result<Vec<u8>> {
    let mut j: serde_json::Value = serde_json::from_slice(index).context("invalid JSON")?;
    if let Some(m) = j.get_mut("weight_map").and_then(|m| m.as_object_mut()) {
        m.retain(|name, _| !name.starts_with("tide."));
    }
    Ok(serde_json::to_vec_pretty(&j)?)
}

/// Write one weight file without its tide.* tensors; a shard that held only memory tables is
/// not written (the index no longer names it).
fn write_weights(name: &str, src: &WeightBytes, out: &Path) -> Result<()> {
    let map;
    let bytes: &[u8] = match src {
        WeightBytes::Embedded(b) => b,
        WeightBytes::File(f) => {
            let file =
                std::fs::File::open(f).with_context(|| format!("opening {}", f.display()))?;
            // Safety: read only, while this command runs; a model file is not edited in place.
            map = unsafe { memmap2::Mmap::map(&file) }
                .with_context(|| format!("mapping {}", f.display()))?;
            &map
        }
    };
    if write_without_memory(name, bytes, out)? == 0 {
        std::fs::remove_file(out)?;
    }
    Ok(())
}

/// config.json's informative "tide" summary, updated to the new memory.
fn update_config(bytes: &[u8], k: usize, dtype: DType, rank: Option<usize>) -> Result<Vec<u8>> {
    let mut j: serde_json::Value =
        serde_json::from_slice(bytes).context("config.json is not valid JSON")?;
    if let Some(t) = j.get_mut("tide").and_then(|t| t.as_object_mut()) {
        t.insert("k".into(), k.into());
        t.insert("rows".into(), rows_name(dtype).into());
        t.insert("memory_file".into(), MEMORY_FILE.into());
        match rank {
            Some(r) => t.insert("svd_rank".into(), r.into()),
            None => t.remove("svd_rank"),
        };
    }
    Ok(serde_json::to_vec_pretty(&j)?)
}

fn mb(b: usize) -> f64 {
    b as f64 / 1e6
}

fn report_json(a: &CompressArgs, name: &str, dtype: DType, c: &Compressed) -> serde_json::Value {
    serde_json::json!({
        "model": name,
        "memory": a.model.memory.as_ref().map(|p| p.display().to_string()),
        "rows": rows_name(dtype),
        "svd_rank": c.rank,
        "svd_basis": c.rank.map(|_| if c.basis_f16 { "f16" } else { "f32" }),
        "width": c.width,
        "bytes_before": c.bytes_before,
        "bytes_after": c.bytes_after,
        "blocks": c.blocks,
    })
}

pub fn run(a: CompressArgs) -> Result<()> {
    let dtype = match a.bits {
        Bits::Four => DType::Q4_1,
        Bits::Eight => DType::Q8_0,
        Bits::Sixteen => DType::F16,
        Bits::ThirtyTwo => DType::F32,
    };
    let svd = match (a.svd_rank, a.svd_ratio, a.svd_energy) {
        (Some(r), _, _) => Some(RankRule::Rank(r)),
        (_, Some(f), _) => Some(RankRule::Ratio(f)),
        (_, _, Some(e)) => Some(RankRule::Energy(e)),
        _ => None,
    };
    // Refuse early what would fail after minutes of work, and never write over a folder.
    check_out(&a.out)?;
    let m = a.model.load()?;
    let Some(mem) = &m.memory else {
        bail!(
            "{} has no TIDE memory to compress (K = 0); add one with --memory FILE",
            a.model.name()
        );
    };
    let d = m.config.dim;
    if let Some(RankRule::Rank(r)) = svd {
        if r == 0 || r > d {
            bail!("--svd-rank {r} must be in 1..={d} (the model width)");
        }
    }
    let opts = CompressOptions {
        dtype,
        svd,
        basis_f16: a.svd_basis == BasisType::F16,
    };
    let pb = ProgressBar::new(progress_total(mem, &opts));
    pb.set_style(
        ProgressStyle::with_template("compressing [{bar:30}] {pos}/{len} rows, eta {eta}")
            .unwrap()
            .progress_chars("=> "),
    );
    let c = compress(mem, &opts, &mut |n| pb.inc(n))?;
    pb.finish_and_clear();

    // Everything goes to a sibling temporary folder first, renamed into place at the end.
    let tmp = sibling_tmp(&a.out)?;
    let whole = match write_folder(&a, &m, &c, dtype, &tmp) {
        Ok(w) => w,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e.context(format!("writing {}", a.out.display())));
        }
    };
    if a.out.exists() {
        std::fs::remove_dir(&a.out)?; // empty, checked above
    }
    std::fs::rename(&tmp, &a.out)
        .with_context(|| format!("moving {} to {}", tmp.display(), a.out.display()))?;
    print_summary(&a, &c, dtype, d, whole);
    Ok(())
}

/// --out must not exist, or be an empty folder.
fn check_out(out: &Path) -> Result<()> {
    if out.exists()
        && (!out.is_dir()
            || std::fs::read_dir(out)
                .with_context(|| format!("reading --out {}", out.display()))?
                .next()
                .is_some())
    {
        bail!(
            "--out {} already exists and is not an empty folder: choose a new one",
            out.display()
        );
    }
    Ok(())
}

/// A fresh temporary folder beside `out`, to be renamed to it once whole.
fn sibling_tmp(out: &Path) -> Result<PathBuf> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let name = out
        .file_name()
        .map_or("out".into(), |n| n.to_string_lossy());
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    Ok(tmp)
}

/// Write the compressed memory, the report and (when the memory came with the model) the
/// backbone's files into `tmp`. Returns whether the folder is a whole model.
fn write_folder(
    a: &CompressArgs,
    m: &tide_gpu::Model,
    c: &Compressed,
    dtype: DType,
    tmp: &Path,
) -> Result<bool> {
    let mem = m.memory.as_ref().expect("checked by run");
    let backbone = if a.model.memory.is_some() {
        // The memory came from its own file: write only its replacement.
        None
    } else {
        backbone_files(&a.model.model)?
    };
    let whole = backbone.is_some();
    let parts = backbone.unwrap_or_default();
    let pb = ProgressBar::new(parts.len() as u64);
    pb.set_style(
        ProgressStyle::with_template("writing the backbone [{bar:30}] {pos}/{len} files").unwrap(),
    );
    for part in parts {
        match part {
            Part::Weights(name, src) => write_weights(&name, &src, &tmp.join(&name))?,
            Part::Index(bytes) => std::fs::write(tmp.join(INDEX), index_without_memory(&bytes)?)?,
            Part::Small(name, bytes) if name == "config.json" => std::fs::write(
                tmp.join(&name),
                update_config(&bytes, mem.k, dtype, c.rank)?,
            )?,
            Part::Small(name, bytes) => std::fs::write(tmp.join(&name), &bytes)?,
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    let counts = m.token_counts.as_deref();
    write_memory_file(mem, c, dtype, counts, &tmp.join(MEMORY_FILE))?;
    let report = report_json(a, &a.model.name(), dtype, c);
    std::fs::write(
        tmp.join("compress_report.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    Ok(whole)
}

/// Sizes before and after, each block's errors, and how to run what was written.
fn print_summary(a: &CompressArgs, c: &Compressed, dtype: DType, d: usize, whole: bool) {
    println!(
        "memory tables: {:.2} MB -> {:.2} MB ({:.2}x smaller), rows {}{}",
        mb(c.bytes_before),
        mb(c.bytes_after),
        c.bytes_before as f64 / c.bytes_after.max(1) as f64,
        rows_name(dtype),
        c.rank.map_or(String::new(), |r| format!(
            ", SVD rank {r} of {d} (stored width {})",
            c.width
        ))
    );
    println!("block  rank  SVD rel. error  total rel. error");
    for b in &c.blocks {
        println!(
            "{:>5}  {:>4}  {:>14.5}  {:>16.5}",
            b.block, b.rank, b.svd_rel_error, b.rel_error
        );
    }
    if whole {
        println!("wrote {} (use it with --model)", a.out.display());
    } else {
        println!(
            "wrote {}: use it with --model {} --memory {}",
            a.out.join(MEMORY_FILE).display(),
            a.model.name(),
            a.out.join(MEMORY_FILE).display()
        );
    }
}
