//! Memory tables in a remote memory file, read with HTTP Range requests (`--memory
//! http://HOST:PORT/PATH` or `https://...`, e.g. a file `tide serve` offers). HTTPS is rustls,
//! trusting Mozilla's roots or, when given, only the caller's PEM certificates. The header and
//! the small tensors (gammas, routers, SVD bases, token counts) are fetched when the memory is
//! opened; the tables row by row as steps need them, through the row store's cache.
//!
//! A step's rows are coalesced: ids of one table closer than a gap share a request; the gap
//! is what the link carries in one round trip shared among the requests in flight, measured
//! when opened unless given. All K tables' requests of a step share one queue, at most
//! `max_in_flight` running at once; a failed request is retried. A response that
//! is not 206 with exactly the Content-Range asked for, or is short, stops the step with an
//! error naming the URL: a row of garbage is never used.
use std::sync::Arc;
use std::time::Duration;

use super::remote::{
    self, check_length, check_partial, fail, range_error, Failure, Ranges, RemoteTables,
};
pub use super::remote::{gap_for, Link, RemoteMemory};
use super::store::{RowSource, RowStore};
use crate::error::{Error, Result};
use crate::model::Config;

/// How remote rows are fetched.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Whole-request timeout (connect, send, read).
    pub timeout: Duration,
    /// Tries after the first for a transport error, a 5xx or a short body.
    pub retries: u32,
    pub max_in_flight: usize,
    /// Bytes between two wanted rows below which one request reads through the gap. None:
    /// measured when the memory is attached: what the link carries in one round trip over
    /// `max_in_flight` (`gap_for`), as one more request costs about that share of a round trip.
    pub max_gap_bytes: Option<usize>,
    /// A bulk read (the warm-up) reads at most this many bytes per byte of rows it wants
    /// (read-through gaps included), in as few requests as that allows (at least 1). None:
    /// the steps' rule (`max_gap_bytes`), fewest seconds when the gap suits the link, though
    /// a warm-up's scattered rows then make it read most of the table.
    pub bulk_read_factor: Option<f64>,
    /// For https:// URLs: PEM certificates to trust instead of Mozilla's roots (a private CA,
    /// or a server's self-signed certificate).
    pub ca_pem: Option<Vec<u8>>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            timeout: Duration::from_secs(10),
            retries: 2,
            max_in_flight: 8,
            max_gap_bytes: None,
            bulk_read_factor: None,
            ca_pem: None,
        }
    }
}

pub struct HttpTables {
    tables: RemoteTables,
    agent: ureq::Agent,
    opts: HttpOptions,
}

impl HttpTables {
    /// TLS for https:// URLs: rustls (feature `https`, on by default), trusting Mozilla's
    /// roots or only `ca_pem`'s certificates.
    #[cfg(feature = "https")]
    fn tls_config(opts: &HttpOptions, url: &str) -> Result<ureq::tls::TlsConfig> {
        use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
        let mut tls = TlsConfig::builder();
        if let Some(pem) = &opts.ca_pem {
            let bad = |why: String| Error::Input(format!("{url}: the CA certificates: {why}"));
            let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(pem)
                .filter_map(|item| match item {
                    Ok(PemItem::Certificate(c)) => Some(Ok(c)),
                    Ok(_) => None,
                    Err(e) => Some(Err(bad(e.to_string()))),
                })
                .collect::<Result<_>>()?;
            if certs.is_empty() {
                return Err(bad("no PEM certificate in them".into()));
            }
            tls = tls.root_certs(RootCerts::new_with_certs(&certs));
        }
        Ok(tls.build())
    }

    fn new_agent(opts: &HttpOptions, url: &str) -> Result<ureq::Agent> {
        // Keep a connection per request in flight alive between steps (ureq keeps 3 per host
        // by default: the rest would be opened afresh every step, each with a TLS handshake).
        let keep = opts.max_in_flight.max(1);
        let config = ureq::Agent::config_builder()
            .max_idle_connections_per_host(keep)
            .max_idle_connections(keep.max(10))
            .timeout_global(Some(opts.timeout))
            .http_status_as_error(false)
            .https_only(url.starts_with("https://"));
        #[cfg(feature = "https")]
        let config = config.tls_config(Self::tls_config(opts, url)?);
        // A build without the `https` feature (no rustls: e.g. checking a target that lacks
        // the C toolchain ring needs) refuses https:// URLs by name.
        #[cfg(not(feature = "https"))]
        if url.starts_with("https://") {
            return Err(Error::Input(format!(
                "{url}: this build of tide has no HTTPS (cargo feature `https`)"
            )));
        }
        Ok(config.build().into())
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
        let cr = resp
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let total = check_partial(resp.status().as_u16(), &cr, start, len)?;
        let body = resp
            .body_mut()
            .with_config()
            .limit(len + 1)
            .read_to_vec()
            .map_err(|e| fail(format!("reading the body: {e}"), true))?;
        check_length(&body, len)?;
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
                Err(f) => return Err(range_error(url, start, len, tries + 1, f)),
            }
        }
    }
}

/// The blocking reader, for `remote::open`.
struct Blocking<'a> {
    agent: &'a ureq::Agent,
    url: &'a str,
    opts: &'a HttpOptions,
}

