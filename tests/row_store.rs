//! The memory row store: rows read from the memory-mapped file, over HTTP Range, through a
//! cache small enough to evict at every step, warmed or not, or from tables resident on the
//! GPU, plain or SVD, all give the CPU reference's logits; the counters add up; HTTP failures (404, 500, a short body, a wrong
//! Content-Range, a server that ignores Range, a timeout, a truncated file) are clear errors
//! that stop the step, and the run goes on once the server is well again; rows fetched ahead
//! of a step (the browser's way) are counted once; HTTPS works with the caller's CA and refuses
//! a server that CA did not sign; a warm-up over HTTP reads within its byte bound, and fills
//! only the cache's free room, beside the steps.
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{assert_close, cpu_logits, cpu_logits_with, gpu, json_ids as ids, repo};
use tide_gpu::cpu::CpuModel;
use tide_gpu::decoder::{DecoderOptions, GpuDecoder, KernelSet};
use tide_gpu::memory::compress::{compress, write_memory_file, CompressOptions, RankRule};
use tide_gpu::memory::http::{gap_for, open_memory_url, HttpOptions, Link};
use tide_gpu::memory::store::{by_frequency, MemoryStats};
use tide_gpu::memory::MemoryRows;
use tide_gpu::model::{attach_memory, load, DType, Model};

/// How the test server answers.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Ok,
    NotFound,
    ServerError,
    /// 206 with the right Content-Range but half the body (Content-Length says half).
    Short,
    /// 206 whose Content-Range starts one byte later than asked.
    WrongRange,
    /// 200 with the whole file.
    IgnoreRange,
    /// Reads the request and never answers.
    Hang,
    /// As Ok, 30 ms late: a link with a long round trip.
    Slow,
}

struct Server {
    url: String,
    mode: Arc<Mutex<Mode>>,
    /// Connections taken (`answer` serves one request each).
    requests: Arc<AtomicUsize>,
    /// The most connections open at once.
    peak: Arc<AtomicUsize>,
}

impl Server {
    fn set(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
    }
}

fn answer<S: Read + Write>(mut s: S, file: &[u8], mode: Mode) {
    let mut range = None;
    let mut r = BufReader::new(&mut s);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
            let (a, b) = v.trim().split_once('-').unwrap();
            range = Some((a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()));
        }
    }
    let head = |status: &str, extra: &str, len: usize| {
        format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n{extra}\r\n")
    };
    drop(r);
    let (a, b) = range.unwrap_or((0, file.len() - 1));
    let b = b.min(file.len() - 1);
    let body = &file[a..=b];
    let cr = |x: usize, y: usize| format!("Content-Range: bytes {x}-{y}/{}\r\n", file.len());
    let out: Vec<u8> = match mode {
        Mode::Hang => {
            std::thread::sleep(Duration::from_secs(3));
            return;
        }
        Mode::NotFound => head("404 Not Found", "", 0).into_bytes(),
        Mode::ServerError => head("500 Internal Server Error", "", 0).into_bytes(),
        Mode::IgnoreRange => [head("200 OK", "", file.len()).as_bytes(), file].concat(),
        Mode::Slow => {
            std::thread::sleep(Duration::from_millis(30));
            return answer_bytes(
                s,
                &[
                    head("206 Partial Content", &cr(a, b), body.len()).as_bytes(),
                    body,
                ]
                .concat(),
            );
        }
        Mode::Ok => [
            head("206 Partial Content", &cr(a, b), body.len()).as_bytes(),
            body,
        ]
        .concat(),
        Mode::WrongRange => [
            head("206 Partial Content", &cr(a + 1, b + 1), body.len()).as_bytes(),
            body,
        ]
        .concat(),
        Mode::Short => {
            let half = &body[..body.len() / 2];
            [
                head("206 Partial Content", &cr(a, b), half.len()).as_bytes(),
                half,
            ]
            .concat()
        }
    };
    answer_bytes(s, &out);
}

fn answer_bytes<S: Write>(mut s: S, out: &[u8]) {
    let _ = s.write_all(out);
    let _ = s.flush();
}

