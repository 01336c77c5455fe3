//! A memory model's backbone (models/smollm2-tide): the GGUF its card names, beside the memory
//! or fetched by the project's own script, so that `--model models/smollm2-tide` works on a
//! fresh machine in one command.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use tide_gpu::model::Card;

/// The fetch scripts tide runs: a card names one, it never supplies a command of its own.
const FETCH_SCRIPTS: &[&str] = &["scripts/fetch-smollm2.sh"];

/// Where the backbone of the card in `dir` is: beside the memory, else where its fetch script
/// (found in the current folder or in the repository `dir` lives in) puts it.
pub fn locate(dir: &Path, card: &Card) -> Result<PathBuf> {
    let b = &card.tide_backbone;
    let beside = dir.join(&b.file);
    if beside.exists() {
        return check(&beside, card);
    }
    let Some(script) = &b.fetch else {
        bail!(
            "{}: the backbone {} that config.json names is not in the folder, and the card \
             says no way to fetch it",
            dir.display(),
            b.file
        );
    };
    if !FETCH_SCRIPTS.contains(&script.as_str()) {
        bail!(
            "{}: config.json names the fetch script {script}, which is not one tide runs \
             ({}); put {} in the folder instead",
            dir.display(),
            FETCH_SCRIPTS.join(", "),
            b.file
        );
    }
    let repo = dir.join("../..");
    let Some(path) = [Path::new(script).to_path_buf(), repo.join(script)]
        .into_iter()
        .find(|p| p.is_file())
    else {
        bail!(
            "{}: the backbone {} is not in the folder and {script} is not here: run from the \
             repository root, or put the file in the folder",
            dir.display(),
            b.file
        );
    };
    eprintln!("backbone: {} via {script} ...", b.file);
    let out = Command::new("bash")
        .arg(&path)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", path.display()))?;
    if !out.status.success() {
        bail!(
            "{}: {script} failed ({}) fetching the backbone {}",
            dir.display(),
            out.status,
            b.file
        );
    }
    let got = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if got.file_name().and_then(|n| n.to_str()) != Some(b.file.as_str()) {
        bail!(
            "{}: {script} printed {}, not a file named {}",
            dir.display(),
            got.display(),
            b.file
        );
    }
    check(&got, card)
}

/// The file is the card's backbone by size (the memory's vocabulary and width are checked
/// against it when it loads).
fn check(path: &Path, card: &Card) -> Result<PathBuf> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("backbone {}", path.display()))?
        .len();
    if len != card.tide_backbone.bytes {
        bail!(
            "backbone {}: {len} bytes, but the card names a file of {} bytes: another file",
            path.display(),
            card.tide_backbone.bytes
        );
    }
    Ok(path.to_path_buf())
}
