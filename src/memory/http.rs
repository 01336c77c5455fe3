//! Memory tables in a remote memory file, read with HTTP Range requests (`--memory
//! http://HOST:PORT/PATH`, e.g. a file `tide serve` offers). The header and the small tensors
//! (gammas, routers, SVD bases, token counts) are fetched when the memory is attached; the
//! tables row by row as steps need them, through the row store's cache.
//!
//! A step's rows are coalesced: ids of one table closer than `max_gap_bytes` share a request.
//! At most `max_in_flight` requests run at once; a failed request is retried. A response that
//! is not 206 with exactly the Content-Range asked for, or is short, stops the step with an
//! error naming the URL: a row of garbage is never used.
use std::sync::Arc;
use std::time::Duration;

use super::store::{RowSource, RowStore};
use crate::error::{Error, Result};
use crate::model::blob::Blob;
use crate::model::tide::first_bad_row;
use crate::model::{Config, DType, RawTensor, TensorInfo, TensorSet, TideMemory, Weight};

/// How remote rows are fetched.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Whole-request timeout (connect, send, read).
    pub timeout: Duration,
    /// Tries after the first for a transport error, a 5xx or a short body.
    pub retries: u32,
    pub max_in_flight: usize,
    /// Bytes between two wanted rows below which one request reads through the gap: a
    /// request costs about as much as reading this much more (loopback: ~0.4 ms against
    /// ~64 KB; a network's round trip is worth more).
    pub max_gap_bytes: usize,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            timeout: Duration::from_secs(10),
            retries: 2,
            max_in_flight: 8,
            max_gap_bytes: 64 << 10,
        }
    }
}

/// Largest header accepted: a memory file's header lists a few hundred tensors.
const MAX_HEADER: u64 = 16 << 20;
/// Largest small tensor fetched whole at attach time (routers, bases, counts).
const MAX_SMALL: u64 = 256 << 20;
/// Largest span one coalesced request reads.
const MAX_SPAN: usize = 4 << 20;

pub struct HttpTables {
    url: String,
    agent: ureq::Agent,
    /// Per table: absolute byte offset in the file.
    offsets: Vec<u64>,
    dtype: DType,
    opts: HttpOptions,
}

/// Why one try failed, and whether trying again may help.
struct Failure {
    msg: String,
    retry: bool,
}

fn fail(msg: String, retry: bool) -> Failure {
    Failure { msg, retry }
}

impl HttpTables {
    fn new_agent(opts: &HttpOptions) -> ureq::Agent {
        // Keep a connection per request in flight alive between steps (ureq keeps 3 per host
        // by default: the rest would be opened afresh every step).
        let keep = opts.max_in_flight.max(1);
        ureq::Agent::config_builder()
            .max_idle_connections_per_host(keep)
            .max_idle_connections(keep.max(10))
            .timeout_global(Some(opts.timeout))
            .http_status_as_error(false)
            .build()
            .into()
    }

    /// One try at bytes [start, start + len): the body and the file's total size.
    fn try_range(
        agent: &ureq::Agent,
        url: &str,
        start: u64,
        len: u64,
    ) -> Result<(Vec<u8>, u64), Failure> {
        let end = start + len - 1;
        let mut resp = agent
            .get(url)
            .header("Range", &format!("bytes={start}-{end}"))
            .call()
            .map_err(|e| fail(format!("request failed: {e}"), true))?;
        let status = resp.status().as_u16();
        match status {
            206 => {}
            200 => {
                return Err(fail(
                    "the server ignored the Range request (200 with the whole file)".into(),
                    false,
                ))
            }
            500..=599 => return Err(fail(format!("HTTP {status}"), true)),
            _ => return Err(fail(format!("HTTP {status}"), false)),
        }
        let cr = resp
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let want = format!("bytes {start}-{end}/");
        let total = cr.strip_prefix(&want).and_then(|t| t.parse::<u64>().ok());
        let Some(total) = total.filter(|&t| t > end) else {
            return Err(fail(
                format!("wrong Content-Range '{cr}' for bytes {start}-{end}"),
                false,
            ));
        };
        let body = resp
            .body_mut()
            .with_config()
            .limit(len + 1)
            .read_to_vec()
            .map_err(|e| fail(format!("reading the body: {e}"), true))?;
        if body.len() as u64 != len {
            return Err(fail(
                format!("short body: {} of {len} bytes", body.len()),
                true,
            ));
        }
        Ok((body, total))
    }