/// Serve `file` on 127.0.0.1 (any free port) until the test process ends.
fn serve(file: Vec<u8>) -> Server {
    serve_with(file, None)
}

/// The TLS fixtures (tests/fixtures/tls/make.sh).
fn tls_fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo().join("tests/fixtures/tls").join(name)).unwrap()
}

/// `serve`, over TLS with the fixture's certificate for 127.0.0.1 (signed by its ca.pem).
fn serve_tls(file: Vec<u8>) -> Server {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(&tls_fixture("cert.pem"))
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(&tls_fixture("key.pem")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    serve_with(file, Some(Arc::new(config)))
}

fn serve_with(file: Vec<u8>, tls: Option<Arc<rustls::ServerConfig>>) -> Server {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}/memory.safetensors", l.local_addr().unwrap());
    let mode = Arc::new(Mutex::new(Mode::Ok));
    let requests = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let (m, n, file) = (mode.clone(), requests.clone(), Arc::new(file));
    let most = peak.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            n.fetch_add(1, Ordering::SeqCst);
            let (file, mode, tls) = (file.clone(), *m.lock().unwrap(), tls.clone());
            let (open, most) = (open.clone(), most.clone());
            most.fetch_max(open.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            std::thread::spawn(move || {
                match tls {
                    None => answer(s, &file, mode),
                    Some(config) => {
                        // A client that refuses the certificate ends the handshake.
                        if let Ok(conn) = rustls::ServerConnection::new(config) {
                            answer(rustls::StreamOwned::new(conn, s), &file, mode);
                        }
                    }
                }
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Server {
        url,
        mode,
        requests,
        peak,
    }
}

fn tiny() -> PathBuf {
    repo().join("tests/fixtures/tiny_tide")
}

/// The fixture's memory compressed (`dtype`, optional SVD) into a memory file's bytes.
fn memory_file(dtype: DType, svd: Option<RankRule>, tag: &str) -> (PathBuf, Vec<u8>) {
    let m = load(&tiny()).unwrap();
    let mem = m.memory.as_ref().unwrap();
    let opts = CompressOptions {
        dtype,
        svd,
        basis_f16: true,
    };
    let c = compress(mem, &opts, &mut |_| {}).unwrap();
    let p = std::env::temp_dir().join(format!(
        "tide-rows-{}-{tag}.safetensors",
        std::process::id()
    ));
    // Token counts make the warm-up order: descending ids, so the most frequent are the last.
    let counts: Vec<u64> = (0..m.config.vocab as u64).collect();
    write_memory_file(mem, &c, dtype, Some(&counts), &p).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    (p, bytes)
}

/// A fixed gap, so that the request counts below are exact (the measured one depends on timing).
fn quick() -> HttpOptions {
    HttpOptions {
        timeout: Duration::from_millis(500),
        max_gap_bytes: Some(64 << 10),
        ..Default::default()
    }
}

/// A model and the row stores its memory is read through, as a front end holds them.
struct Loaded {
    m: Model,
    rows: MemoryRows,
}

impl std::ops::Deref for Loaded {
    type Target = Model;
    fn deref(&self) -> &Model {
        &self.m
    }
}

/// The tiny model with the memory file at `path`, read through stores over the mapped file.
fn local_model(path: &std::path::Path) -> Loaded {
    let mut m = load(&tiny()).unwrap();
    attach_memory(&mut m, path).unwrap();
    let rows = MemoryRows::local(&m);
    Loaded { m, rows }
}

/// The tiny model with its memory from `url` (as the CLI opens `--memory URL`).
fn attach_url(url: &str, opts: &HttpOptions) -> tide_gpu::Result<(Loaded, Link)> {
    let mut m = load(&tiny()).unwrap();
    let r = open_memory_url(&m.config, url, opts)?;
    m.memory = Some(r.memory);
    m.token_counts = r.token_counts.or(m.token_counts);
    let rows = MemoryRows {
        tide: Some(r.rows),
        engram: Vec::new(),
    };
    Ok((Loaded { m, rows }, r.link))
}

fn decoder(m: &Loaded) -> GpuDecoder {
    decoder_with(m, false)
}

fn decoder_with(m: &Loaded, memory_resident: bool) -> GpuDecoder {
    let opts = DecoderOptions {
        ctx_len: 64,
        max_batch: 16,
        kernels: KernelSet::Gpu,
        token_by_token_upto: 0,
        memory_resident,
        ..Default::default()
    };
    GpuDecoder::with_rows(gpu(), &m.m, &m.rows, opts).unwrap()
}

fn seq() -> Vec<u32> {
    let g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tiny().join("golden.json")).unwrap())
            .unwrap();
    // The fixture's sequence twice: the second pass re-reads the first's rows.
    let s = ids(&g["seqs"]["model.safetensors"][0]["ids"]);
    [s.clone(), s].concat()
}

/// The GPU's logits, the prompt as a batch and then token by token, against `want`.
fn check_gpu(tag: &str, m: &Loaded, seq: &[u32], want: &[f32]) {
    check_gpu_with(tag, m, seq, want, false)
}

fn check_gpu_with(tag: &str, m: &Loaded, seq: &[u32], want: &[f32], resident: bool) {
    let mut dec = decoder_with(m, resident);
    let v = m.config.vocab;
    let got = dec.feed_all(seq).unwrap();
    assert_close(&format!("{tag}: batch"), &got, want, 2e-4);
    dec.reset();
    for (t, &tok) in seq.iter().enumerate() {
        dec.feed(&[tok]).unwrap();
        let l = dec.logits().unwrap();
        assert_close(
            &format!("{tag}: token {t}"),
            &l,
            &want[t * v..(t + 1) * v],
            2e-4,
        );
    }
}

fn stats(m: &Loaded) -> MemoryStats {
    m.rows.tide.as_ref().unwrap().stats()
}

#[test]
fn every_row_path_gives_the_cpu_references_logits() {
    let seq = seq();
    for (dtype, svd) in [(DType::Q4_1, None), (DType::Q8_0, Some(RankRule::Rank(40)))] {
        let tag = format!("{dtype:?} svd={svd:?}");
        let (path, bytes) = memory_file(dtype, svd, &format!("{dtype:?}"));
        let local = |cache_tokens: usize| {
            let m = local_model(&path);
            let store = m.rows.tide.as_ref().unwrap();
            store.set_cache_bytes(cache_tokens * store.token_bytes());
            m
        };
        // The reference: the CPU on the mapped file, no cache.
        let want = cpu_logits(&local(0), &seq);
        let k = 3u64;
        let (n, distinct) = (seq.len() as u64, {
            let mut d = seq.clone();
            d.sort();
            d.dedup();
            d.len() as u64
        });

        // The memory-mapped file, without a cache: every row is read from the file.
        let m = local(0);
        check_gpu(&format!("{tag} mmap"), &m, &seq, &want);
        let s = stats(&m);
        assert_eq!(s.rows_requested, 2 * n * k, "{s:?}"); // batch + token by token
        assert_eq!(s.resident_bytes, 0);

        // Resident: the tables copied to the GPU whole, rows copied there per step.
        let m = local(0);
        check_gpu_with(&format!("{tag} resident"), &m, &seq, &want, true);
        let s = stats(&m);
        let tables = m.rows.tide.as_ref().unwrap().table_bytes();
        assert_eq!((s.misses, s.bytes_fetched), (0, 0), "{s:?}");
        assert_eq!(s.hits, 2 * n * k);
        assert!(
            s.resident_bytes >= tables,
            "{s:?} for {tables} bytes of tables"
        );

        // A cache of one token: evictions at nearly every step, same logits.
        let m = local(1);
        check_gpu(&format!("{tag} cache of 1"), &m, &seq, &want);
        let s = stats(&m);
        let tb = m.rows.tide.as_ref().unwrap().token_bytes() as u64;
        assert_eq!(s.resident_bytes, tb, "{s:?}");
        assert_eq!(s.hits + s.misses, s.rows_requested);
        assert!(s.misses > distinct * k, "evictions force re-reads: {s:?}");

        // A cache big enough for everything: after the batch, token by token only hits.
        let m = local(96);
        check_gpu(&format!("{tag} cache of all"), &m, &seq, &want);
        let s = stats(&m);
        assert_eq!(s.misses, distinct * k, "{s:?}");
        assert_eq!(s.bytes_fetched, distinct * k * tb / k);

        // Over HTTP Range, cold and through a warmed cache.
        let srv = serve(bytes);
        for cache_tokens in [0, 40] {
            let (m, _) = attach_url(&srv.url, &quick()).unwrap();
            let store = m.rows.tide.clone().unwrap();
            store.set_cache_bytes(cache_tokens * store.token_bytes());
            let counts = m.token_counts.clone().unwrap();
            let (warmed, read) = store.warm(&by_frequency(&counts), 16, &mut |_| {}).unwrap();
            assert_eq!(warmed, cache_tokens);
            assert_eq!(read, cache_tokens as u64 * store.token_bytes() as u64);
            let before = srv.requests.load(Ordering::SeqCst);
            check_gpu(
                &format!("{tag} HTTP, cache {cache_tokens}"),
                &m,
                &seq,
                &want,
            );
            let s = stats(&m);
            assert_eq!(s.rows_requested, 2 * n * k, "{s:?}");
            assert!(
                s.bytes_fetched > 0 && s.bytes_fetched <= s.misses * tb / k * 9,
                "{s:?}"
            );
            // Coalesced: the batch's rows of a table come in far fewer requests than rows.
            let reqs = srv.requests.load(Ordering::SeqCst) - before;
            assert!(reqs as u64 <= s.misses, "{reqs} requests for {s:?}");
            // The CPU reference reads through the same store and agrees.
            let cpu = cpu_logits_with(&m.m, m.rows.clone(), &seq);
            assert_close(&format!("{tag} HTTP CPU"), &cpu, &want, 1e-5);
        }
        let _ = std::fs::remove_file(&path);
    }
}

#[test]
fn http_failures_are_clear_errors_that_stop_the_step() {
    let (path, bytes) = memory_file(DType::Q4_1, None, "fail");
    let _ = std::fs::remove_file(&path);
    let srv = serve(bytes.clone());
    let cases = [
        (Mode::NotFound, "HTTP 404"),
        (Mode::ServerError, "HTTP 500"),
        (Mode::Short, "short body"),
        (Mode::WrongRange, "wrong Content-Range"),
        (Mode::IgnoreRange, "ignored the Range request"),
        (Mode::Hang, "timeout"),
    ];
    // At attach time.
    for (mode, want) in cases {
        srv.set(mode);
        let e = attach_url(&srv.url, &quick())
            .map(|_| ())
            .expect_err("a failing server must not attach")
            .to_string();
        assert!(e.contains(&srv.url) && e.contains(want), "{mode:?}: {e}");
    }
    // Mid-run: the step fails with the reason, then works again once the server does.
    srv.set(Mode::Ok);
    let (m, _) = attach_url(&srv.url, &quick()).unwrap();
    let mut dec = decoder(&m);
    let seq = seq();
    dec.feed(&seq[..4]).unwrap();
    let good = dec.logits().unwrap();
    for (mode, want) in cases {
        srv.set(mode);
        let e = dec
            .feed(&[seq[4]])
            .expect_err("a step without its rows must fail");
        let e = e.to_string();
        assert!(
            e.contains(&srv.url) && e.contains(want),
            "{mode:?} mid-run: {e}"
        );
        let cm = Arc::new(CpuModel::with_rows(&m.m, m.rows.clone()));
        let mut s = cm.session(64);
        let e = s
            .feed(&[seq[4]])
            .expect_err("the CPU reference fails the same way");
        assert!(e.to_string().contains(want), "{mode:?} CPU: {e}");
    }
    srv.set(Mode::Ok);
    dec.reset();
    dec.feed(&seq[..4]).unwrap();
    assert_close("after recovery", &dec.logits().unwrap(), &good, 1e-6);

    // A file cut short: its header promises more than the server has.
    let cut = serve(bytes[..bytes.len() - 100].to_vec());
    let e = attach_url(&cut.url, &quick())
        .map(|_| ())
        .expect_err("truncated")
        .to_string();
    assert!(e.contains("truncated") && e.contains("tide.memory."), "{e}");
}

/// A Q4_1 memory file's bytes, the test sequence, and the CPU reference's logits on it (read
/// from the mapped file).
fn q4_reference(tag: &str) -> (Vec<u8>, Vec<u32>, Vec<f32>) {
    let (path, bytes) = memory_file(DType::Q4_1, None, tag);
    let mut m = load(&tiny()).unwrap();
    attach_memory(&mut m, &path).unwrap();
    let seq = seq();
    let want = cpu_logits(&m, &seq);
    let _ = std::fs::remove_file(&path);
    (bytes, seq, want)
}

/// HTTPS: with the caller's CA the rows arrive and the logits are the reference's; without it
/// (Mozilla's roots), or with another CA, the server is refused at attach with an error naming
/// the URL and the certificate; a CA file without a certificate is refused too.
#[test]
#[cfg(feature = "https")]
fn https_trusts_only_the_callers_ca() {
    let (bytes, seq, want) = q4_reference("tls");

    let srv = serve_tls(bytes);
    let with_ca = |pem: Option<Vec<u8>>| HttpOptions {
        ca_pem: pem,
        ..quick()
    };
    let (m, _) = attach_url(&srv.url, &with_ca(Some(tls_fixture("ca.pem")))).unwrap();
    check_gpu("https", &m, &seq, &want);
    assert!(stats(&m).bytes_fetched > 0);

    for (pem, want) in [
        (None, "certificate"),
        (Some(tls_fixture("other.pem")), "certificate"),
        (Some(b"not a certificate".to_vec()), "no PEM certificate"),
    ] {
        let e = attach_url(&srv.url, &with_ca(pem))
            .map(|_| ())
            .expect_err("an untrusted server must not attach")
            .to_string();
        assert!(e.contains(&srv.url) && e.contains(want), "{e}");
    }
}

/// A warm-up over HTTP reads through the smallest gaps between its rows first, and only as
/// far as `bulk_read_factor` allows: here 11 rows per table with gaps of 0 (x6), 7, 18, 26 and
/// 29 rows. Factor 2 (11 rows to spare) reads through the zero gaps and the 7 (not the 18):
/// 4 requests of 18 rows in all per table; factor 1 reads only through the zero gaps (5
/// requests); factor 5 (44 to spare) through the 7 and the 18 (3 requests, 36 rows). Then the
/// steps give the reference's logits.
#[test]
fn warm_up_over_http_reads_a_bounded_share() {
    let (bytes, seq, want) = q4_reference("warm");
    let srv = serve(bytes);
    let order = [62u32, 0, 90, 11, 1, 60, 2, 30, 10, 61, 63];
    // (factor, requests per table, rows read per table)
    for (factor, reqs, rows) in [(2.0, 4, 18), (1.0, 5, 11), (5.0, 3, 36)] {
        let opts = HttpOptions {
            bulk_read_factor: Some(factor),
            ..quick()
        };
        let (m, _) = attach_url(&srv.url, &opts).unwrap();
        let store = m.rows.tide.clone().unwrap();
        let (tb, k) = (store.token_bytes() as u64, 3);
        store.set_cache_bytes(order.len() * tb as usize);
        let before = srv.requests.load(Ordering::SeqCst);
        let (n, read) = store.warm(&order, 64, &mut |_| {}).unwrap();
        let got = srv.requests.load(Ordering::SeqCst) - before;
        assert_eq!(n, order.len());
        assert_eq!(got, k * reqs, "factor {factor}: requests");
        assert_eq!(read, rows * tb, "factor {factor}: bytes read");
        assert!(read as f64 <= factor * (n as u64 * tb) as f64);
        check_gpu(
            &format!("after a warm-up, factor {factor}"),
            &m,
            &seq,
            &want,
        );
    }
}

/// The warm-up fills only the cache's free room, below what steps have used: with room for 4
/// tokens and token 50 read by a step, warming [1, 2, 3, 4, 6] caches 1, 2 and 3; the next
/// step's new token then evicts 3 (the least wanted), not 50 nor 1. And a warm-up on its own
/// thread (how the CLI warms a remote cache) beside the steps leaves their logits the
/// reference's and the counters adding up.
#[test]
fn the_warm_up_fills_free_room_beside_the_steps() {
    let (bytes, seq, want) = q4_reference("beside");

    let m = load(&tiny()).unwrap();
    let store = MemoryRows::local(&m).tide.unwrap();
    store.set_cache_bytes(4 * store.token_bytes());
    let mut out = Vec::new();
    store.gather(&[50], &mut out).unwrap();
    assert_eq!(store.warm(&[1, 2, 3, 4, 6], 2, &mut |_| {}).unwrap().0, 3);
    store.gather(&[7], &mut out).unwrap();
    let cached = |t: u32| store.missing(&[t]).unwrap().is_empty();
    assert!(cached(50) && cached(1) && cached(2) && !cached(3) && cached(7));

    let srv = serve(bytes);
    let (m, _) = attach_url(&srv.url, &quick()).unwrap();
    let store = m.rows.tide.clone().unwrap();
    store.set_cache_bytes(40 * store.token_bytes());
    let counts = m.token_counts.clone().unwrap();
    let warming = {
        let store = store.clone();
        std::thread::spawn(move || store.warm(&by_frequency(&counts), 4, &mut |_| {}))
    };
    check_gpu("steps beside a warm-up", &m, &seq, &want);
    let (n, _) = warming.join().unwrap().unwrap();
    assert!(n <= 40);
    let s = stats(&m);
    assert_eq!(s.hits + s.misses, s.rows_requested, "{s:?}");
    assert_eq!(s.resident_bytes, 40 * store.token_bytes() as u64, "{s:?}");
}

/// A memory model prefills in batches small enough for its decoded rows
/// (`memory_rows_budget`): the tiny model's 3 x 64 rows take 768 bytes a token, so a budget
/// of 10 tokens' rows halves a batch of 16 tokens to 8, and its 24-token prompt runs as
/// three batches with the CPU reference's logits.
#[test]
fn memory_models_prefill_in_batches_their_rows_fit() {
    let m = load(&tiny()).unwrap();
    let seq = seq();
    let want = cpu_logits(&m, &seq);
    let opts = |budget| DecoderOptions {
        ctx_len: 64,
        max_batch: 16,
        kernels: KernelSet::Gpu,
        token_by_token_upto: 0,
        memory_rows_budget: budget,
        ..Default::default()
    };
    let whole = GpuDecoder::new(gpu(), &m, opts(usize::MAX)).unwrap();
    assert_eq!(whole.opts.max_batch, 16);
    let mut dec = GpuDecoder::new(gpu(), &m, opts(10 * 3 * 64 * 4)).unwrap();
    assert_eq!(dec.opts.max_batch, 8);
    assert_eq!(seq.len(), 24);
    let got = dec.feed_all(&seq).unwrap();
    assert_close("prefill in batches of 8", &got, &want, 2e-4);
}

/// The gap is the link's bandwidth-delay product over the requests in flight, within [4 KB,
/// 2 MB] (`gap_for`, checked against the formula); without a gap in the options `open_memory_url` measures the link:
/// behind a server that answers 30 ms late the round trip is at least 30 ms, the gap is
/// `gap_for` of what was measured, and the steps use it (rows 0 and 90 of a table share a
/// request when the 89 rows between fit in it); a gap given as half a row takes two.
/// (The tiny tables are too small to say much of the bandwidth: no figure is asserted.)
#[test]
fn the_read_through_gap_is_measured_from_the_link() {
    assert_eq!(gap_for(0.0004, 160e6, 1), 64_000);
    assert_eq!(gap_for(0.05, 10e6, 1), 500_000);
    assert_eq!(gap_for(0.05, 10e6, 8), 62_500);
    assert_eq!(gap_for(0.05, 10e6, 0), 500_000);
    assert_eq!(gap_for(1e-6, 1e6, 1), 4 << 10);
    assert_eq!(gap_for(1.0, 1e9, 8), 2 << 20);
    assert_eq!(gap_for(0.01, f64::INFINITY, 8), 2 << 20);

    let (bytes, seq, want) = q4_reference("gap");
    let srv = serve(bytes);
    let measured = |mode: Mode, gap: Option<usize>| {
        srv.set(mode);
        let opts = HttpOptions {
            max_gap_bytes: gap,
            timeout: Duration::from_secs(5),
            ..Default::default()
        };
        attach_url(&srv.url, &opts).unwrap()
    };
    let (_, fast) = measured(Mode::Ok, None);
    let (m, slow) = measured(Mode::Slow, None);
    let (rtt, bw) = (slow.round_trip_s.unwrap(), slow.bytes_per_s.unwrap());
    assert!(rtt >= 0.03 && bw > 0.0, "{slow:?}");
    assert!(fast.round_trip_s.unwrap() < rtt, "{fast:?} {slow:?}");
    assert_eq!(
        slow.gap_bytes,
        gap_for(rtt, bw, HttpOptions::default().max_in_flight)
    );
    let store = m.rows.tide.clone().unwrap();
    store.set_cache_bytes(0);
    let k = m.memory.as_ref().unwrap().k;
    let row = store.token_bytes() / k;
    let before = srv.requests.load(Ordering::SeqCst);
    store.gather(&[0, 90], &mut Vec::new()).unwrap();
    let per_table = if slow.gap_bytes >= 89 * row { 1 } else { 2 };
    assert_eq!(srv.requests.load(Ordering::SeqCst) - before, per_table * k);
    // The K tables' requests run side by side (a miss waits one round trip, not K): behind
    // the 30 ms link they overlap.
    srv.peak.store(0, Ordering::SeqCst);
    store.gather(&[7], &mut Vec::new()).unwrap();
    assert!(
        k >= 2 && srv.peak.load(Ordering::SeqCst) >= 2,
        "peak {:?} of {k} tables",
        srv.peak
    );
    check_gpu("behind a slow link", &m, &seq, &want);

    let (m, given) = measured(Mode::Ok, Some(row / 2));
    assert_eq!(given.round_trip_s, None);
    let store = m.rows.tide.clone().unwrap();
    store.set_cache_bytes(0);
    let before = srv.requests.load(Ordering::SeqCst);
    store.gather(&[0, 90], &mut Vec::new()).unwrap();
    assert_eq!(srv.requests.load(Ordering::SeqCst) - before, 2 * k);
}

fn tide_cli(args: &[&str]) -> (bool, String, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_tide"))
        .args(args)
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert!(!err.contains("panicked"), "tide {args:?} panicked: {err}");
    (o.status.success(), out, err)
}

/// `tide generate --json` reports the store's counters: one step per fed token, K rows each.
#[test]
fn generate_json_reports_the_row_counters() {
    let (ok, out, err) = tide_cli(&[
        "generate",
        "--json",
        "--temperature",
        "0",
        "--max-tokens",
        "6",
        "--memory-cache-mb",
        "0.001",
        "In the beginning",
    ]);
    assert!(ok, "{err}");
    let j: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let m = &j["memory"];
    let n = |k: &str| m[k].as_u64().unwrap();
    let fed =
        j["prompt_tokens"].as_array().unwrap().len() + j["tokens"].as_array().unwrap().len() - 1;
    assert_eq!(n("rows_requested"), 4 * fed as u64, "{m}");
    assert_eq!(n("hits") + n("misses"), n("rows_requested"), "{m}");
    // A 1 KB budget holds two tokens of the default model (4 x 120 bytes each).
    assert_eq!(n("resident_bytes"), 960, "{m}");
    assert_eq!(n("bytes_fetched"), n("misses") * 120, "{m}");
    let (ok, _, err) = tide_cli(&["generate", "--memory-cache-mb", "nan", "x"]);
    assert!(!ok && err.contains("--memory-cache-mb"), "{err}");
}

/// The browser's path through the store (memory/fetch.rs): the rows a step needs are asked
/// for (`missing`) and put in the cache (`insert`) before it runs; the step then reads them
/// from the cache. The counters count each fetched row once, as a miss, and the step's rows
/// are the source's. A cache too small for a step, or rows of the wrong size, are refused.
#[test]
fn rows_fetched_ahead_are_counted_once_and_read_by_the_step() {
    let m = load(&tiny()).unwrap();
    let store = &MemoryRows::local(&m).tide.unwrap();
    let (k, tb) = (m.memory.as_ref().unwrap().k, store.token_bytes());
    let read = |ids: &[u32]| -> Vec<Box<[u8]>> {
        let rb = tb / k;
        let mut rows: Vec<Box<[u8]>> = ids.iter().map(|_| vec![0u8; tb].into()).collect();
        let mut buf = vec![0u8; ids.len() * rb];
        for b in 0..k {
            store.source().read_rows(b, ids, &mut buf).unwrap();
            for (r, row) in rows.iter_mut().zip(buf.chunks_exact(rb)) {
                r[b * rb..(b + 1) * rb].copy_from_slice(row);
            }
        }
        rows
    };
    store.set_cache_bytes(2 * tb);
    let e = store.insert(&[1, 2, 3], read(&[1, 2, 3]), 1).unwrap_err();
    assert!(e.to_string().contains("holds 2 tokens"), "{e}");
    store.set_cache_bytes(8 * tb);
    let e = store
        .insert(&[1], vec![vec![0u8; tb - 1].into()], 1)
        .unwrap_err();
    assert!(e.to_string().contains("rows of"), "{e}");
    store.reset_stats();

    // A step of tokens 5, 3, 5: two are missing; fetched ahead, then read.
    let step = [5u32, 3, 5];
    let ids = store.missing(&step).unwrap();
    assert_eq!(ids, vec![3, 5]);
    store.insert(&ids, read(&ids), 777).unwrap();
    assert!(store.missing(&step).unwrap().is_empty());
    let mut got = Vec::new();
    store.gather(&step, &mut got).unwrap();
    let want: Vec<u8> = read(&step).iter().flat_map(|r| r.iter().copied()).collect();
    assert_eq!(got, want, "the step reads the source's rows");
    let s = store.stats();
    assert_eq!(s.rows_requested, 3 * k as u64);
    assert_eq!(
        s.misses,
        2 * k as u64,
        "each fetched token's rows count once, as misses"
    );
    assert_eq!(s.hits, k as u64, "the repeated 5 is a hit");
    assert_eq!(s.bytes_fetched, 777);
    // The next step reads 3 again: now a hit.
    store.gather(&[3], &mut got).unwrap();
    let s = store.stats();
    assert_eq!((s.hits, s.misses), (2 * k as u64, 2 * k as u64));
    assert_eq!(s.hits + s.misses, s.rows_requested);

    // A full cache: fetching a step's missing tokens must not evict its cached ones. The
    // cache holds 7, 8, 9 (7 least recently used); the step 7, 10 fetches 10 only, and then
    // reads both from the cache (no read of the source during the step).
    store.set_cache_bytes(3 * tb);
    for t in [7u32, 8, 9] {
        store.gather(&[t], &mut got).unwrap();
    }
    store.reset_stats();
    let ids = store.missing(&[7, 10]).unwrap();
    assert_eq!(ids, vec![10]);
    store.insert(&ids, read(&ids), 1).unwrap();
    store.gather(&[7, 10], &mut got).unwrap();
    let s = store.stats();
    assert_eq!(s.misses, k as u64, "7 was still cached when the step ran");
    assert_eq!(s.hits, k as u64);
    // A step of more distinct tokens than the cache holds is refused before any fetch.
    let e = store.missing(&[1, 2, 3, 4]).unwrap_err();
    assert!(e.to_string().contains("fewer than the 4"), "{e}");
}
