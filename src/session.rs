//! What a session decides before it runs, decided here once for every front end (the CLI,
//! `tide serve` and the browser): the context length, the memory row cache's budget and the
//! memory link's read-through gap. Front ends pass what the user asked for (None: not asked).
use crate::error::{Error, Result};
use crate::memory::MemoryRows;
use crate::model::Model;
use crate::options::Options;

/// The default context is the model's, at most this (K/V cache memory grows with it).
pub const DEFAULT_CTX_CAP: usize = 2048;
/// The longest context accepted.
pub const MAX_CTX: usize = 1 << 20;
/// The default row cache holds this share of the tables' bytes ...
pub const CACHE_SHARE: f64 = 0.1;
/// ... and at most this many bytes.
pub const CACHE_MAX_BYTES: usize = 256_000_000;
/// The largest read-through gap accepted, in KB (64 MB).
pub const MAX_GAP_KB: usize = 1 << 16;

/// The context length: the model's (at most [`DEFAULT_CTX_CAP`]) unless asked. A longer one
/// than the model was trained for is allowed (llama.cpp allows it too); [`ctx_note`] says so.
pub fn ctx_len(model_ctx: usize, asked: Option<usize>) -> Result<usize> {
    match asked {
        None => Ok(model_ctx.clamp(1, DEFAULT_CTX_CAP)),
        Some(n) if n == 0 || n > MAX_CTX => Err(Error::Input(format!(
            "the context length must be in 1..={MAX_CTX} tokens, got {n}"
        ))),
        Some(n) => Ok(n),
    }
}

/// A line for the front end to show when the context is longer than the model's own.
pub fn ctx_note(model_ctx: usize, ctx: usize) -> Option<String> {
    (ctx > model_ctx).then(|| {
        format!(
            "the context of {ctx} tokens is longer than the {model_ctx} the model was trained \
             for; text past that may lose coherence"
        )
    })
}

/// The library's options for `model` with the context `ctx` asked for (None: the default).
pub fn options(model: &Model, ctx: Option<usize>) -> Result<Options> {
    let mut o = Options::default();
    o.decoder.ctx_len = ctx_len(model.config.ctx_len, ctx)?;
    Ok(o)
}

/// Where a model's memory rows come from, as far as the cache's budget is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowSource {
    /// Read from a local file (memory-mapped or in memory): a miss costs a copy.
    Local,
    /// Copied whole to the GPU: the cache would hold nothing the GPU lacks.
    Resident,
    /// Fetched over the network before each step: a step's rows must all fit in the cache.
    Remote,
}

/// The row cache's budget in bytes: `asked_mb` (MB of 10^6 bytes) when given, else none for
/// resident tables, else [`CACHE_SHARE`] of the tables up to [`CACHE_MAX_BYTES`]. A remote
/// source's budget is raised to hold `ctx` tokens' rows (`token_bytes` each): the rows of a
/// step are fetched before it runs and must all be in the cache when it does.
pub fn row_cache_bytes(
    table_bytes: u64,
    token_bytes: usize,
    ctx: usize,
    source: RowSource,
    asked_mb: Option<f64>,
) -> Result<usize> {
    let bytes = match asked_mb {
        Some(mb) if !(mb.is_finite() && mb >= 0.0) => {
            return Err(Error::Input(format!(
                "the memory row cache must be a number of MB >= 0, got {mb}"
            )))
        }
        Some(mb) => (mb * 1e6).min(usize::MAX as f64) as usize,
        None if source == RowSource::Resident => 0,
        None => ((table_bytes as f64 * CACHE_SHARE) as usize).min(CACHE_MAX_BYTES),
    };
    Ok(match source {
        RowSource::Remote => bytes.max(token_bytes.saturating_mul(ctx)),
        _ => bytes,
    })
}

/// Size the row caches of a model's TIDE memory (whose rows come from `source`) and Engram
/// tables (always local) by [`row_cache_bytes`]; returns the TIDE memory's budget.
pub fn size_row_caches(
    rows: &MemoryRows,
    ctx: usize,
    source: RowSource,
    asked_mb: Option<f64>,
) -> Result<usize> {
    if !rows.engram.is_empty() {
        let local = if source == RowSource::Remote {
            RowSource::Local
        } else {
            source
        };
        let all = rows.engram_table_bytes();
        rows.set_engram_cache_bytes(row_cache_bytes(all, 0, ctx, local, asked_mb)?);
    }
    let Some(store) = &rows.tide else {
        return Ok(0);
    };
    let bytes = row_cache_bytes(
        store.table_bytes(),
        store.token_bytes(),
        ctx,
        source,
        asked_mb,
    )?;
    store.set_cache_bytes(bytes);
    Ok(bytes)
}

/// The read-through gap in bytes for `asked_kb` (None: measure the link when attaching).
pub fn gap_bytes(asked_kb: Option<usize>) -> Result<Option<usize>> {
    match asked_kb {
        Some(kb) if kb > MAX_GAP_KB => Err(Error::Input(format!(
            "the memory read-through gap must be at most {MAX_GAP_KB} KB (64 MB), got {kb}"
        ))),
        Some(kb) => Ok(Some(kb << 10)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_defaults_to_the_models_capped_and_refuses_nonsense() {
        assert_eq!(ctx_len(256, None).unwrap(), 256);
        assert_eq!(ctx_len(8192, None).unwrap(), 2048);
        assert_eq!(ctx_len(256, Some(4096)).unwrap(), 4096);
        assert!(ctx_note(256, 4096).unwrap().contains("256"));
        assert!(ctx_note(256, 256).is_none());
        for bad in [0, MAX_CTX + 1] {
            let e = ctx_len(256, Some(bad)).unwrap_err().to_string();
            assert!(e.contains(&bad.to_string()), "{e}");
        }
    }

    #[test]
    fn row_cache_budget_follows_one_rule() {
        // 10% of 36 MB; the same for a remote source whose context's rows fit in it.
        let t = 36_000_000;
        assert_eq!(
            row_cache_bytes(t, 600, 2048, RowSource::Local, None).unwrap(),
            3_600_000
        );
        assert_eq!(
            row_cache_bytes(t, 600, 2048, RowSource::Remote, None).unwrap(),
            3_600_000
        );
        // A remote source is raised to a whole context's rows; a local one is not.
        assert_eq!(
            row_cache_bytes(t, 4000, 2048, RowSource::Remote, Some(0.0)).unwrap(),
            8_192_000
        );
        assert_eq!(
            row_cache_bytes(t, 4000, 2048, RowSource::Local, Some(0.0)).unwrap(),
            0
        );
        assert_eq!(
            row_cache_bytes(t, 600, 2048, RowSource::Resident, None).unwrap(),
            0
        );
        assert_eq!(
            row_cache_bytes(10_000_000_000, 600, 2048, RowSource::Local, None).unwrap(),
            CACHE_MAX_BYTES
        );
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(row_cache_bytes(t, 600, 2048, RowSource::Local, Some(bad)).is_err());
        }
    }

    #[test]
    fn gap_is_refused_above_64_mb_everywhere() {
        assert_eq!(gap_bytes(Some(64)).unwrap(), Some(65536));
        assert_eq!(gap_bytes(None).unwrap(), None);
        let e = gap_bytes(Some(MAX_GAP_KB + 1)).unwrap_err().to_string();
        assert!(e.contains("65537"), "{e}");
    }
}
