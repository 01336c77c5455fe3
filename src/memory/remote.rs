//! What the two remote sources share, natively (http.rs: blocking HTTP) and in the browser
//! (fetch.rs: fetch()): reading a memory file's header and small tensors through a range
//! reader, where each table starts, how a step's rows are grouped into requests, and the check
//! of what arrived. A response that is not 206 with exactly the Content-Range asked for, or is
//! short, is an error naming the URL: a row of garbage is never used.
use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::model::blob::Blob;
use crate::model::safetensors::{header_len, insert_tensor, parse_header};
use crate::model::tide::first_bad_row;
use crate::model::{Config, DType, TensorSet, TideMemory};

/// Largest small tensor fetched whole at attach time (routers, bases, counts).
const MAX_SMALL: u64 = 256 << 20;
/// Largest span one coalesced request reads.
const MAX_SPAN: usize = 4 << 20;

/// Reads byte ranges of one remote file.
pub(crate) trait Ranges {
    fn url(&self) -> &str;
    /// Bytes [start, start + len) and the file's total size.
    async fn range(&self, start: u64, len: u64) -> Result<(Vec<u8>, u64)>;
}

/// The bounds of a measured gap: below a few rows it saves nothing; above MAX_GAP one
/// request would read much of a step's span.
const MIN_GAP: usize = 4 << 10;
const MAX_GAP: usize = 2 << 20;
/// Bytes of the larger of the two probes (less when a table is smaller).
const PROBE_BYTES: u64 = 256 << 10;

/// What was measured of the link to a remote memory file, and the gap chosen from it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Link {
    /// The quicker of two one-row requests (seconds); None when the gap was given.
    pub round_trip_s: Option<f64>,
    /// From a PROBE_BYTES request less the round trip (bytes/s).
    pub bytes_per_s: Option<f64>,
    /// The read-through gap the steps use (bytes).
    pub gap_bytes: usize,
}

/// The gap for a link whose requests run `in_flight` at a time: one more request costs a
/// share of a round trip, 1 / in_flight of one, so reading through a gap pays while the gap
/// takes less to transfer than that: the link's bandwidth-delay product over `in_flight`,
/// within [MIN_GAP, MAX_GAP].
pub fn gap_for(round_trip_s: f64, bytes_per_s: f64, in_flight: usize) -> usize {
    let g = round_trip_s * bytes_per_s / in_flight.max(1) as f64;
    if g.is_finite() {
        (g as usize).clamp(MIN_GAP, MAX_GAP)
    } else {
        MAX_GAP
    }
}

/// The read-through gap for `t`: `given`, or measured by timing requests for the first rows
/// of table 0 through `r` (web_time: std's clock natively, performance.now() in the browser):
/// two of one row (the quicker is the round trip; the connection is open from `open`) and two
/// of PROBE_BYTES, the quicker of each, since a scheduling hiccup only ever adds time.
pub(crate) async fn choose_gap(
    r: &impl Ranges,
    t: &RemoteTables,
    vocab: usize,
    given: Option<usize>,
    in_flight: usize,
) -> Result<Link> {
    if let Some(gap_bytes) = given {
        return Ok(Link {
            round_trip_s: None,
            bytes_per_s: None,
            gap_bytes,
        });
    }
    let row = t.row_bytes as u64;
    let big = PROBE_BYTES.min(row * vocab as u64).max(row);
    let mut best = [f64::INFINITY; 2];
    for len in [row, row, big, big] {
        let start = web_time::Instant::now();
        r.range(t.offsets[0], len).await?;
        let i = usize::from(len == big && big > row);
        best[i] = best[i].min(start.elapsed().as_secs_f64());
    }
    let rtt = best[0];
    let bw = (big - row) as f64 / (best[1] - rtt).max(1e-6);
    Ok(Link {
        round_trip_s: Some(rtt),
        bytes_per_s: Some(bw),
        gap_bytes: gap_for(rtt, bw, in_flight),
    })
}

/// Why one try at a range failed, and whether trying again may help.
pub(crate) struct Failure {
    pub msg: String,
    pub retry: bool,
}

