//! The row store: every memory row the runtime reads comes through here. A source says where
//! the stored tables are (a memory-mapped or in-memory file: `LocalTables`; a remote file read
//! with HTTP Range: memory/http.rs); an LRU cache with a byte budget sits in front of it, warmed
//! from tide.token_counts; counters say how it went (`MemoryStats`, in `--json` output).
//!
//! The cache holds a token's K stored rows together (a step reads all K), as stored: quantised
//! rows stay quantised.
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

use crate::error::{Error, Result};
use crate::model::Weight;

/// What the row store did since the model was loaded (or the counters were reset). Rows are
/// block rows: a token's step reads K of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MemoryStats {
    pub rows_requested: u64,
    /// Rows served by the cache, or read again within the step that fetched them.
    pub hits: u64,
    /// Rows read from the source.
    pub misses: u64,
    /// Bytes the source transferred (for HTTP: response bodies, coalescing gaps included).
    pub bytes_fetched: u64,
    /// Bytes of rows held by the cache now.
    pub resident_bytes: u64,
}

/// Where the stored tables are.
pub trait RowSource: Send + Sync {
    /// Stored rows `ids` (sorted, distinct) of table `k`, written one after the other into
    /// `out` (ids.len() x row_bytes). Returns the bytes transferred to get them.
    fn read_rows(&self, k: usize, ids: &[u32], out: &mut [u8]) -> Result<u64>;
    /// `read_rows` for a bulk read (the warm-up, many scattered rows): a remote source bounds
    /// the bytes it reads beyond the rows rather than reading through every short gap.
    fn read_rows_bulk(&self, k: usize, ids: &[u32], out: &mut [u8]) -> Result<u64> {
        self.read_rows(k, ids, out)
    }
    /// Rows `ids` (sorted, distinct) of all `k` tables, table b's written to
    /// `out[b * ids.len() * row_bytes..]` as `read_rows` (or, `bulk`, `read_rows_bulk`) writes
    /// them. Returns the bytes transferred. A remote source overrides it to run the tables'
    /// requests side by side: table after table, a step's miss would wait K round trips.
    fn read_tables(&self, k: usize, ids: &[u32], bulk: bool, out: &mut [u8]) -> Result<u64> {
        if ids.is_empty() || k == 0 {
            return Ok(0);
        }
        let mut bytes = 0;
        for (b, o) in out.chunks_exact_mut(out.len() / k).enumerate() {
            bytes += if bulk {
                self.read_rows_bulk(b, ids, o)?
            } else {
                self.read_rows(b, ids, o)?
            };
        }
        Ok(bytes)
    }
    /// For messages: the file or URL.
    fn name(&self) -> String;
}

/// Tables in memory or memory-mapped (the native file path, the embedded model, the browser's
/// downloaded files).
pub struct LocalTables {
    pub tables: Vec<Weight>,
    pub source: String,
}

impl RowSource for LocalTables {
    fn read_rows(&self, k: usize, ids: &[u32], out: &mut [u8]) -> Result<u64> {
        let t = &self.tables[k];
        let rb = out.len() / ids.len().max(1);
        for (o, &v) in out.chunks_exact_mut(rb).zip(ids) {
            let v = v as usize;
            if v >= t.rows() || (v + 1) * rb > t.byte_len() {
                return Err(Error::Input(format!(
                    "{}: token id {v} is beyond memory table {} ({} rows)",
                    self.source,
                    t.info.name,
                    t.rows()
                )));
            }
            // The row alone: a read-through file (the browser's stored copy) is read per row.
            o.copy_from_slice(&t.row_bytes(v..v + 1));
        }
        // The rows now live in the caller's buffer (and the row cache): drop the file pages
        // read, so a mapped table never stays resident beyond what the cache holds.
        if let (Some(&a), Some(&b)) = (ids.first(), ids.last()) {
            let start = t.info.start + a as usize * rb;
            t.blob
                .release_touched(start..t.info.start + (b as usize + 1) * rb);
        }
        Ok(out.len() as u64)
    }

    fn name(&self) -> String {
        self.source.clone()
    }
}

