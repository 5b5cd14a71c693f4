//! The small HTTP/1.1 responder for everything that is not an upgrade:
//! the demo page and its assets, `/healthz`, and `404` / `405`.
//!
//! Files are held in memory: the embedded demo, or a `--static-dir` read
//! once at start-up. A request can only name a file that is in that table,
//! so no request path ever reaches the file system (no traversal, no
//! blocking read on the event loop).

pub mod login;
pub mod publish;
pub mod response;
pub mod session;

use std::collections::HashMap;
use std::path::Path;

use crate::proto::handshake::{Request, Single};
use response::{Cache, Head};

/// Most files a `--static-dir` may hold.
pub const MAX_STATIC_FILES: usize = 1024;
/// Most bytes a `--static-dir` may hold in all.
pub const MAX_STATIC_BYTES: u64 = 64 << 20;

/// A file ready to serve.
#[derive(Debug, Clone)]
struct Asset {
    body: std::borrow::Cow<'static, [u8]>,
    content_type: &'static str,
}

/// Where the Socket.IO client bundle is served (`socketio.client_bundle`).
pub const SOCKETIO_BUNDLE: &str = "/socket.io/socket.io.min.js";

/// The files the responder serves, keyed by URL path (`/index.html`).
#[derive(Debug, Clone)]
pub struct StaticFiles {
    files: HashMap<String, Asset>,
}

macro_rules! embedded {
    ($($name:literal),* $(,)?) => {
        [$(($name, &include_bytes!(concat!("assets/", $name))[..])),*]
    };
}

impl StaticFiles {
    /// The demo page compiled into the binary.
    pub fn embedded() -> Self {
        let files = embedded![
            "index.html",
            "index.js",
            "style.css",
            "favicon.svg",
            "socketio.html",
            "socketio.js"
        ]
        .into_iter()
        .map(|(name, body)| {
            let asset = Asset {
                body: std::borrow::Cow::Borrowed(body),
                content_type: content_type(name),
            };
            (format!("/{name}"), asset)
        })
        .collect();
        StaticFiles { files }
    }

    /// Adds the file at `path` (read now) as `url`: the Socket.IO client
    /// bundle (`socketio.client_bundle`).
    pub fn add_file(&mut self, url: &str, path: &Path) -> Result<(), String> {
        let body = std::fs::read(path)
            .map_err(|e| format!("socketio.client_bundle {}: {e}", path.display()))?;
        let asset = Asset {
            body: std::borrow::Cow::Owned(body),
            content_type: content_type(url),
        };
        self.files.insert(url.to_owned(), asset);
        Ok(())
    }

    /// Reads every regular file under `dir` (recursively, not following
    /// links out of it) into memory.
    pub fn load_dir(dir: &Path) -> Result<Self, String> {
        let root = dir
            .canonicalize()
            .map_err(|e| format!("static dir {}: {e}", dir.display()))?;
        if !root.is_dir() {
            return Err(format!("static dir {}: not a directory", dir.display()));
        }
        let mut files = HashMap::new();
        let mut total = 0u64;
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            let entries =
                std::fs::read_dir(&d).map_err(|e| format!("static dir {}: {e}", d.display()))?;
            for entry in entries {
                let entry = entry.map_err(|e| format!("static dir {}: {e}", d.display()))?;
                let path = entry.path();
                // Resolve links and keep only what stays inside the root.
                let Ok(real) = path.canonicalize() else {
                    continue;
                };
                if !real.starts_with(&root) {
                    continue;
                }
                if real.is_dir() {
                    stack.push(path);
                    continue;
                }
                if !real.is_file() {
                    continue;
                }
                let Ok(rel) = path.strip_prefix(&root) else {
                    continue;
                };
                let Some(rel) = rel.to_str() else { continue };
                if files.len() == MAX_STATIC_FILES {
                    return Err(format!(
                        "static dir {}: more than {MAX_STATIC_FILES} files",
                        dir.display()
                    ));
                }
                let body = std::fs::read(&real)
                    .map_err(|e| format!("static file {}: {e}", real.display()))?;
                total += body.len() as u64;
                if total > MAX_STATIC_BYTES {
                    return Err(format!(
                        "static dir {}: more than {MAX_STATIC_BYTES} bytes",
                        dir.display()
                    ));
                }
                let url = format!("/{}", rel.replace(std::path::MAIN_SEPARATOR, "/"));
                let asset = Asset {
                    body: body.into(),
                    content_type: content_type(rel),
                };
                files.insert(url, asset);
            }
        }
        Ok(StaticFiles { files })
    }
}

fn content_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map_or("", |(_, e)| e)
        .to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "woff2" => "font/woff2",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// Decodes a URL path and refuses anything that could leave the root:
/// dot segments, empty segments, backslashes, NUL, bad percent-encoding.
pub fn normalize_path(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                out.push(v);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    let path = String::from_utf8(out).ok()?;
    if !path.starts_with('/') || path.contains(['\\', '\0']) {
        return None;
    }
    if path == "/" {
        return Some("/index.html".into());
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    if segments
        .iter()
        .any(|s| s.is_empty() || *s == "." || *s == "..")
    {
        return None;
    }
    Some(path)
}

/// What the responder did, for the connection and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Status sent.
    pub status: u16,
    /// Whether the connection may carry another request.
    pub keep_alive: bool,
}

