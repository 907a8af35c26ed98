//! A stand-in for the Hugging Face hub on the loopback interface, speaking the parts of its
//! protocol Prism's client uses (and Python's `huggingface_hub` uses the same way):
//!
//! - `GET /api/models/ORG/NAME/revision/REV` → `{"id", "sha", "siblings": [{"rfilename"}]}`;
//! - `HEAD`/`GET /ORG/NAME/resolve/REV/PATH` → small files directly (`ETag`, `X-Repo-Commit`),
//!   large ones (weights: `.safetensors`, `.npz`, `.gguf`, `.pt`, `.bin`) as a `302` to
//!   `/cdn/SHA256` on another port (the storage, another origin) with `X-Linked-Etag` (their sha256), `X-Linked-Size` and `X-Repo-Commit`;
//! - `GET /cdn/SHA256`, honouring `Range: bytes=N-` (`206`);
//! - errors as the hub gives them: `404` + `X-Error-Code: RepoNotFound` / `RevisionNotFound` /
//!   `EntryNotFound`, and for a private repository without the right token `401` +
//!   `RepoNotFound`.
//!
//! It can cut the next transfers after some bytes (a lost connection), slow every transfer
//! down, and be stopped; it records every request it served.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// One repository the server serves.
#[derive(Clone, Debug)]
pub struct ServedRepo {
    /// Its commit hash (40 hex digits).
    pub commit: String,
    /// Path → bytes.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Path → sha256 of the bytes (hex).
    pub shas: BTreeMap<String, String>,
    /// Served only with the server's token.
    pub private: bool,
}

impl ServedRepo {
    /// Every file under `dir` (recursively), the commit a hash of them all.
    pub fn from_dir(dir: &Path) -> ServedRepo {
        let mut files = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d)
                .expect("readable fixture dir")
                .flatten()
            {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p.strip_prefix(dir).unwrap();
                    let name: Vec<String> = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect();
                    files.insert(name.join("/"), std::fs::read(&p).expect("readable file"));
                }
            }
        }
        ServedRepo::from_files(files)
    }

    /// These files, the commit a hash of them all.
    pub fn from_files(files: BTreeMap<String, Vec<u8>>) -> ServedRepo {
        let shas: BTreeMap<String, String> =
            files.iter().map(|(k, v)| (k.clone(), sha256(v))).collect();
        let mut h = Sha256::new();
        for (k, s) in &shas {
            h.update(k.as_bytes());
            h.update(s.as_bytes());
        }
        ServedRepo {
            commit: hex::encode(h.finalize())[..40].to_string(),
            files,
            shas,
            private: false,
        }
    }

    /// The same, served only with the token.
    pub fn private(mut self) -> ServedRepo {
        self.private = true;
        self
    }
}

/// The sha256 of `bytes` as hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether the hub stores this file in large-file storage (served through a redirect).
pub fn is_large(path: &str) -> bool {
    [".safetensors", ".npz", ".gguf", ".pt", ".bin"]
        .iter()
        .any(|e| path.ends_with(e))
}

/// A request the server answered: method, path, `Range` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    /// `GET` or `HEAD`.
    pub method: String,
    /// The request path.
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// Whether an `Authorization` header came with it.
    pub authorized: bool,
}

struct State {
    repos: Mutex<BTreeMap<String, Arc<ServedRepo>>>,
    token: Option<String>,
    cut_after: AtomicU64,
    cuts_left: AtomicUsize,
    pause_per_chunk: AtomicU64,
    log: Mutex<Vec<Served>>,
    stop: AtomicBool,
}

