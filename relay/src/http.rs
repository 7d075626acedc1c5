//! A minimal HTTP/1.1 server side: request heads parsed with httparse under strict limits,
//! fixed-length bodies only, responses with the security headers of docs/API.md, and static
//! files from the web directory.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest request head (request line + headers) accepted.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most headers accepted.
pub const MAX_HEADERS: usize = 64;
/// Largest request body accepted (API requests are small JSON documents).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The Content-Security-Policy of every response.
pub const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'";

/// A parsed request.
#[derive(Clone, Debug)]
pub struct Request {
    /// Method, e.g. `GET`.
    pub method: String,
    /// Path without the query string, e.g. `/api/studies`.
    pub path: String,
    /// Query string without `?`, if any.
    pub query: Option<String>,
    /// Headers, names in lower case, in order.
    pub headers: Vec<(String, String)>,
    /// Body (empty for GET).
    pub body: Vec<u8>,
    /// `true` for HTTP/1.1 (keep-alive by default), `false` for HTTP/1.0.
    pub http11: bool,
}

impl Request {
    /// The first header with this (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated header contains `token` (case-insensitive).
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Whether the client wants the connection kept open after the response.
    pub fn keep_alive(&self) -> bool {
        if self.header_has_token("connection", "close") {
            false
        } else {
            self.http11 || self.header_has_token("connection", "keep-alive")
        }
    }

    /// Whether this is a WebSocket upgrade request.
    pub fn is_websocket_upgrade(&self) -> bool {
        self.method == "GET"
            && self.header_has_token("upgrade", "websocket")
            && self.header_has_token("connection", "upgrade")
    }
}

/// Why no request could be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The peer closed the connection before a request started.
    #[error("connection closed")]
    Closed,
    /// The head exceeds the limits (size or header count).
    #[error("request head too large")]
    TooLarge,
    /// The announced body exceeds [`MAX_BODY_BYTES`].
    #[error("request body too large")]
    BodyTooLarge,
    /// Not a well-formed HTTP/1.x request, or an unsupported framing.
    #[error("malformed request")]
    Malformed,
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// What [`parse_head`] found at the start of a buffer.
#[derive(Debug)]
pub enum Head {
    /// A complete request head: the request (body still empty), the head's length in bytes and
    /// the body length announced by `Content-Length`.
    Complete {
        /// The request, without its body.
        request: Request,
        /// Bytes taken by the head.
        head_len: usize,
        /// Body bytes that follow the head.
        body_len: usize,
    },
    /// More bytes are needed.
    Partial,
}

/// Parses a request head from the start of `buf`: a pure function of the bytes (no IO), the
/// single place where the relay interprets untrusted bytes before a WebSocket opens. Applies
/// every limit: head size, header count, UTF-8 header values, no `Transfer-Encoding`, a
/// numeric `Content-Length` of at most [`MAX_BODY_BYTES`].
pub fn parse_head(buf: &[u8]) -> Result<Head, ReadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(head_len)) => {
            if head_len > MAX_HEAD_BYTES {
                return Err(ReadError::TooLarge);
            }
            let method = req.method.unwrap_or("").to_string();
            let target = req.path.unwrap_or("");
            let (path, query) = match target.split_once('?') {
                Some((p, q)) => (p.to_string(), Some(q.to_string())),
                None => (target.to_string(), None),
            };
            let http11 = req.version == Some(1);
            let mut hs = Vec::with_capacity(req.headers.len());
            for h in req.headers.iter() {
                let value = std::str::from_utf8(h.value).map_err(|_| ReadError::Malformed)?;
                hs.push((h.name.to_ascii_lowercase(), value.trim().to_string()));
            }
            let request = Request {
                method,
                path,
                query,
                headers: hs,
                body: Vec::new(),
                http11,
            };
            if request.header("transfer-encoding").is_some() {
                return Err(ReadError::Malformed);
            }
            let mut lengths = request
                .headers
                .iter()
                .filter(|(n, _)| n == "content-length");
            let body_len = match (lengths.next(), lengths.next()) {
                (None, _) => 0,
                (Some((_, v)), None) => v.parse::<usize>().map_err(|_| ReadError::Malformed)?,
                // Two Content-Length headers: a request-smuggling classic.
                (Some(_), Some(_)) => return Err(ReadError::Malformed),
            };
            if body_len > MAX_BODY_BYTES {
                return Err(ReadError::BodyTooLarge);
            }
            Ok(Head::Complete {
                request,
                head_len,
                body_len,
            })
        }
        Ok(httparse::Status::Partial) => {
            if buf.len() >= MAX_HEAD_BYTES {
                Err(ReadError::TooLarge)
            } else {
                Ok(Head::Partial)
            }
        }
        Err(httparse::Error::TooManyHeaders) => Err(ReadError::TooLarge),
        Err(_) => Err(ReadError::Malformed),
    }
}