impl Ranges for Blocking<'_> {
    fn url(&self) -> &str {
        self.url
    }

    async fn range(&self, start: u64, len: u64) -> Result<(Vec<u8>, u64)> {
        HttpTables::range(self.agent, self.url, self.opts, start, len)
    }
}

impl HttpTables {
    /// A read's requests for rows `ids` of one table (the same for every table): the steps'
    /// gap, or for a bulk read with `bulk_read_factor`, the bytes it may read beyond the rows.
    fn groups(&self, ids: &[u32], bulk: bool) -> Vec<(usize, usize)> {
        match self.opts.bulk_read_factor {
            Some(factor) if bulk => {
                let rows = (ids.len() * self.tables.row_bytes) as f64;
                let extra = (rows * (factor.max(1.0) - 1.0)) as u64;
                self.tables.groups_within(ids, extra)
            }
            _ => self.tables.groups(ids, self.tables.gap_bytes),
        }
    }

    /// Rows `ids` of the tables `tables`, one after the other in `out`, all their requests in
    /// one queue.
    fn read_tables_from(
        &self,
        tables: std::ops::Range<usize>,
        ids: &[u32],
        bulk: bool,
        out: &mut [u8],
    ) -> Result<u64> {
        if ids.is_empty() || tables.is_empty() {
            return Ok(0);
        }
        let t = &self.tables;
        let groups = self.groups(ids, bulk);
        let spans: Vec<_> = (tables.clone())
            .flat_map(|b| groups.iter().map(move |&g| t.span(b, ids, g)))
            .collect();
        let mut bodies = self.fetch_spans(&spans)?.into_iter();
        let mut bytes = 0;
        for (b, o) in tables.zip(out.chunks_exact_mut(ids.len() * t.row_bytes)) {
            let mine: Vec<Vec<u8>> = bodies.by_ref().take(groups.len()).collect();
            bytes += t.place(b, ids, &groups, mine, o)?;
        }
        Ok(bytes)
    }

    /// The bodies of byte ranges `spans`, in order, `max_in_flight` requests at a time.
    fn fetch_spans(&self, spans: &[(u64, u64)]) -> Result<Vec<Vec<u8>>> {
        let t = &self.tables;
        let fetch = |&(start, len): &(u64, u64)| {
            Self::range(&self.agent, &t.url, &self.opts, start, len).map(|r| r.0)
        };
        let mut bodies: Vec<Result<Vec<u8>>> = Vec::with_capacity(spans.len());
        for batch in spans.chunks(self.opts.max_in_flight.max(1)) {
            if batch.len() == 1 {
                bodies.push(fetch(&batch[0]));
                continue;
            }
            std::thread::scope(|s| {
                let hs: Vec<_> = batch.iter().map(|g| s.spawn(move || fetch(g))).collect();
                for h in hs {
                    bodies.push(h.join().unwrap_or_else(|_| {
                        Err(Error::Input(format!("{}: a fetch thread panicked", t.url)))
                    }));
                }
            });
        }
        bodies.into_iter().collect()
    }
}

impl RowSource for HttpTables {
    fn read_rows(&self, k: usize, ids: &[u32], out: &mut [u8]) -> Result<u64> {
        self.read_tables_from(k..k + 1, ids, false, out)
    }

    fn read_rows_bulk(&self, k: usize, ids: &[u32], out: &mut [u8]) -> Result<u64> {
        self.read_tables_from(k..k + 1, ids, true, out)
    }

    /// Every table's requests in one queue, `max_in_flight` at a time: a step that misses a
    /// token waits K / max_in_flight round trips, not K.
    fn read_tables(&self, k: usize, ids: &[u32], bulk: bool, out: &mut [u8]) -> Result<u64> {
        self.read_tables_from(0..k, ids, bulk, out)
    }

    fn name(&self) -> String {
        self.tables.url.clone()
    }
}

/// Open the memory file at `url` for a model of `config`: the header and small tensors now,
/// the table rows on demand through the returned row store. Everything the loader checks for
/// a local memory file is checked here too, except NaNs in the tables, checked as rows
/// arrive. Without a gap in `opts`, four requests measure the link to choose it.
pub fn open_memory_url(config: &Config, url: &str, opts: &HttpOptions) -> Result<RemoteMemory> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(Error::Input(format!(
            "{url}: a memory URL must start with http:// or https://"
        )));
    }
    let agent = HttpTables::new_agent(opts, url)?;
    let reader = Blocking {
        agent: &agent,
        url,
        opts,
    };
    let opened = pollster::block_on(remote::open(&reader, config))?;
    let (t, vocab, given) = (&opened.tables, config.vocab, opts.max_gap_bytes);
    let in_flight = opts.max_in_flight;
    let link = pollster::block_on(remote::choose_gap(&reader, t, vocab, given, in_flight))?;
    let mut tables = opened.tables;
    tables.gap_bytes = link.gap_bytes;
    let source = HttpTables {
        tables,
        agent,
        opts: opts.clone(),
    };
    let (k, row_bytes) = (opened.memory.k, source.tables.row_bytes);
    Ok(RemoteMemory {
        rows: RowStore::new(Arc::new(source), k, vocab, row_bytes),
        memory: opened.memory,
        token_counts: opened.token_counts,
        link,
    })
}
