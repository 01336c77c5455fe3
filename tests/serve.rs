//! `tide serve` over real sockets: /models.json, model files with HTTP Range and HEAD, path
//! traversal refused, loopback unless --host says otherwise, bad arguments refused by name.
//! Requests are written by hand on purpose: HTTP clients normalise `/../` away before sending.
#![cfg(not(target_arch = "wasm32"))]
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A running `tide serve`, killed on drop.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(args: &[&str]) -> Server {
        Server::start_env(args, &[])
    }

    fn start_env(args: &[&str], envs: &[(&str, &std::path::Path)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tide"))
            .args(["serve", "--port", "0"])
            .args(args)
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("http://"), "printed URL: {line:?}");
        Server {
            child,
            url: line.trim().to_string(),
        }
    }

    fn addr(&self) -> &str {
        self.url.trim_start_matches("http://").trim_end_matches('/')
    }

    /// (status, lower-case headers, body) of one request sent verbatim.
    fn request(
        &self,
        method: &str,
        path: &str,
        extra: &str,
    ) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let mut s = TcpStream::connect(self.addr()).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let body = raw[split + 4..].to_vec();
        let mut lines = head.lines();
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
            .collect();
        (status, headers, body)
    }
}

fn header<'a>(h: &'a [(String, String)], k: &str) -> Option<&'a str> {
    h.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

fn get_range(srv: &Server, path: &str, range: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    srv.request("GET", path, &format!("Range: {range}\r\n"))
}

#[test]
fn models_json_lists_the_memory_model_then_the_embedded_one_by_default() {
    let srv = Server::start(&[]);
    let (st, h, body) = srv.request("GET", "/models.json", "");
    assert_eq!(st, 200);
    assert!(header(&h, "content-type").unwrap().contains("json"));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    // models/smollm2-tide first (the demo's headline; its backbone beside its memory, which
    // the page streams), then the embedded model.
    let list = v.as_array().unwrap();
    assert_eq!(list[0]["name"], "smollm2-tide");
    assert_eq!(list[0]["memory"], "stream");
    assert!(list[0]["files"].as_array().unwrap().iter().any(|f| f["url"]
        .as_str()
        .unwrap()
        .ends_with("/SmolLM2-135M-Instruct.Q4_1.gguf")));
    let m = v
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "tide-k4")
        .unwrap();
    for f in m["files"].as_array().unwrap() {
        let url = f["url"].as_str().unwrap();
        let name = url.rsplit('/').next().unwrap();
        let want = std::fs::metadata(repo().join("models/tide-k4").join(name))
            .unwrap()
            .len();
        assert_eq!(f["bytes"].as_u64().unwrap(), want, "{url}");
    }
    let names: Vec<&str> = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["url"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "/models/tide-k4/config.json",
            "/models/tide-k4/model.safetensors",
            "/models/tide-k4/tokenizer.json"
        ]
    );
}

/// Ranges of a file on disk and of the embedded model: first, middle and last bytes, suffix and
/// open-ended ranges, out of bounds (416), HEAD and a whole GET.
/// The hex sha256 of a file by coreutils' sha256sum (not the code under test).
fn sha256sum(p: &std::path::Path) -> String {
    let o = Command::new("sha256sum").arg(p).output().unwrap();
    assert!(o.status.success());
    String::from_utf8(o.stdout).unwrap()[..64].to_string()
}

