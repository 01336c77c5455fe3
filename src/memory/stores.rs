//! The row stores of one model's memories, built by the runtime from the model's table
//! descriptions (model/tide.rs, model/engram.rs say what the tables are and where their
//! bytes lie; this module owns the caches and counters rows are read through). A store is
//! shared by its clones: the CPU reference and the GPU decoder of one model, and the front end
//! that sizes the caches and reports the counters, see the same cache.
use std::sync::Arc;

use super::store::{LocalTables, MemoryStats, RowSource, RowStore};
use crate::error::{Error, Result};
use crate::model::engram::Engram;
use crate::model::{Model, TideMemory, Weight};

#[derive(Debug, Clone, Default)]
pub struct MemoryRows {
    /// TIDE's K tables (one store: a step reads a token's K rows together).
    pub tide: Option<RowStore>,
    /// Engram: per Engram layer, one store per (order, head) table, order-major.
    pub engram: Vec<Vec<RowStore>>,
}

/// Tables whose bytes are not here (a remote memory file's, described by its header only):
/// reading them is an error that says where rows must come from instead.
struct NotLocal {
    source: String,
}

impl RowSource for NotLocal {
    fn read_rows(&self, k: usize, _ids: &[u32], _out: &mut [u8]) -> Result<u64> {
        Err(Error::Input(format!(
            "{}: the rows of table {k} are remote; read them through the row store the \
             remote memory was opened with",
            self.source
        )))
    }

    fn name(&self) -> String {
        self.source.clone()
    }
}

fn no_store(source: &str) -> Error {
    Error::Input(format!("{source}: no row store was given for this memory"))
}

/// Whether a table's bytes are all here (a remote table carries its type and shape only).
fn is_local(w: &Weight) -> bool {
    w.dtype()
        .row_bytes(w.cols())
        .is_some_and(|rb| w.byte_len() == rb * w.rows())
}

/// Whether all of a TIDE memory's table bytes are here (mapped or in memory).
pub fn tables_here(m: &TideMemory) -> bool {
    m.tables.iter().all(is_local)
}

impl MemoryRows {
    /// Stores over the tables' own bytes (memory-mapped or in memory), without caches.
    pub fn local(m: &Model) -> MemoryRows {
        MemoryRows {
            tide: m.memory.as_ref().map(tide_local),
            engram: m.engram.as_ref().map(engram_local).unwrap_or_default(),
        }
    }

    /// The same sources with their own (no) caches and counters: to run variants of one
    /// model side by side.
    pub fn detached(&self) -> MemoryRows {
        MemoryRows {
            tide: self.tide.as_ref().map(RowStore::detached),
            engram: self
                .engram
                .iter()
                .map(|l| l.iter().map(RowStore::detached).collect())
                .collect(),
        }
    }

    /// TIDE's store, or an error naming `m` when these are another model's stores.
    pub fn tide_for(&self, m: &TideMemory) -> Result<&RowStore> {
        self.tide.as_ref().ok_or_else(|| no_store(&m.source))
    }

    /// The stores of Engram layer `ei` of `e`, or an error naming `e` when these are another
    /// model's stores.
    pub fn engram_for(&self, e: &Engram, ei: usize) -> Result<&[RowStore]> {
        match self.engram.get(ei) {
            Some(s) if self.engram.len() == e.layers.len() => Ok(s),
            _ => Err(no_store(&e.source)),
        }
    }

    fn engram_stores(&self) -> impl Iterator<Item = &RowStore> {
        self.engram.iter().flatten()
    }

    /// Bytes of all Engram tables.
    pub fn engram_table_bytes(&self) -> u64 {
        self.engram_stores().map(|s| s.table_bytes()).sum()
    }

    /// Give the Engram row caches `bytes` in all, shared in proportion to the tables' sizes.
    pub fn set_engram_cache_bytes(&self, bytes: usize) {
        let all = self.engram_table_bytes().max(1) as f64;
        for s in self.engram_stores() {
            s.set_cache_bytes((bytes as f64 * s.table_bytes() as f64 / all) as usize);
        }
    }

    /// The Engram row stores' counters, summed over every table.
    pub fn engram_stats(&self) -> MemoryStats {
        self.engram_stores().fold(MemoryStats::default(), |a, s| {
            let b = s.stats();
            MemoryStats {
                rows_requested: a.rows_requested + b.rows_requested,
                hits: a.hits + b.hits,
                misses: a.misses + b.misses,
                bytes_fetched: a.bytes_fetched + b.bytes_fetched,
                resident_bytes: a.resident_bytes + b.resident_bytes,
            }
        })
    }
}

/// TIDE's store over its tables' bytes (or, for tables described but not here, one whose
/// reads say so).
pub fn tide_local(m: &TideMemory) -> RowStore {
    let (vocab, row_bytes) = (m.tables[0].rows(), m.row_bytes());
    let source: Arc<dyn RowSource> = if tables_here(m) {
        Arc::new(LocalTables {
            tables: m.tables.clone(),
            source: m.source.clone(),
        })
    } else {
        Arc::new(NotLocal {
            source: m.source.clone(),
        })
    };
    RowStore::new(source, m.k, vocab, row_bytes)
}

fn engram_local(e: &Engram) -> Vec<Vec<RowStore>> {
    let rb = e.row_bytes();
    e.layers
        .iter()
        .map(|l| {
            l.tables
                .iter()
                .map(|w| {
                    let src = LocalTables {
                        tables: vec![w.clone()],
                        source: format!("{} ({})", e.source, w.info.name),
                    };
                    RowStore::new(Arc::new(src), 1, w.rows(), rb)
                })
                .collect()
        })
        .collect()
}