/// The running server; stopped when dropped.
pub struct HubServer {
    state: Arc<State>,
    /// The hub's port and its storage's.
    ports: [u16; 2],
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl HubServer {
    /// Starts serving `repos` (`ORG/NAME` → repository) on a free loopback port; private
    /// repositories need `Authorization: Bearer TOKEN`.
    pub fn start(repos: BTreeMap<String, ServedRepo>, token: Option<&str>) -> HubServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().unwrap().port();
        // Large files come from another origin, as the hub's storage is another host.
        let storage = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let storage_port = storage.local_addr().unwrap().port();
        let state = Arc::new(State {
            repos: Mutex::new(repos.into_iter().map(|(k, v)| (k, Arc::new(v))).collect()),
            token: token.map(str::to_string),
            cut_after: AtomicU64::new(0),
            cuts_left: AtomicUsize::new(0),
            pause_per_chunk: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let threads = [listener, storage]
            .into_iter()
            .map(|listener| {
                let s = state.clone();
                std::thread::spawn(move || {
                    for conn in listener.incoming() {
                        if s.stop.load(Ordering::SeqCst) {
                            break;
                        }
                        if let Ok(stream) = conn {
                            let s = s.clone();
                            std::thread::spawn(move || {
                                let _ = serve(&s, stream, storage_port);
                            });
                        }
                    }
                })
            })
            .collect();
        HubServer {
            state,
            ports: [port, storage_port],
            threads,
        }
    }

    /// Its base URL (what `HF_ENDPOINT` is set to).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[0])
    }

    /// The next `times` file transfers stop after `bytes` bytes (the connection is closed
    /// while the announced length is longer).
    pub fn cut_next(&self, times: usize, bytes: u64) {
        self.state.cut_after.store(bytes, Ordering::SeqCst);
        self.state.cuts_left.store(times, Ordering::SeqCst);
    }

    /// Pauses this long after every 64 KiB of a transfer (to make concurrent downloads overlap).
    pub fn slow_down(&self, pause: Duration) {
        self.state
            .pause_per_chunk
            .store(pause.as_micros() as u64, Ordering::SeqCst);
    }

    /// Every request served so far.
    pub fn log(&self) -> Vec<Served> {
        self.state.log.lock().unwrap().clone()
    }

    /// Adds or replaces a repository.
    pub fn put(&self, repo: &str, served: ServedRepo) {
        self.state
            .repos
            .lock()
            .unwrap()
            .insert(repo.to_string(), Arc::new(served));
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        for port in self.ports {
            let _ = TcpStream::connect(("127.0.0.1", port));
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Body,
    /// A file transfer (may be cut, slowed down, ranged).
    transfer: bool,
}

/// A reply's bytes: its own, or a served file (shared, not copied).
enum Body {
    Owned(Vec<u8>),
    File(Arc<ServedRepo>, String),
}

impl Body {
    fn bytes(&self) -> &[u8] {
        match self {
            Body::Owned(b) => b,
            Body::File(repo, path) => repo.files.get(path).map(Vec::as_slice).unwrap_or(&[]),
        }
    }
}

impl Reply {
    fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Body::Owned(Vec::new()),
            transfer: false,
        }
    }
    fn file(repo: &Arc<ServedRepo>, path: &str) -> Reply {
        let mut r = Reply::new(200);
        r.body = Body::File(repo.clone(), path.to_string());
        r.transfer = true;
        r
    }
    fn header(mut self, k: &str, v: impl Into<String>) -> Reply {
        self.headers.push((k.to_string(), v.into()));
        self
    }
    fn error(status: u16, code: &str) -> Reply {
        Reply::new(status)
            .header("X-Error-Code", code)
            .header("X-Error-Message", code)
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        401 => "Unauthorized",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        _ => "Error",
    }
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(hex) = b.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(&String::from_utf8_lossy(hex), 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve(state: &State, stream: TcpStream, storage_port: u16) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let mut range = None;
    let mut auth = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "range" => range = Some(v.trim().to_string()),
                "authorization" => auth = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    state.log.lock().unwrap().push(Served {
        method: method.clone(),
        path: target.clone(),
        range: range.clone(),
        authorized: auth.is_some(),
    });
    let authorized = match &state.token {
        Some(t) => auth.as_deref() == Some(&format!("Bearer {t}")),
        None => true,
    };
    let reply = route(state, &target, authorized, storage_port);
    write_reply(state, stream, &method, reply, range.as_deref())
}

fn route(state: &State, target: &str, authorized: bool, storage_port: u16) -> Reply {
    let path = target.split('?').next().unwrap_or_default();
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(decode)
        .collect();
    let repos = state.repos.lock().unwrap();
    if segs.first().map(String::as_str) == Some("cdn") && segs.len() == 2 {
        for repo in repos.values() {
            if let Some((path, _)) = repo.shas.iter().find(|(_, s)| **s == segs[1]) {
                return Reply::file(repo, path);
            }
        }
        return Reply::new(404);
    }
    // What is asked: model info, the file tree (under a folder), or a file.
    enum Ask {
        Info,
        Tree(String),
        File(String),
    }
    let (repo_id, rev, ask) = if segs.len() >= 6 && segs[0] == "api" && segs[1] == "models" {
        let ask = match segs[4].as_str() {
            "revision" => Ask::Info,
            "tree" => Ask::Tree(segs[6..].join("/")),
            _ => return Reply::new(404),
        };
        (format!("{}/{}", segs[2], segs[3]), segs[5].clone(), ask)
    } else if segs.len() >= 5 && segs[2] == "resolve" {
        (
            format!("{}/{}", segs[0], segs[1]),
            segs[3].clone(),
            Ask::File(segs[4..].join("/")),
        )
    } else {
        return Reply::new(404);
    };
    let Some(repo) = repos.get(&repo_id) else {
        return Reply::error(404, "RepoNotFound");
    };
    if repo.private && !authorized {
        return Reply::error(401, "RepoNotFound");
    }
    if rev != "main" && rev != repo.commit {
        return Reply::error(404, "RevisionNotFound");
    }
    let json = |text: String| {
        let mut r = Reply::new(200).header("Content-Type", "application/json");
        r.body = Body::Owned(text.into_bytes());
        r
    };
    let file = match ask {
        Ask::Info => {
            let siblings: Vec<String> = repo
                .files
                .keys()
                .map(|k| format!("{{\"rfilename\": {k:?}}}"))
                .collect();
            return json(format!(
                "{{\"id\": {:?}, \"sha\": {:?}, \"private\": {}, \"siblings\": [{}]}}",
                repo_id,
                repo.commit,
                repo.private,
                siblings.join(", ")
            ));
        }
        Ask::Tree(under) => {
            // Every file (and folder) below `under`, recursively, as the tree API lists them.
            let prefix = if under.is_empty() {
                String::new()
            } else {
                format!("{under}/")
            };
            let mut folders = std::collections::BTreeSet::new();
            let mut entries = Vec::new();
            for (path, bytes) in repo.files.iter().filter(|(p, _)| p.starts_with(&prefix)) {
                let mut at = path.as_str();
                while let Some((parent, _)) = at.rsplit_once('/') {
                    if parent.len() >= prefix.len() {
                        folders.insert(parent.to_string());
                    }
                    at = parent;
                }
                let sha = &repo.shas[path];
                let lfs = if is_large(path) {
                    format!(
                        ", \"lfs\": {{\"oid\": {sha:?}, \"size\": {}, \"pointerSize\": 134}}",
                        bytes.len()
                    )
                } else {
                    String::new()
                };
                entries.push(format!(
                    "{{\"type\": \"file\", \"oid\": {:?}, \"size\": {}, \"path\": {path:?}{lfs}}}",
                    &sha[..40],
                    bytes.len()
                ));
            }
            for f in folders {
                entries.push(format!(
                    "{{\"type\": \"directory\", \"oid\": {:?}, \"size\": 0, \"path\": {f:?}}}",
                    &sha256(f.as_bytes())[..40]
                ));
            }
            return json(format!("[{}]", entries.join(", ")));
        }
        Ask::File(f) => f,
    };
    let (Some(bytes), Some(sha)) = (repo.files.get(&file), repo.shas.get(&file)) else {
        return Reply::error(404, "EntryNotFound");
    };
    if is_large(&file) {
        return Reply::new(302)
            .header(
                "Location",
                format!("http://127.0.0.1:{storage_port}/cdn/{sha}"),
            )
            .header("X-Linked-Etag", format!("\"{sha}\""))
            .header("X-Linked-Size", bytes.len().to_string())
            .header("X-Repo-Commit", repo.commit.clone());
    }
    Reply::file(repo, &file)
        .header("ETag", format!("\"{}\"", &sha[..40]))
        .header("X-Repo-Commit", repo.commit.clone())
}

fn write_reply(
    state: &State,
    mut stream: TcpStream,
    method: &str,
    mut reply: Reply,
    range: Option<&str>,
) -> std::io::Result<()> {
    let total = reply.body.bytes().len() as u64;
    let (mut start, mut end) = (0u64, total);
    if reply.transfer
        && let Some(r) = range
    {
        // `bytes=START-` or `bytes=START-END` (END inclusive).
        let parsed = r
            .strip_prefix("bytes=")
            .and_then(|r| r.split_once('-'))
            .and_then(|(a, b)| {
                let a = a.parse::<u64>().ok()?;
                let b = if b.is_empty() {
                    total.checked_sub(1)?
                } else {
                    b.parse::<u64>().ok()?
                };
                Some((a, b.min(total.saturating_sub(1))))
            });
        match parsed {
            Some((a, b)) if a < total && a <= b => {
                (start, end) = (a, b + 1);
                reply.status = 206;
                reply
                    .headers
                    .push(("Content-Range".into(), format!("bytes {a}-{b}/{total}")));
            }
            _ => {
                reply = Reply::new(416).header("Content-Range", format!("bytes */{total}"));
                end = 0;
            }
        }
    }
    let all = reply.body.bytes();
    let body = &all[(start.min(end) as usize).min(all.len())..(end as usize).min(all.len())];
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    stream.write_all(head.as_bytes())?;
    if method == "HEAD" {
        return stream.flush();
    }
    let mut limit = body.len();
    if reply.transfer
        && state
            .cuts_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        limit = limit.min(state.cut_after.load(Ordering::SeqCst) as usize);
    }
    let pause = Duration::from_micros(state.pause_per_chunk.load(Ordering::SeqCst));
    for chunk in body[..limit].chunks(64 * 1024) {
        stream.write_all(chunk)?;
        if reply.transfer && !pause.is_zero() {
            stream.flush()?;
            std::thread::sleep(pause);
        }
    }
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Both);
    Ok(())
}