struct State {
    cache: Option<LruCache<u32, Box<[u8]>>>,
    stats: MemoryStats,
    scratch: Vec<u8>,
    /// Tokens `insert` cached (counted as misses there) that no step has read yet: their
    /// first read is not a hit.
    fresh: std::collections::HashSet<u32>,
}

impl State {
    /// Cache token `t`'s rows (`tb` bytes), counting the bytes held when the cache grew
    /// rather than replaced an entry. The caller has made sure there is a cache.
    fn put(&mut self, t: u32, row: Box<[u8]>, tb: usize) {
        if let Some(c) = self.cache.as_mut() {
            let grew = c.len() < c.cap().get() && !c.contains(&t);
            c.put(t, row);
            if grew {
                self.stats.resident_bytes += tb as u64;
            }
        }
    }
}

/// The row store of one model's memory: shared by its clones (the CPU reference and the GPU
/// decoder of one model read through the same cache and counters).
#[derive(Clone)]
pub struct RowStore {
    source: Arc<dyn RowSource>,
    k: usize,
    vocab: usize,
    /// Bytes of one stored block row.
    row_bytes: usize,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for RowStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RowStore({}, K = {})", self.source.name(), self.k)
    }
}

impl RowStore {
    pub fn new(source: Arc<dyn RowSource>, k: usize, vocab: usize, row_bytes: usize) -> Self {
        RowStore {
            source,
            k,
            vocab,
            row_bytes,
            state: Arc::new(Mutex::new(State {
                cache: None,
                stats: MemoryStats::default(),
                scratch: Vec::new(),
                fresh: Default::default(),
            })),
        }
    }

    /// The same source with its own (empty, no) cache and counters: to run variants of one
    /// model side by side.
    pub fn detached(&self) -> RowStore {
        RowStore::new(self.source.clone(), self.k, self.vocab, self.row_bytes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the cache half-updated in a way that matters: rows
        // are inserted whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn source(&self) -> &dyn RowSource {
        self.source.as_ref()
    }

    /// Bytes of one token's K stored rows (the unit the cache holds).
    pub fn token_bytes(&self) -> usize {
        self.k * self.row_bytes
    }

    /// Bytes of all the tables.
    pub fn table_bytes(&self) -> u64 {
        (self.token_bytes() * self.vocab) as u64
    }

    /// Give the cache a budget of `bytes` (0: no cache), dropping what it held.
    pub fn set_cache_bytes(&self, bytes: usize) {
        let n = bytes / self.token_bytes().max(1);
        let mut s = self.lock();
        s.cache = NonZeroUsize::new(n.min(self.vocab)).map(LruCache::new);
        s.stats.resident_bytes = 0;
        s.fresh.clear();
    }

    /// Tokens the cache can hold.
    pub fn cache_tokens(&self) -> usize {
        self.lock().cache.as_ref().map_or(0, |c| c.cap().get())
    }

    pub fn stats(&self) -> MemoryStats {
        self.lock().stats
    }

    /// The tables were copied whole to the GPU (DecoderOptions::memory_resident): `bytes`
    /// are resident there.
    pub fn set_resident(&self, bytes: u64) {
        self.lock().stats.resident_bytes += bytes;
    }

    /// A step of `n` tokens read its rows from resident tables: all hits, nothing fetched.
    pub fn count_resident(&self, n: usize) {
        let mut s = self.lock();
        s.stats.rows_requested += (n * self.k) as u64;
        s.stats.hits += (n * self.k) as u64;
    }

    /// Zero the counters (the cache keeps what it holds).
    pub fn reset_stats(&self) {
        let mut s = self.lock();
        let resident = s.stats.resident_bytes;
        s.fresh.clear();
        s.stats = MemoryStats {
            resident_bytes: resident,
            ..Default::default()
        };
    }

    fn check_ids(&self, tokens: &[u32]) -> Result<()> {
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= self.vocab) {
            return Err(Error::Input(format!(
                "token id {t} is outside the memory tables' vocabulary of {}",
                self.vocab
            )));
        }
        Ok(())
    }