pub(crate) fn fail(msg: String, retry: bool) -> Failure {
    Failure { msg, retry }
}

/// What a 206 response must say: its status and Content-Range are checked against the range
/// asked for; returns the file's total size.
pub(crate) fn check_partial(
    status: u16,
    content_range: &str,
    start: u64,
    len: u64,
) -> std::result::Result<u64, Failure> {
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
    let end = start + len - 1;
    let want = format!("bytes {start}-{end}/");
    let total = content_range
        .strip_prefix(&want)
        .and_then(|t| t.parse::<u64>().ok());
    total.filter(|&t| t > end).ok_or_else(|| {
        fail(
            format!("wrong Content-Range '{content_range}' for bytes {start}-{end}"),
            false,
        )
    })
}

/// The body's length against the range's.
pub(crate) fn check_length(body: &[u8], len: u64) -> std::result::Result<(), Failure> {
    if body.len() as u64 != len {
        return Err(fail(
            format!("short body: {} of {len} bytes", body.len()),
            true,
        ));
    }
    Ok(())
}

/// The message for a range that failed for good.
pub(crate) fn range_error(url: &str, start: u64, len: u64, tries: u32, f: Failure) -> Error {
    Error::Format {
        file: url.to_string(),
        msg: format!(
            "bytes {start}-{} (after {tries} tries): {}",
            start + len - 1,
            f.msg
        ),
    }
}

/// Where a remote file's tables are.
#[derive(Debug, Clone)]
pub struct RemoteTables {
    pub url: String,
    /// Per table: absolute byte offset in the file.
    pub offsets: Vec<u64>,
    pub dtype: DType,
    /// Bytes of one stored row.
    pub row_bytes: usize,
    /// A step's rows of one table closer than this share a request (`groups`): the link's
    /// `Link::gap_bytes`.
    pub gap_bytes: usize,
}

impl RemoteTables {
    /// Requests for rows `ids` (sorted, distinct) of one table: index ranges into `ids`,
    /// ids closer than `max_gap_bytes` sharing one request, no request over MAX_SPAN.
    pub fn groups(&self, ids: &[u32], max_gap_bytes: usize) -> Vec<(usize, usize)> {
        let max_gap = max_gap_bytes / self.row_bytes.max(1);
        self.runs(ids, |i| (ids[i] - ids[i - 1]) as usize <= max_gap + 1)
    }

    /// `ids` cut into requests: id i joins its predecessor's request when `join(i)` says so
    /// and the request stays within MAX_SPAN.
    fn runs(&self, ids: &[u32], join: impl Fn(usize) -> bool) -> Vec<(usize, usize)> {
        let rb = self.row_bytes;
        let mut groups = Vec::new();
        let mut first = 0;
        for i in 1..=ids.len() {
            let split =
                i == ids.len() || !join(i) || (ids[i] - ids[first] + 1) as usize * rb > MAX_SPAN;
            if split {
                groups.push((first, i));
                first = i;
            }
        }
        groups
    }

    /// Requests for rows `ids` (sorted, distinct) of one table that read at most `extra_bytes`
    /// beyond the rows themselves, in as few requests as that allows: the smallest gaps
    /// between wanted rows are read through first (a bulk read, such as the warm-up, where
    /// `groups`' fixed gap would read most of the table). No request over MAX_SPAN.
    pub fn groups_within(&self, ids: &[u32], extra_bytes: u64) -> Vec<(usize, usize)> {
        let rb = self.row_bytes as u64;
        let gap = |i: usize| (ids[i] - ids[i - 1] - 1) as u64 * rb;
        let mut by_gap: Vec<usize> = (1..ids.len()).collect();
        by_gap.sort_by_key(|&i| gap(i));
        let mut join = vec![false; ids.len()];
        let mut spent = 0;
        for i in by_gap {
            spent += gap(i);
            if spent > extra_bytes {
                break;
            }
            join[i] = true;
        }
        self.runs(ids, |i| join[i])
    }