/// A split GGUF given by any part's path is one model named by its stem, every part a file;
/// each file's size and sha256 (as sha256sum computes it) are listed, the sha256 kept in the
/// cache ($XDG_CACHE_HOME/tide) and read back while the file's size and time are unchanged.
#[test]
fn models_json_gives_sizes_and_hashes_of_split_parts() {
    let tmp = std::env::temp_dir().join(format!("tide-serve-hashes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let (cache, models) = (tmp.join("cache"), tmp.join("models"));
    std::fs::create_dir_all(&models).unwrap();
    let parts: Vec<PathBuf> = (1..=3)
        .map(|i| {
            let n = format!("qwen2-{i:05}-of-00003.gguf");
            std::fs::copy(
                repo().join("tests/fixtures/split").join(&n),
                models.join(&n),
            )
            .unwrap();
            models.join(n)
        })
        .collect();
    let list = |srv: &Server| -> serde_json::Value {
        let (st, _, body) = srv.request("GET", "/models.json", "");
        assert_eq!(st, 200);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        v.as_array().unwrap()[0].clone()
    };
    let second = parts[1].to_str().unwrap();
    let args = ["--no-api", "--model", second];
    let env = [("XDG_CACHE_HOME", cache.as_path())];
    let m = list(&Server::start_env(&args, &env));
    assert_eq!(m["name"], "qwen2");
    let files = m["files"].as_array().unwrap();
    assert_eq!(files.len(), 3);
    for (f, p) in files.iter().zip(&parts) {
        let n = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(f["url"], format!("/models/qwen2/{n}"));
        assert_eq!(f["bytes"], std::fs::metadata(p).unwrap().len());
        assert_eq!(f["sha256"], sha256sum(p), "{n}");
    }
    // The cache holds them: an entry changed by hand is served as it stands (not hashed again)...
    let cf = cache.join("tide/file-sha256.json");
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&cf).unwrap()).unwrap();
    let key = std::fs::canonicalize(&parts[0]).unwrap();
    c[key.to_str().unwrap()]["sha256"] = "0".repeat(64).into();
    std::fs::write(&cf, serde_json::to_vec(&c).unwrap()).unwrap();
    let m = list(&Server::start_env(&args, &env));
    assert_eq!(m["files"][0]["sha256"], "0".repeat(64));
    // ...until the file changes: then it is hashed again.
    let bytes = std::fs::read(&parts[0]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&parts[0], &bytes).unwrap();
    let m = list(&Server::start_env(&args, &env));
    assert_eq!(m["files"][0]["sha256"], sha256sum(&parts[0]));
    // The parts are served, the API off.
    let srv = Server::start_env(&args, &env);
    let (st, _, body) = srv.request("GET", "/models/qwen2/qwen2-00003-of-00003.gguf", "");
    assert_eq!(
        (st, body.len() as u64),
        (200, std::fs::metadata(&parts[2]).unwrap().len())
    );
    // A part missing from the folder is named.
    std::fs::remove_file(&parts[2]).unwrap();
    let e = serve_error(&["--no-api", "--model", parts[0].to_str().unwrap()]);
    assert!(e.contains("part 3 of 3"), "{e}");
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn ranges_and_head_of_model_files() {
    let dir = repo().join("tests/fixtures/tiny_llama");
    let srv = Server::start(&["--model", dir.to_str().unwrap()]);
    let (_, _, listing) = srv.request("GET", "/models.json", "");
    let v: serde_json::Value = serde_json::from_slice(&listing).unwrap();
    assert_eq!(v[0]["name"], "tiny_llama");
    let files: Vec<&str> = v[0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["url"].as_str().unwrap())
        .collect();
    // Plain files only: not the model_f16 / model_bf16 subfolders.
    assert_eq!(
        files,
        [
            "/models/tiny_llama/config.json",
            "/models/tiny_llama/golden.json",
            "/models/tiny_llama/model.safetensors",
            "/models/tiny_llama/tokenizer.json"
        ]
    );
    let data = std::fs::read(dir.join("model.safetensors")).unwrap();
    let n = data.len();
    let url = "/models/tiny_llama/model.safetensors";
    let cases = [
        ("bytes=0-99".to_string(), 0..100),
        (
            format!("bytes={}-{}", n / 2, n / 2 + 4095),
            n / 2..n / 2 + 4096,
        ),
        (format!("bytes={}-{}", n - 10, n - 1), n - 10..n),
        ("bytes=-7".to_string(), n - 7..n),
        (format!("bytes={}-", n - 300), n - 300..n),
        // An end past the file is cut to the file.
        (format!("bytes={}-{}", n - 5, n + 100), n - 5..n),
    ];
    for (range, want) in cases {
        let (st, h, body) = get_range(&srv, url, &range);
        assert_eq!(st, 206, "{range}");
        assert_eq!(body, &data[want.clone()], "{range}");
        assert_eq!(
            header(&h, "content-range").unwrap(),
            format!("bytes {}-{}/{n}", want.start, want.end - 1),
            "{range}"
        );
        assert_eq!(header(&h, "accept-ranges"), Some("bytes"));
    }
    for range in [
        format!("bytes={n}-"),
        format!("bytes={}-{}", n + 10, n + 20),
    ] {
        let (st, h, _) = get_range(&srv, url, &range);
        assert_eq!(st, 416, "{range}");
        assert_eq!(header(&h, "content-range").unwrap(), format!("bytes */{n}"));
    }
    let (st, h, body) = srv.request("HEAD", url, "");
    assert_eq!(st, 200);
    assert_eq!(header(&h, "content-length").unwrap(), n.to_string());
    assert_eq!(header(&h, "accept-ranges"), Some("bytes"));
    assert!(body.is_empty(), "HEAD has no body");
    let tag = header(&h, "etag").expect("an ETag").to_string();
    let (_, h2, _) = srv.request("HEAD", "/models/tiny_llama/config.json", "");
    assert_ne!(
        header(&h2, "etag"),
        Some(tag.as_str()),
        "files get their own ETags"
    );
    let (st, _, body) = srv.request("GET", url, "");
    assert_eq!(st, 200);
    assert_eq!(body, data);
    // If-Range: the range when the client's version is the current one, else the whole file.
    let (st, _, body) = srv.request(
        "GET",
        url,
        &format!("Range: bytes=10-19\r\nIf-Range: {tag}\r\n"),
    );
    assert_eq!((st, &body[..]), (206, &data[10..20]));
    let stale = "If-Range: \"0-0\"\r\n";
    let (st, _, body) = srv.request("GET", url, &format!("Range: bytes=10-19\r\n{stale}"));
    assert_eq!(
        (st, body.len()),
        (200, n),
        "a stale If-Range gets the whole file"
    );
    let (st, _, _) = srv.request("GET", "/models/tiny_llama/nothing.bin", "");
    assert_eq!(st, 404);

    // The embedded model's bytes (served from the binary) equal the committed files.
    let srv = Server::start(&[]);
    let want = std::fs::read(repo().join("models/tide-k4/model.safetensors")).unwrap();
    let m = want.len();
    let (st, _, body) = get_range(
        &srv,
        "/models/tide-k4/model.safetensors",
        &format!("bytes={}-{}", m / 3, m / 3 + 999),
    );
    assert_eq!(st, 206);
    assert_eq!(body, &want[m / 3..m / 3 + 1000]);
}

/// A web folder with a page, and a secret beside it (outside it) that no path may reach.
fn web_with_secret() -> (PathBuf, PathBuf) {
    let root = std::env::temp_dir().join(format!("tide-serve-{}", std::process::id()));
    let web = root.join("web");
    std::fs::create_dir_all(web.join("sub")).unwrap();
    std::fs::write(web.join("index.html"), "<p>tide page</p>").unwrap();
    std::fs::write(web.join("sub/a.js"), "export const a = 1;").unwrap();
    std::fs::write(root.join("secret.txt"), "SECRET-OUTSIDE-WEB").unwrap();
    (root, web)
}

#[test]
fn pages_are_served_and_traversal_is_refused() {
    let (root, web) = web_with_secret();
    let srv = Server::start(&["--web", web.to_str().unwrap()]);
    let (st, _, body) = srv.request("GET", "/", "");
    assert_eq!(st, 200);
    assert_eq!(body, b"<p>tide page</p>");
    let (st, _, body) = srv.request("GET", "/sub/a.js", "");
    assert_eq!(st, 200);
    assert_eq!(body, b"export const a = 1;");
    let secret = root.join("secret.txt");
    let abs = secret.to_str().unwrap();
    for path in [
        "/../secret.txt".to_string(),
        "/sub/../../secret.txt".to_string(),
        "/%2e%2e/secret.txt".to_string(),
        "/sub/%2e%2e%2f%2e%2e%2fsecret.txt".to_string(),
        "/..%2fsecret.txt".to_string(),
        "/..%5csecret.txt".to_string(),
        format!("/{abs}"),
        format!("/{}", abs.replace('/', "%2f")),
        "/models/tide-k4/..%2f..%2fsecret.txt".to_string(),
        "/models/..%2f..%2f/secret.txt".to_string(),
    ] {
        let (st, _, body) = srv.request("GET", &path, "");
        assert_ne!(st, 200, "{path} was served");
        assert!(
            !String::from_utf8_lossy(&body).contains("SECRET"),
            "{path} leaked the secret"
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn binds_loopback_unless_host_asks() {
    let srv = Server::start(&[]);
    assert!(srv.addr().starts_with("127.0.0.1:"), "{}", srv.url);
    // Beyond loopback, the API wants a key or --allow-anonymous; files alone need neither.
    let e = serve_error(&["--host", "0.0.0.0"]);
    assert!(
        e.contains("--api-key") && e.contains("--allow-anonymous"),
        "{e}"
    );
    let srv = Server::start(&["--host", "0.0.0.0", "--no-api"]);
    assert!(srv.addr().starts_with("0.0.0.0:"), "{}", srv.url);
    let srv = Server::start(&["--host", "0.0.0.0", "--allow-anonymous"]);
    assert!(srv.addr().starts_with("0.0.0.0:"), "{}", srv.url);
    // Reachable (here through loopback, which 0.0.0.0 includes).
    let port = srv.addr().rsplit(':').next().unwrap();
    assert!(TcpStream::connect(format!("127.0.0.1:{port}")).is_ok());
}

fn serve_error(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tide"))
        .args(["serve", "--port", "0"])
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?} should fail");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn bad_arguments_are_refused_by_name() {
    let e = serve_error(&["--model", "no/such/model.gguf"]);
    assert!(e.contains("no/such/model.gguf"), "{e}");
    let dir = repo().join("tests/fixtures/tiny_llama");
    let d = dir.to_str().unwrap();
    let e = serve_error(&["--model", d, "--model", d]);
    assert!(e.contains("two models are named 'tiny_llama'"), "{e}");
    let e = serve_error(&["--host", "localhost:80"]);
    assert!(e.contains("--host"), "{e}");
    let e = serve_error(&["--cors", "example.org"]);
    assert!(e.contains("--cors \"example.org\""), "{e}");
    let e = serve_error(&["--api-key", " "]);
    assert!(e.contains("--api-key: the key is empty"), "{e}");
    let e = serve_error(&["--api-key-file", "no/such/key"]);
    assert!(e.contains("--api-key-file no/such/key"), "{e}");
}
