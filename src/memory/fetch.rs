//! Memory tables streamed in the browser: the memory file stays on the server and its rows
//! come with fetch() Range requests. fetch() is asynchronous and a step is not, so the rows a
//! step will read are fetched before it (`prefetch`) into the row store's cache, where the step
//! finds them; the source itself never reads (`FetchedRows::read_rows` is an error).
//!
//! Requests are coalesced as natively (remote.rs), up to MAX_IN_FLIGHT of a step's run side by
//! side, each has a timeout, and a failed one is tried again.
use std::sync::Arc;

use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use super::remote::{
    self, check_length, check_partial, fail, range_error, Failure, Ranges, RemoteMemory,
    RemoteTables,
};
use super::store::{put_table, RowSource, RowStore};
use crate::error::{Error, Result};
use crate::model::Config;

/// Requests of one step in flight at once (HTTP/1.1 gives a page 6 connections per host).
const MAX_IN_FLIGHT: usize = 6;

/// How the browser fetches rows.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub timeout_ms: u32,
    /// Tries after the first for a network error, a 5xx or a short body.
    pub retries: u32,
    /// Bytes between two wanted rows below which one request reads through the gap. None:
    /// measured when the memory is attached (`remote::choose_gap`).
    pub max_gap_bytes: Option<usize>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            timeout_ms: 20_000,
            retries: 2,
            max_gap_bytes: None,
        }
    }
}

struct FetchRanges<'a> {
    url: &'a str,
    opts: &'a FetchOptions,
}

fn js_text(v: &wasm_bindgen::JsValue) -> String {
    v.as_string()
        .or_else(|| {
            v.dyn_ref::<js_sys::Error>()
                .map(|e| String::from(e.message()))
        })
        .unwrap_or_else(|| format!("{v:?}"))
}

/// One try at bytes [start, start + len) of `url`.
async fn fetch_once(
    url: &str,
    start: u64,
    len: u64,
    timeout_ms: u32,
) -> std::result::Result<(Vec<u8>, u64), Failure> {
    let js = |e: wasm_bindgen::JsValue| fail(js_text(&e), false);
    let end = start + len - 1;
    let headers = web_sys::Headers::new().map_err(js)?;
    headers
        .set("Range", &format!("bytes={start}-{end}"))
        .map_err(js)?;
    let init = web_sys::RequestInit::new();
    init.set_method("GET");
    init.set_headers(&headers);
    // The HTTP cache could answer a range from a whole stored response: bypass it.
    init.set_cache(web_sys::RequestCache::NoStore);
    init.set_signal(Some(&web_sys::AbortSignal::timeout_with_u32(timeout_ms)));
    let req = web_sys::Request::new_with_str_and_init(url, &init).map_err(js)?;
    let global = js_sys::global();
    let promise = if let Some(w) = global.dyn_ref::<web_sys::WorkerGlobalScope>() {
        w.fetch_with_request(&req)
    } else if let Some(w) = global.dyn_ref::<web_sys::Window>() {
        w.fetch_with_request(&req)
    } else {
        return Err(fail("no fetch() in this context".into(), false));
    };
    let resp: web_sys::Response = JsFuture::from(promise)
        .await
        .map_err(|e| fail(format!("request failed: {}", js_text(&e)), true))?
        .dyn_into()
        .map_err(js)?;
    let cr = resp
        .headers()
        .get("content-range")
        .ok()
        .flatten()
        .unwrap_or_default();
    let total = check_partial(resp.status(), &cr, start, len)?;
    let buf = JsFuture::from(resp.array_buffer().map_err(js)?)
        .await
        .map_err(|e| fail(format!("reading the body: {}", js_text(&e)), true))?;
    let body = js_sys::Uint8Array::new(&buf).to_vec();
    check_length(&body, len)?;
    Ok((body, total))
}

impl Ranges for FetchRanges<'_> {
    fn url(&self) -> &str {
        self.url
    }

    async fn range(&self, start: u64, len: u64) -> Result<(Vec<u8>, u64)> {
        let mut tries = 0;
        loop {
            match fetch_once(self.url, start, len, self.opts.timeout_ms).await {
                Ok(b) => return Ok(b),
                Err(f) if f.retry && tries < self.opts.retries => tries += 1,
                Err(f) => return Err(range_error(self.url, start, len, tries + 1, f)),
            }
        }
    }
}