/// Reads one request. `buf` carries bytes read past the previous request (pipelining) and
/// keeps any bytes read past this one.
pub async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Result<Request, ReadError> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Head::Complete {
            mut request,
            head_len,
            body_len,
        } = parse_head(buf)?
        {
            buf.drain(..head_len);
            while buf.len() < body_len {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(ReadError::Malformed);
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            request.body = buf.drain(..body_len).collect();
            return Ok(request);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(if buf.is_empty() {
                ReadError::Closed
            } else {
                ReadError::Malformed
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A response to write.
#[derive(Clone, Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Extra headers (Content-Type included).
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// The reason phrase of the status codes this server uses.
pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

impl Response {
    /// A response with a body of the given content type.
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", content_type.to_string())],
            body,
        }
    }

    /// A JSON response.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Response {
        let body = serde_json::to_vec(value).expect("API values serialize");
        Response::new(status, "application/json", body)
    }

    /// `{"error": message}` with this status.
    pub fn error(status: u16, message: &str) -> Response {
        Response::json(status, &serde_json::json!({ "error": message }))
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// The bytes on the wire; without the body for a HEAD request.
    pub fn to_bytes(&self, head_only: bool, keep_alive: bool) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (n, v) in &self.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        out.push_str(&format!("Content-Security-Policy: {CSP}\r\n"));
        out.push_str("X-Content-Type-Options: nosniff\r\n");
        out.push_str("Referrer-Policy: no-referrer\r\n");
        out.push_str("Cache-Control: no-cache\r\n");
        if !keep_alive {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }

    /// Writes the response.
    pub async fn write_to<S: AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        head_only: bool,
        keep_alive: bool,
    ) -> std::io::Result<()> {
        stream
            .write_all(&self.to_bytes(head_only, keep_alive))
            .await?;
        stream.flush().await
    }
}

/// The Content-Type for a file name.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "json" | "map" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "ico" => "image/x-icon",
        "txt" | "md" => "text/plain; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "webmanifest" => "application/manifest+json",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// Maps a request path to a file under `web`, refusing anything that could leave it: only
/// `A-Z a-z 0-9 . _ -` in segments, no empty, `.` or `..` segments and no hidden files.
pub fn resolve_static(web: &Path, path: &str) -> Option<PathBuf> {
    let rel = match path {
        "/" | "/index.html" => "index.html",
        "/hospital" | "/hospital/" => "hospital.html",
        p => p.strip_prefix('/')?,
    };
    let mut out = web.to_path_buf();
    for seg in rel.split('/') {
        let ok = !seg.is_empty()
            && !seg.starts_with('.')
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
        if !ok {
            return None;
        }
        out.push(seg);
    }
    Some(out)
}

/// Serves a static file, or 404.
pub async fn static_file(web: &Path, path: &str) -> Response {
    let Some(file) = resolve_static(web, path) else {
        return Response::new(404, "text/plain; charset=utf-8", b"not found\n".to_vec());
    };
    match tokio::fs::metadata(&file).await {
        Ok(m) if m.is_file() => {}
        _ => return Response::new(404, "text/plain; charset=utf-8", b"not found\n".to_vec()),
    }
    match tokio::fs::read(&file).await {
        Ok(bytes) => Response::new(200, content_type(&file), bytes),
        Err(_) => Response::new(404, "text/plain; charset=utf-8", b"not found\n".to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parses_requests_with_bodies_and_pipelining() {
        let raw = b"POST /api/studies?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nAuthorization: Bearer t\r\n\r\nhelloGET / HTTP/1.0\r\n\r\n";
        let mut rd = &raw[..];
        let mut buf = Vec::new();
        let r = read_request(&mut rd, &mut buf).await.unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/api/studies");
        assert_eq!(r.query.as_deref(), Some("x=1"));
        assert_eq!(r.header("authorization"), Some("Bearer t"));
        assert_eq!(r.body, b"hello");
        assert!(r.keep_alive());
        let r = read_request(&mut rd, &mut buf).await.unwrap();
        assert_eq!(r.path, "/");
        assert!(!r.keep_alive());
        assert!(matches!(
            read_request(&mut rd, &mut buf).await,
            Err(ReadError::Closed)
        ));
    }

    #[tokio::test]
    async fn refuses_oversize_and_malformed() {
        let big = format!(
            "GET / HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD_BYTES)
        );
        let mut rd = big.as_bytes();
        assert!(matches!(
            read_request(&mut rd, &mut Vec::new()).await,
            Err(ReadError::TooLarge)
        ));
        let body = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY_BYTES + 1
        );
        let mut rd = body.as_bytes();
        assert!(matches!(
            read_request(&mut rd, &mut Vec::new()).await,
            Err(ReadError::BodyTooLarge)
        ));
        for bad in [
            &b"NOT HTTP\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n",
        ] {
            let mut rd = bad;
            assert!(matches!(
                read_request(&mut rd, &mut Vec::new()).await,
                Err(ReadError::Malformed)
            ));
        }
    }

    #[test]
    fn static_paths_stay_inside_the_web_dir() {
        let web = Path::new("/srv/www");
        assert_eq!(resolve_static(web, "/"), Some(web.join("index.html")));
        assert_eq!(
            resolve_static(web, "/hospital"),
            Some(web.join("hospital.html"))
        );
        assert_eq!(
            resolve_static(web, "/pkg/cohort_web_bg.wasm"),
            Some(web.join("pkg/cohort_web_bg.wasm"))
        );
        for bad in [
            "/../etc/passwd",
            "/a/../../b",
            "/.git/config",
            "//x",
            "/a%2e%2e",
            "/a\\b",
            "x",
        ] {
            assert_eq!(resolve_static(web, bad), None, "{bad}");
        }
        assert_eq!(content_type(Path::new("a.wasm")), "application/wasm");
        assert!(content_type(Path::new("a.js")).starts_with("text/javascript"));
        assert!(content_type(Path::new("a.css")).starts_with("text/css"));
        assert_eq!(content_type(Path::new("a.svg")), "image/svg+xml");
    }

    #[test]
    fn responses_carry_security_headers() {
        let r = Response::error(401, "unauthorized");
        let text = String::from_utf8(r.to_bytes(false, true)).unwrap();
        assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"));
        assert!(text.contains("Content-Security-Policy: default-src 'self'"));
        assert!(text.contains("X-Content-Type-Options: nosniff"));
        assert!(text.contains("Referrer-Policy: no-referrer"));
        assert!(text.ends_with("{\"error\":\"unauthorized\"}"));
    }
}