    /// The byte range (start, len) of one group of table `k`.
    pub fn span(&self, k: usize, ids: &[u32], (a, b): (usize, usize)) -> (u64, u64) {
        let rb = self.row_bytes as u64;
        let start = self.offsets[k] + ids[a] as u64 * rb;
        (start, (ids[b - 1] - ids[a] + 1) as u64 * rb)
    }

    /// Copy the rows out of each group's body into `out` (ids.len() x row_bytes) and check
    /// them for NaN; returns the bytes transferred.
    pub fn place(
        &self,
        k: usize,
        ids: &[u32],
        groups: &[(usize, usize)],
        bodies: Vec<Vec<u8>>,
        out: &mut [u8],
    ) -> Result<u64> {
        let rb = self.row_bytes;
        let mut transferred = 0u64;
        for (&(a, b), body) in groups.iter().zip(bodies) {
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
}

/// A remote memory file, opened for a model: its description (the tables' types and shapes;
/// the caller puts it in the model), the row store its rows come through, the training token
/// counts if the file has them, and what was measured of the link.
pub struct RemoteMemory {
    pub memory: TideMemory,
    pub rows: super::store::RowStore,
    pub token_counts: Option<Vec<u64>>,
    pub link: Link,
}

/// A remote memory file, opened: its memory (whose row store the caller points at a source
/// for `tables`), where the tables are, and the token counts if it has them.
pub(crate) struct Opened {
    pub memory: TideMemory,
    pub tables: RemoteTables,
    pub token_counts: Option<Vec<u64>>,
}

/// Read the header and the small tide.* tensors of the memory file behind `r` (the tables
/// stay remote) and check them as the loader checks a local memory file, except NaNs in the
/// tables, checked as rows arrive.
pub(crate) async fn open(r: &impl Ranges, config: &Config) -> Result<Opened> {
    let url = r.url();
    let bad = |msg: String| Error::Format {
        file: url.into(),
        msg,
    };
    let (head, file_len) = r.range(0, 8).await?;
    let n = header_len(url, &head, file_len)?;
    let (header, _) = r.range(8, n).await?;
    let h = parse_header(url, &header, file_len, false)?;
    let mut set = TensorSet::default();
    if let Some(m) = h.meta.metadata() {
        set.meta
            .extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let mut offsets = HashMap::new();
    // Only tide.* tensors: a model file with its memory inline also holds the backbone.
    for (name, t) in h
        .meta
        .tensors()
        .into_iter()
        .filter(|(n, _)| n.starts_with("tide."))
    {
        let (b, end) = (t.data_offsets.0 as u64, t.data_offsets.1 as u64);
        let at = h.data_start + b;
        let is_table = name.starts_with("tide.memory.") && name.ends_with(".rows");
        let (blob, range) = if is_table {
            // Only its type and shape: the rows stay remote.
            offsets.insert(name.clone(), at);
            (Blob::from_vec(Vec::new()), (0, 0))
        } else {
            if end - b > MAX_SMALL {
                return Err(bad(format!(
                    "tensor '{name}' is {} bytes: too big to fetch at load",
                    end - b
                )));
            }
            let bytes = if end > b {
                r.range(at, end - b).await?.0
            } else {
                Vec::new()
            };
            let len = bytes.len();
            (Blob::from_vec(bytes), (0, len))
        };
        insert_tensor(&mut set, name, t.dtype, t.shape.clone(), range, blob);
    }
    let Some(memory) = TideMemory::from_set(url, &set, config)? else {
        return Err(bad(
            "holds no TIDE memory (tide.k metadata absent or 0)".into()
        ));
    };
    let offsets = (0..memory.k)
        .map(|k| {
            let name = format!("tide.memory.{k}.rows");
            offsets
                .get(&name)
                .copied()
                .ok_or_else(|| bad(format!("tensor '{name}' is missing")))
        })
        .collect::<Result<Vec<u64>>>()?;
    let tables = RemoteTables {
        url: url.to_string(),
        offsets,
        dtype: memory.tables[0].dtype(),
        row_bytes: memory.row_bytes(),
        gap_bytes: MIN_GAP,
    };
    let token_counts = crate::model::safetensors::token_counts(url, &set, config.vocab)?;
    Ok(Opened {
        memory,
        tables,
        token_counts,
    })
}