    /// Bytes [start, start + len) of the file and its size, retried as the options say.
    fn range(
        agent: &ureq::Agent,
        url: &str,
        opts: &HttpOptions,
        start: u64,
        len: u64,
    ) -> Result<(Vec<u8>, u64)> {
        let mut tries = 0;
        loop {
            match Self::try_range(agent, url, start, len) {
                Ok(b) => return Ok(b),
                Err(f) if f.retry && tries < opts.retries => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(100 * tries as u64));
                }
                Err(f) => {
                    return Err(Error::Format {
                        file: url.to_string(),
                        msg: format!(
                            "bytes {start}-{} (after {} tries): {}",
                            start + len - 1,
                            tries + 1,
                            f.msg
                        ),
                    })
                }
            }
        }
    }
}

impl RowSource for HttpTables {
    fn read_rows(&self, k: usize, ids: &[u32], out: &mut [u8]) -> Result<u64> {
        let rb = out.len() / ids.len().max(1);
        // Groups of ids (index ranges into `ids`) read by one request each.
        let mut groups: Vec<(usize, usize)> = Vec::new();
        let mut first = 0;
        let max_gap = self.opts.max_gap_bytes / rb.max(1);
        for i in 1..=ids.len() {
            let split = i == ids.len()
                || (ids[i] - ids[i - 1]) as usize > max_gap + 1
                || (ids[i] - ids[first] + 1) as usize * rb > MAX_SPAN;
            if split {
                groups.push((first, i));
                first = i;
            }
        }
        let base = self.offsets[k];
        let fetch = |&(a, b): &(usize, usize)| {
            let start = base + ids[a] as u64 * rb as u64;
            let len = (ids[b - 1] - ids[a] + 1) as u64 * rb as u64;
            Self::range(&self.agent, &self.url, &self.opts, start, len).map(|r| r.0)
        };
        let mut bodies: Vec<Result<Vec<u8>>> = Vec::with_capacity(groups.len());
        for batch in groups.chunks(self.opts.max_in_flight.max(1)) {
            if batch.len() == 1 {
                bodies.push(fetch(&batch[0]));
                continue;
            }
            std::thread::scope(|s| {
                let hs: Vec<_> = batch.iter().map(|g| s.spawn(move || fetch(g))).collect();
                for h in hs {
                    bodies.push(h.join().unwrap_or_else(|_| {
                        Err(Error::Input(format!(
                            "{}: a fetch thread panicked",
                            self.url
                        )))
                    }));
                }
            });
        }
        let mut transferred = 0u64;
        for (&(a, b), body) in groups.iter().zip(bodies) {
            let body = body?;
            transferred += body.len() as u64;
            for i in a..b {
                let o = (ids[i] - ids[a]) as usize * rb;
                out[i * rb..(i + 1) * rb].copy_from_slice(&body[o..o + rb]);
            }
        }
        if let Some(r) = first_bad_row(self.dtype, out, rb) {
            return Err(Error::Format {
                file: self.url.clone(),
                msg: format!(
                    "tide.memory.{k}.rows: row of token {} holds a NaN or infinite value",
                    ids[r]
                ),
            });
        }
        Ok(transferred)
    }

    fn name(&self) -> String {
        self.url.clone()
    }
}

#[derive(serde::Deserialize)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
}