/// Answers a request that is not for the WebSocket path; `hsts` adds
/// `Strict-Transport-Security` (only ever set over TLS); without
/// `allow_keep_alive` the response ends the connection. `/readyz` is `200`
/// `ready` unless the server is `stopping` (`503`).
pub fn respond(
    req: &Request<'_, '_>,
    files: &StaticFiles,
    out: &mut Vec<u8>,
    hsts: bool,
    allow_keep_alive: bool,
    stopping: bool,
) -> Outcome {
    let keep_alive = allow_keep_alive
        && req.version == 1
        && !req.has_token("connection", "close")
        && !req.has_body();
    // RFC 9112 §3.2: an HTTP/1.1 request without exactly one Host is a 400.
    if req.version == 1 && !matches!(req.single_header("host"), Single::One(_)) {
        return error(400, "missing or repeated Host header", &[], hsts, out);
    }
    let Some(path) = normalize_path(req.path()) else {
        return error(400, "invalid path", &[], hsts, out);
    };
    let head_only = req.method == "HEAD";
    if path == "/readyz" && stopping && (req.method == "GET" || head_only) {
        return error(503, "shutting down", &[("Retry-After", "1")], hsts, out);
    }
    let (content_type, body): (&str, &[u8]) = if path == "/healthz" {
        ("text/plain; charset=utf-8", b"ok")
    } else if path == "/readyz" {
        // Built means listening, with the certificate and users loaded.
        ("text/plain; charset=utf-8", b"ready")
    } else if let Some(asset) = files.files.get(&path) {
        (asset.content_type, &asset.body)
    } else {
        return error(404, "not found", &[], hsts, out);
    };
    if req.method != "GET" && !head_only {
        return error(
            405,
            "method not allowed",
            &[("Allow", "GET, HEAD")],
            hsts,
            out,
        );
    }
    let head = Head {
        status: 200,
        content_type,
        content_length: body.len(),
        keep_alive,
        cache: Cache::Revalidate,
        hsts,
    };
    response::write_head(out, head, &[]);
    if !head_only {
        out.extend_from_slice(body);
    }
    Outcome {
        status: 200,
        keep_alive,
    }
}

fn error(
    status: u16,
    reason: &str,
    extra: &[(&str, &str)],
    hsts: bool,
    out: &mut Vec<u8>,
) -> Outcome {
    response::write_error(out, status, reason, extra, hsts);
    Outcome {
        status,
        keep_alive: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::handshake::parse_request;
    use response::PAGE_CSP;

    fn get(head: &str, files: &StaticFiles) -> (Outcome, String) {
        let mut storage = [httparse::EMPTY_HEADER; 16];
        let req = parse_request(head.as_bytes(), &mut storage).unwrap();
        let mut out = Vec::new();
        let o = respond(&req, files, &mut out, false, true, false);
        (o, String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn traversal_never_leaves_the_table() {
        let files = StaticFiles::embedded();
        for p in [
            "/../Cargo.toml",
            "/%2e%2e/Cargo.toml",
            "/%2E%2E%2fCargo.toml",
            "/a/../index.html",
            "//etc/passwd",
            "/./index.html",
            "/%00",
            "/..%5cx",
            "/%zz",
        ] {
            let (o, _) = get(&format!("GET {p} HTTP/1.1\r\nHost: a\r\n\r\n"), &files);
            assert_eq!(o.status, 400, "{p}");
        }
        let (o, _) = get("GET /etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n", &files);
        assert_eq!(o.status, 404);
    }

    #[test]
    fn page_healthz_and_errors() {
        let files = StaticFiles::embedded();
        let (o, text) = get("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &files);
        assert_eq!(
            o,
            Outcome {
                status: 200,
                keep_alive: true
            }
        );
        assert!(text.contains("Content-Type: text/html; charset=utf-8\r\n"));
        assert!(text.contains("X-Content-Type-Options: nosniff\r\n"));
        assert!(text.contains(&format!("Content-Security-Policy: {PAGE_CSP}\r\n")));
        let (o, text) = get("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", &files);
        assert_eq!(o.status, 200);
        assert!(text.ends_with("\r\n\r\nok"));
        assert!(
            text.contains(
                "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'\r\n"
            )
        );
        let (o, text) = get("POST / HTTP/1.1\r\nHost: a\r\n\r\n", &files);
        assert_eq!(o.status, 405);
        assert!(text.contains("\r\nAllow: GET, HEAD\r\n"));
        let (o, _) = get("GET /missing HTTP/1.1\r\nHost: a\r\n\r\n", &files);
        assert_eq!(o.status, 404);
        let (o, _) = get("GET / HTTP/1.1\r\n\r\n", &files);
        assert_eq!(o.status, 400);
        let (o, text) = get("HEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\n", &files);
        assert_eq!(o.status, 200);
        assert!(text.ends_with("\r\n\r\n"));
        let (o, _) = get(
            "GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            &files,
        );
        assert!(!o.keep_alive);
    }
}