/// Tables that stay on the server; `Fetcher::prefetch` brings their rows into the cache.
struct FetchedRows {
    url: String,
}

impl RowSource for FetchedRows {
    fn read_rows(&self, k: usize, _ids: &[u32], _out: &mut [u8]) -> Result<u64> {
        Err(Error::Input(format!(
            "{}: rows of table {k} were not fetched before the step",
            self.url
        )))
    }

    fn name(&self) -> String {
        self.url.clone()
    }
}

/// What fetches a streamed memory's rows before each step: where the tables are on the
/// server and how to ask for them. The row store itself knows only that its source cannot
/// read during a step.
pub struct Fetcher {
    tables: RemoteTables,
    opts: FetchOptions,
}

/// Open the memory file at `url` for a model of `config`: the header and small tensors now,
/// the rows as steps need them (`Fetcher::prefetch` puts them in the returned row store).
/// Without a gap in `opts`, four requests measure the link to choose it.
pub async fn open_memory_fetch(
    config: &Config,
    url: &str,
    opts: &FetchOptions,
) -> Result<(RemoteMemory, Fetcher)> {
    let reader = FetchRanges { url, opts };
    let opened = remote::open(&reader, config).await?;
    let mut tables = opened.tables;
    let gap = opts.max_gap_bytes;
    let link = remote::choose_gap(&reader, &tables, config.vocab, gap, MAX_IN_FLIGHT).await?;
    tables.gap_bytes = link.gap_bytes;
    let source = FetchedRows {
        url: url.to_string(),
    };
    let (k, rb) = (opened.memory.k, tables.row_bytes);
    let remote = RemoteMemory {
        rows: RowStore::new(Arc::new(source), k, config.vocab, rb),
        memory: opened.memory,
        token_counts: opened.token_counts,
        link,
    };
    let opts = opts.clone();
    Ok((remote, Fetcher { tables, opts }))
}

impl Fetcher {
    /// Fetch the rows of `tokens` that `store` (the memory this fetcher was attached with)
    /// lacks, and put them in its cache.
    pub async fn prefetch(&self, store: &RowStore, tokens: &[u32]) -> Result<()> {
        prefetch(&self.tables, store, tokens, &self.opts).await
    }
}

async fn prefetch(
    t: &RemoteTables,
    store: &RowStore,
    tokens: &[u32],
    opts: &FetchOptions,
) -> Result<()> {
    let ids = store.missing(tokens)?;
    if ids.is_empty() {
        return Ok(());
    }
    let (rb, k) = (t.row_bytes, t.offsets.len());
    let reader = FetchRanges { url: &t.url, opts };
    let groups = t.groups(&ids, t.gap_bytes);
    let ids_ref = &ids;
    let spans: Vec<(u64, u64)> = (0..k)
        .flat_map(|b| groups.iter().map(move |&g| t.span(b, ids_ref, g)))
        .collect();
    // At most MAX_IN_FLIGHT at a time: a request's timeout runs from its start, and the
    // browser queues what its few connections per host cannot take.
    let mut all = Vec::with_capacity(spans.len());
    for batch in spans.chunks(MAX_IN_FLIGHT) {
        let got = futures_util::future::join_all(
            batch.iter().map(|&(start, len)| reader.range(start, len)),
        )
        .await;
        all.extend(got);
    }
    let mut bodies = all.into_iter();
    let mut rows: Vec<Box<[u8]>> = ids.iter().map(|_| vec![0u8; k * rb].into()).collect();
    let mut scratch = vec![0u8; ids.len() * rb];
    let mut bytes = 0;
    for b in 0..k {
        let mine = bodies
            .by_ref()
            .take(groups.len())
            .map(|r| r.map(|(body, _)| body))
            .collect::<Result<Vec<_>>>()?;
        bytes += t.place(b, &ids, &groups, mine, &mut scratch)?;
        put_table(&mut rows, b, &scratch);
    }
    store.insert(&ids, rows, bytes)
}