    /// Read the K rows of each of `ids` (sorted, distinct) from the source, one buffer per
    /// token ([K, row_bytes]: what the cache holds, so caching them copies nothing).
    fn fetch(&self, s: &mut State, ids: &[u32]) -> Result<Vec<Box<[u8]>>> {
        let mut scratch = std::mem::take(&mut s.scratch);
        let got = self.read_tokens(ids, &mut scratch, false);
        s.scratch = scratch;
        let (rows, bytes) = got?;
        s.stats.bytes_fetched += bytes;
        Ok(rows)
    }

    /// Tokens `ids`' K rows each from the source (no lock held), and the bytes transferred.
    fn read_tokens(
        &self,
        ids: &[u32],
        scratch: &mut Vec<u8>,
        bulk: bool,
    ) -> Result<(Vec<Box<[u8]>>, u64)> {
        let (rb, k) = (self.row_bytes, self.k);
        let mut out: Vec<Box<[u8]>> = ids.iter().map(|_| vec![0u8; k * rb].into()).collect();
        let per = ids.len() * rb;
        scratch.resize(k * per, 0);
        let bytes = self.source.read_tables(k, ids, bulk, scratch)?;
        if per > 0 {
            for (b, table) in scratch.chunks_exact(per).enumerate() {
                put_table(&mut out, b, table);
            }
        }
        Ok((out, bytes))
    }

    /// The tokens among `tokens` (one step's) whose rows the cache does not hold (sorted,
    /// distinct). The step's cached tokens become the most recently used, so that inserting
    /// the missing ones cannot evict them; a cache smaller than the step's distinct tokens is
    /// refused.
    pub fn missing(&self, tokens: &[u32]) -> Result<Vec<u32>> {
        self.check_ids(tokens)?;
        let mut all = tokens.to_vec();
        all.sort_unstable();
        all.dedup();
        if all.is_empty() {
            return Ok(all);
        }
        let mut s = self.lock();
        let cap = s.cache.as_ref().map_or(0, |c| c.cap().get());
        if cap < all.len() {
            return Err(Error::Input(format!(
                "{}: the row cache holds {cap} tokens, fewer than the {} a step needs",
                self.source.name(),
                all.len()
            )));
        }
        let c = s.cache.as_mut().unwrap();
        all.retain(|t| !c.promote(t));
        Ok(all)
    }

    /// Rows the caller fetched for `ids` (one [K, row_bytes] buffer each, `bytes` transferred
    /// to get them): counted as misses and kept in the cache, where the step then finds them.
    pub fn insert(&self, ids: &[u32], rows: Vec<Box<[u8]>>, bytes: u64) -> Result<()> {
        let tb = self.token_bytes();
        if rows.len() != ids.len() || rows.iter().any(|r| r.len() != tb) {
            return Err(Error::Input(format!(
                "{}: {} rows of {tb} bytes expected for {} tokens",
                self.source.name(),
                rows.len(),
                ids.len()
            )));
        }
        let mut s = self.lock();
        if s.cache.as_ref().is_none_or(|c| c.cap().get() < ids.len()) {
            return Err(Error::Input(format!(
                "{}: the row cache holds {} tokens, fewer than the {} a step needs",
                self.source.name(),
                s.cache.as_ref().map_or(0, |c| c.cap().get()),
                ids.len()
            )));
        }
        s.stats.misses += (ids.len() * self.k) as u64;
        s.stats.bytes_fetched += bytes;
        for (t, row) in ids.iter().zip(rows) {
            s.put(*t, row, tb);
            s.fresh.insert(*t);
        }
        Ok(())
    }