/// Attach (or replace) the memory of `model` from the memory file at `url`: the header and
/// small tensors now, the table rows on demand. Everything the loader checks for a local
/// memory file is checked here too, except NaNs in the tables, checked as rows arrive.
pub fn attach_memory_url(
    model: &mut crate::model::Model,
    url: &str,
    opts: &HttpOptions,
) -> Result<()> {
    if !url.starts_with("http://") {
        return Err(Error::Input(format!(
            "{url}: only http:// memory URLs are supported natively (no TLS); serve the file \
             locally, e.g. with `tide serve`"
        )));
    }
    let agent = HttpTables::new_agent(opts);
    let (head, file_len) = HttpTables::range(&agent, url, opts, 0, 8)?;
    let n = u64::from_le_bytes(head[..8].try_into().unwrap());
    if n == 0 || n > MAX_HEADER {
        return Err(Error::Format {
            file: url.into(),
            msg: format!("not a safetensors file: header length {n}"),
        });
    }
    if 8 + n > file_len {
        return Err(Error::Format {
            file: url.into(),
            msg: format!("truncated: a header of {n} bytes but the file has {file_len}"),
        });
    }
    let (header, _) = HttpTables::range(&agent, url, opts, 8, n)?;
    let mut entries: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| Error::Format {
        file: url.into(),
        msg: format!("not a safetensors header: {e}"),
    })?;
    let data = 8 + n;
    let mut set = TensorSet::default();
    if let Some(m) = entries.remove("__metadata__") {
        for (k, v) in m.as_object().into_iter().flatten() {
            set.meta
                .insert(k.clone(), v.as_str().unwrap_or_default().to_string());
        }
    }
    let mut offsets = std::collections::HashMap::new();
    // Only tide.* tensors: a model file with its memory inline also holds the backbone.
    for (name, v) in entries.into_iter().filter(|(n, _)| n.starts_with("tide.")) {
        let e: HeaderEntry = serde_json::from_value(v).map_err(|e| Error::Format {
            file: url.into(),
            msg: format!("tensor '{name}': bad header entry: {e}"),
        })?;
        let (b, end) = e.data_offsets;
        if end < b {
            return Err(Error::Format {
                file: url.into(),
                msg: format!("tensor '{name}': data_offsets [{b}, {end}] run backwards"),
            });
        }
        if data + end > file_len {
            return Err(Error::Format {
                file: url.into(),
                msg: format!(
                    "truncated: tensor '{name}' needs bytes up to {} but the file has {file_len}",
                    data + end
                ),
            });
        }
        let is_table = name.starts_with("tide.memory.") && name.ends_with(".rows");
        let (blob, start, stop) = if is_table {
            offsets.insert(name.clone(), data + b);
            (Blob::from_vec(Vec::new()), 0, 0)
        } else {
            if end - b > MAX_SMALL {
                return Err(Error::Format {
                    file: url.into(),
                    msg: format!(
                        "tensor '{name}' is {} bytes: too big to fetch at load",
                        end - b
                    ),
                });
            }
            let bytes = if end > b {
                HttpTables::range(&agent, url, opts, data + b, end - b)?.0
            } else {
                Vec::new()
            };
            let len = bytes.len();
            (Blob::from_vec(bytes), 0, len)
        };
        let dtype = match e.dtype.as_str() {
            "F32" => Some(DType::F32),
            "F16" => Some(DType::F16),
            "BF16" => Some(DType::BF16),
            _ => None,
        };
        match dtype {
            Some(dtype) => {
                let info = TensorInfo {
                    name: name.clone(),
                    dtype,
                    shape: e.shape,
                    start,
                    end: stop,
                };
                set.weights.insert(name, Weight { info, blob });
            }
            None => {
                let raw = RawTensor {
                    dtype: e.dtype,
                    shape: e.shape,
                    start,
                    end: stop,
                    blob,
                };
                set.raw.insert(name, raw);
            }
        }
    }
    let mem = TideMemory::from_set(url, &set, &model.config)?;
    let Some(mut mem) = mem else {
        return Err(Error::Format {
            file: url.into(),
            msg: "holds no TIDE memory (tide.k metadata absent or 0)".into(),
        });
    };
    let offsets = (0..mem.k)
        .map(|k| offsets[&format!("tide.memory.{k}.rows")])
        .collect();
    let dtype = mem.tables[0].dtype();
    let row_bytes = mem.rows.token_bytes() / mem.k;
    let source = HttpTables {
        url: url.to_string(),
        agent,
        offsets,
        opts: opts.clone(),
        dtype,
    };
    let c: &Config = &model.config;
    mem.rows = RowStore::new(Arc::new(source), mem.k, c.vocab, row_bytes);
    if let Some(tc) = crate::model::safetensors::token_counts(url, &set, c.vocab)? {
        model.token_counts = Some(tc);
    }
    model.memory = Some(mem);
    Ok(())
}
