//! Traffic and live-log reading for the access-log tests: many requests through a real Caddy
//! from a few concurrent keep-alive clients, each to its own path, and a small Server-Sent
//! Events reader over a reqwest byte stream (the parsing is ours, so the tests see exactly
//! what the wire carries).

use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Sends `GET /r/<n>` for every `n` in `range` to Caddy on `127.0.0.1:<port>` with `Host:
/// <host>`, from `clients` concurrent tasks sharing one pooled client. Each path is requested
/// once, never retried (a retry could log a path twice); panics on the first failure.
pub async fn requests(port: u16, host: &str, range: std::ops::Range<usize>, clients: usize) {
    requests_padded(port, host, range, clients, 0).await;
}

/// As [`requests`], each path followed by `?pad=` and `pad` bytes, for longer log lines.
pub async fn requests_padded(
    port: u16,
    host: &str,
    range: std::ops::Range<usize>,
    clients: usize,
    pad: usize,
) {
    let query = if pad == 0 {
        String::new()
    } else {
        format!("?pad={}", "x".repeat(pad))
    };
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(clients)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let next = Arc::new(AtomicUsize::new(range.start));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (http, next, host) = (http.clone(), Arc::clone(&next), host.to_string());
            let query = query.clone();
            let end = range.end;
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= end {
                        return;
                    }
                    let response = http
                        .get(format!("http://127.0.0.1:{port}/r/{n}{query}"))
                        .header(reqwest::header::HOST, &host)
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("GET /r/{n}: {e}"));
                    assert!(
                        response.status().is_success(),
                        "GET /r/{n}: {}",
                        response.status()
                    );
                    // Read the body so the connection goes back to the pool.
                    response.bytes().await.expect("body");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a client task panicked");
    }
}

/// One event as it came over the wire; comments (keep-alives) are not events.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {:?}", self.data))
    }

    /// The `id:` of a `log` event, as a number.
    pub fn log_id(&self) -> u64 {
        assert_eq!(self.event, "log", "{self:?}");
        self.id
            .as_deref()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("a log event without a numeric id: {self:?}"))
    }
}

/// A Server-Sent Events response being read.
pub struct SseReader {
    body: futures::stream::BoxStream<'static, Result<Vec<u8>, String>>,
    buffer: Vec<u8>,
    /// How much of `buffer` has been parsed.
    read: usize,
    /// Keep-alive comments seen so far.
    pub comments: Vec<String>,
}

impl SseReader {
    /// Checks the response is an event stream and starts reading it.
    pub fn new(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Self {
            body: response
                .bytes_stream()
                .map(|chunk| chunk.map(Vec::from).map_err(|e| e.to_string()))
                .boxed(),
            buffer: Vec::new(),
            read: 0,
            comments: Vec::new(),
        }
    }

    /// `GET <path>` over a plain socket whose receive buffer is pinned to `recv_buffer` bytes
    /// (Linux otherwise grows a loopback receive buffer to tens of MiB, which would hide a
    /// reader that stops reading), decoding HTTP/1.1 chunked framing ourselves.
    pub async fn over_small_socket(
        addr: std::net::SocketAddr,
        path: &str,
        token: &str,
        recv_buffer: u32,
    ) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(recv_buffer).expect("SO_RCVBUF");
        let mut stream = socket.connect(addr).await.expect("connect");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut head = Vec::new();
        let end = loop {
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            let mut byte = [0; 512];
            let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
                .await
                .expect("response headers in time")
                .expect("read");
            assert!(n > 0, "the connection closed before the headers");
            head.extend_from_slice(&byte[..n]);
        };
        let rest = head.split_off(end + 4);
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("content-type: text/event-stream"), "{head}");
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        let body = futures::stream::unfold(
            (stream, Dechunker::default(), rest),
            |(mut stream, mut dechunker, mut pending)| async move {
                loop {
                    let decoded = dechunker.feed(&mut pending);
                    if !decoded.is_empty() {
                        return Some((Ok(decoded), (stream, dechunker, pending)));
                    }
                    let mut buf = vec![0; 16 * 1024];
                    match stream.read(&mut buf).await {
                        Ok(0) => return None,
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                        Err(err) => {
                            return Some((Err(err.to_string()), (stream, dechunker, pending)));
                        }
                    }
                }
            },
        );
        Self {
            body: body.boxed(),
            buffer: Vec::new(),
            read: 0,
            comments: Vec::new(),
        }
    }

    /// The next event, or `None` if none arrives within `wait` or the stream ends.
    pub async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(event) = self.take_event() {
                return Some(event);
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Ok(Some(Ok(chunk))) => self.buffer.extend_from_slice(&chunk),
                Ok(Some(Err(err))) => panic!("the event stream failed: {err}"),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Parses complete blocks (ended by a blank line) until one is an event.
    fn take_event(&mut self) -> Option<SseEvent> {
        loop {
            let unread = &self.buffer[self.read..];
            let end = unread.windows(2).position(|w| w == b"\n\n")?;
            let block = String::from_utf8(unread[..end].to_vec()).expect("the stream is UTF-8");
            self.read += end + 2;
            // Drop what was read now and then, not per event: a large buffer is not moved
            // once per event.
            if self.read > 64 * 1024 {
                self.buffer.drain(..self.read);
                self.read = 0;
            }
            let (mut id, mut name, mut data) = (None, None, Vec::new());
            for line in block.lines() {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "" => self.comments.push(value.to_string()),
                    "id" => id = Some(value.to_string()),
                    "event" => name = Some(value.to_string()),
                    "data" => data.push(value),
                    other => panic!("unexpected SSE field {other:?} in {block:?}"),
                }
            }
            if id.is_some() || name.is_some() || !data.is_empty() {
                return Some(SseEvent {
                    id,
                    event: name.unwrap_or_else(|| "message".into()),
                    data: data.join("\n"),
                });
            }
        }
    }
}

/// HTTP/1.1 chunked transfer decoding, fed whatever bytes have arrived.
#[derive(Default)]
struct Dechunker {
    /// Data bytes left in the current chunk, then its closing CRLF.
    left: usize,
    in_chunk: bool,
}

impl Dechunker {
    /// Takes what it can decode from the front of `input`, leaving an incomplete size line.
    fn feed(&mut self, input: &mut Vec<u8>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            if self.in_chunk {
                let take = self.left.min(input.len() - at);
                out.extend_from_slice(&input[at..at + take]);
                at += take;
                self.left -= take;
                if self.left > 0 || input.len() - at < 2 {
                    break;
                }
                assert_eq!(&input[at..at + 2], b"\r\n", "a chunk ends with CRLF");
                at += 2;
                self.in_chunk = false;
            }
            let Some(end) = input[at..].windows(2).position(|w| w == b"\r\n") else {
                break;
            };
            let line = std::str::from_utf8(&input[at..at + end]).expect("a chunk size");
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size {line:?}"));
            at += end + 2;
            self.left = size;
            self.in_chunk = true;
            if size == 0 {
                break;
            }
        }
        input.drain(..at);
        out
    }
}