    /// The stored rows of `tokens`, token-major then block: [n, K, row_bytes], through the
    /// cache. A source error (a failed or short HTTP response, a row beyond the file) is
    /// returned, never a row of garbage.
    pub fn gather(&self, tokens: &[u32], out: &mut Vec<u8>) -> Result<()> {
        self.check_ids(tokens)?;
        let tb = self.token_bytes();
        let mut s = self.lock();
        let mut missing: Vec<u32> = tokens
            .iter()
            .copied()
            .filter(|t| s.cache.as_ref().is_none_or(|c| !c.contains(t)))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        let fetched = if missing.is_empty() {
            Vec::new()
        } else {
            self.fetch(&mut s, &missing)?
        };
        // Counted once the rows are here: a failed step leaves hits + misses = requested.
        s.stats.rows_requested += (tokens.len() * self.k) as u64;
        s.stats.misses += (missing.len() * self.k) as u64;
        // Rows fetched ahead for this step (`insert`) were counted as misses then.
        let mut fetched_ahead = 0;
        if !s.fresh.is_empty() {
            let mut seen: Vec<u32> = tokens
                .iter()
                .copied()
                .filter(|t| s.fresh.contains(t) && missing.binary_search(t).is_err())
                .collect();
            seen.sort_unstable();
            seen.dedup();
            for t in &seen {
                s.fresh.remove(t);
            }
            fetched_ahead = seen.len();
        }
        s.stats.hits += ((tokens.len() - missing.len() - fetched_ahead) * self.k) as u64;
        out.clear();
        out.reserve(tokens.len() * tb);
        for t in tokens {
            if let Ok(i) = missing.binary_search(t) {
                out.extend_from_slice(&fetched[i]);
            } else if let Some(row) = s.cache.as_mut().and_then(|c| c.get(t)) {
                out.extend_from_slice(row);
            }
        }
        // Keep what was fetched, most recently used last (the step's own tokens).
        if s.cache.is_some() {
            for (t, row) in missing.iter().zip(fetched) {
                s.put(*t, row, tb);
            }
        }
        Ok(())
    }

    /// Fill the cache's free room with the rows of `order` (most wanted first), reading
    /// `batch` tokens at a time (sorted, as a bulk read: a remote source coalesces them within
    /// its bound); `progress` gets the tokens done. The lock is not held while rows are read,
    /// so steps can run meanwhile (the CLI warms a remote cache on its own thread): nothing
    /// cached is evicted or replaced, and the warmed tokens rank below every token a step
    /// has used, the least wanted first out. Returns how many tokens were cached and the
    /// bytes read; the counters do not count this.
    pub fn warm(
        &self,
        order: &[u32],
        batch: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<(usize, u64)> {
        let want = &order[..self.cache_tokens().min(order.len())];
        self.check_ids(want)?;
        let tb = self.token_bytes();
        let (mut cached, mut bytes, mut done) = (0, 0, 0);
        let mut scratch = Vec::new();
        for chunk in want.chunks(batch.max(1)) {
            let mut ids: Vec<u32> = {
                let s = self.lock();
                let Some(c) = s.cache.as_ref() else { break };
                chunk.iter().copied().filter(|t| !c.contains(t)).collect()
            };
            ids.sort_unstable();
            ids.dedup();
            let (mut rows, got) = self.read_tokens(&ids, &mut scratch, true)?;
            bytes += got;
            let mut s = self.lock();
            let mut added = 0;
            let Some(c) = s.cache.as_mut() else { break };
            for t in chunk {
                if c.len() >= c.cap().get() {
                    break;
                }
                let Ok(i) = ids.binary_search(t) else {
                    continue;
                };
                if c.contains(t) {
                    continue; // a step fetched it meanwhile
                }
                c.push(*t, std::mem::take(&mut rows[i]));
                c.demote(t);
                added += 1;
            }
            let full = c.len() >= c.cap().get();
            s.stats.resident_bytes += (added * tb) as u64;
            cached += added;
            done += chunk.len();
            progress(done);
            if full {
                break;
            }
        }
        Ok((cached, bytes))
    }
}

/// Copy table `b`'s rows of some tokens (`table`: one row per token, in order) into those
/// tokens' [K, row_bytes] buffers: how a token's rows are put together table by table.
pub fn put_table(tokens: &mut [Box<[u8]>], b: usize, table: &[u8]) {
    let rb = table.len() / tokens.len().max(1);
    for (o, row) in tokens.iter_mut().zip(table.chunks_exact(rb.max(1))) {
        o[b * rb..(b + 1) * rb].copy_from_slice(row);
    }
}

/// Token ids by descending count (ties by id): the order `warm` fills the cache in.
pub fn by_frequency(counts: &[u64]) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..counts.len() as u32).collect();
    ids.sort_by(|&a, &b| counts[b as usize].cmp(&counts[a as usize]).then(a.cmp(&b)));
    ids
}
