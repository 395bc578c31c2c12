//! The agent's access-log side against a real Caddy 2.6.2 writing and rolling a real JSON
//! access log, and the real agent binary: `/logs`, `/logs/stream` (read with our own SSE
//! parser), exactly-once delivery through Caddy's rolling, resuming across a `kill -9`, a
//! reader that stops reading, and damaged lines. Every test runs its own Caddy and agent on
//! their own ports; both are stopped by PID.

use crate::common::binary;
use crate::common::caddy::{CADDY_BINARY, Caddy};
use crate::common::loadgen::{SseEvent, SseReader, requests, requests_padded};
use crate::common::{ChildGuard, free_port};
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TOKEN: &str = "test-logs-agent-token-0123456789";
/// The smallest roll Caddy 2.6 makes: it rounds `roll_size` up to whole MiB.
const ROLL_SIZE: &str = "1MiB";

/// The agent binary following an access log in its own temp dir, restartable on the same
/// address with the same state file.
struct LogAgent {
    process: Option<ChildGuard>,
    /// Extra `GATEHOUSE_AGENT_*` settings.
    env: Vec<(&'static str, String)>,
    addr: SocketAddr,
    caddy_admin: String,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl LogAgent {
    async fn start(caddy: &Caddy) -> Self {
        Self::start_with(caddy, Vec::new()).await
    }

    async fn start_with(caddy: &Caddy, env: Vec<(&'static str, String)>) -> Self {
        let mut agent = Self {
            process: None,
            env,
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            caddy_admin: caddy.admin_url(),
            dir: tempfile::tempdir().expect("temp dir for the agent"),
            // No overall timeout: event streams stay open; each read is bounded instead.
            http: reqwest::Client::builder()
                .no_proxy()
                .connect_timeout(Duration::from_secs(5))
                .build()
                .expect("client"),
        };
        std::fs::create_dir(agent.log_dir()).expect("the access log's directory");
        agent.restart().await;
        agent
    }

    fn log_dir(&self) -> PathBuf {
        self.dir.path().join("caddy-logs")
    }

    fn access_log(&self) -> PathBuf {
        self.log_dir().join("access.log")
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn pid(&self) -> u32 {
        self.process.as_ref().expect("running").pid()
    }

    /// The agent's own log, for failure messages.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// Starts the process (again) on the same address and waits (bounded) for /health.
    async fn restart(&mut self) {
        // A running process is stopped (by its guard) before the next one takes the address.
        self.process = None;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .expect("agent log file");
        let mut command = binary::agent(&self.addr.to_string(), TOKEN, &self.caddy_admin);
        command
            .env("GATEHOUSE_AGENT_CADDY_BINARY", CADDY_BINARY)
            .env("GATEHOUSE_AGENT_ACCESS_LOG", self.access_log())
            .env(
                "GATEHOUSE_AGENT_STATE_FILE",
                self.dir.path().join("state.json"),
            )
            .env("GATEHOUSE_AGENT_LOG_LEVEL", "info")
            .envs(self.env.iter().map(|(k, v)| (*k, v)))
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        let health = self.url("/health");
        self.process = Some(binary::start(&mut command, &health, || self.log()).await);
    }

    /// SIGKILL, as a crash would, and reap it.
    fn kill9(&mut self) {
        let mut process = self.process.take().expect("running");
        process.0.kill().expect("SIGKILL");
        process.0.wait().expect("reap");
    }

    async fn health(&self) -> Value {
        self.http
            .get(self.url("/health"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("GET /health")
            .json()
            .await
            .expect("JSON health")
    }

    async fn get(&self, path_and_query: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(self.url(path_and_query))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("GET");
        let status = response.status();
        (status, response.json().await.expect("JSON"))
    }

    /// `GET /logs/stream`, with `Last-Event-ID` when given.
    async fn stream(&self, last_event_id: Option<u64>) -> SseReader {
        let mut request = self.http.get(self.url("/logs/stream")).bearer_auth(TOKEN);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = tokio::time::timeout(Duration::from_secs(10), request.send())
            .await
            .expect("the stream's headers in time")
            .expect("GET /logs/stream");
        SseReader::new(response)
    }

    /// Loads a Caddyfile through the agent whose one site logs to the agent's access log.
    async fn serve_logged_site(&self, caddy: &Caddy) -> String {
        let host = format!("logs.localhost:{}", caddy.http_port);
        let caddyfile = format!(
            "{{\n\tadmin {admin}\n\tauto_https off\n}}\n\nhttp://{host} {{\n\tbind 127.0.0.1\n\tlog {{\n\t\toutput file {log} {{\n\t\t\troll_size {ROLL_SIZE}\n\t\t\troll_keep 100\n\t\t}}\n\t\tformat json\n\t}}\n\trespond \"ok\" 200\n}}\n",
            admin = caddy.admin_addr(),
            log = self.access_log().display(),
        );
        let response = self
            .http
            .post(self.url("/caddy/reload"))
            .bearer_auth(TOKEN)
            .body(caddyfile)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("POST /caddy/reload");
        let status = response.status();
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(status, StatusCode::OK, "{body}\n{}", caddy.log());
        assert_eq!(body["warnings"], serde_json::json!([]), "{body}");
        host
    }

    /// The files Caddy rolled away and gzipped so far.
    fn rolled_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.log_dir())
            .expect("the log dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("access-") && name.ends_with(".log.gz"))
            .collect();
        names.sort();
        names
    }
}

/// `VmRSS` of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

/// Reads events until `want` log events have come, failing on silence longer than `quiet`
/// or anything past `deadline`.
async fn read_logs(
    stream: &mut SseReader,
    want: usize,
    quiet: Duration,
    deadline: Duration,
) -> Vec<SseEvent> {
    let started = Instant::now();
    let mut events = Vec::with_capacity(want);
    let mut logs = 0;
    while logs < want {
        assert!(
            started.elapsed() < deadline,
            "only {logs} of {want} log events within {deadline:?}"
        );
        let event = stream.next(quiet).await.unwrap_or_else(|| {
            panic!("only {logs} of {want} log events, then nothing for {quiet:?}")
        });
        if event.event == "log" {
            logs += 1;
        }
        events.push(event);
    }
    events
}

fn uri(event: &SseEvent) -> String {
    event.json()["uri"]
        .as_str()
        .expect("an entry has a uri")
        .to_string()
}

fn append(path: &Path, text: &str) {
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("the access log exists")
        .write_all(text.as_bytes())
        .expect("append");
}

#[tokio::test]
async fn requests_through_caddy_appear_on_logs_and_on_the_stream() {
    let caddy = Caddy::start().await;
    let agent = LogAgent::start(&caddy).await;
    let host = agent.serve_logged_site(&caddy).await;
    let mut stream = agent.stream(None).await;

    for path in ["/first?x=1", "/second", "/third"] {
        assert_eq!(caddy.get(&host, path).await, (200, "ok".into()));
    }

    let events = read_logs(
        &mut stream,
        3,
        Duration::from_secs(10),
        Duration::from_secs(20),
    )
    .await;
    let entries: Vec<Value> = events.iter().map(SseEvent::json).collect();
    assert_eq!(
        events.iter().map(SseEvent::log_id).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(
        entries.iter().map(|e| e["uri"].clone()).collect::<Vec<_>>(),
        ["/first?x=1", "/second", "/third"]
    );
    let first = &entries[0];
    assert_eq!(first["id"], 1);
    assert_eq!(first["host"], host);
    assert_eq!(first["method"], "GET");
    assert_eq!(first["status"], 200);
    assert_eq!(first["size"], 2);
    assert_eq!(first["remote_ip"], "127.0.0.1");
    assert_eq!(first["level"], "info");
    assert!(first["ts"].as_f64().is_some_and(|ts| ts > 1.7e9), "{first}");
    assert!(
        first["duration"].as_f64().is_some_and(|d| d >= 0.0),
        "{first}"
    );

    let (status, page) = agent.get("/logs").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["last_id"], 3);
    assert_eq!(page["malformed"], 0);
    assert_eq!(page["entries"].as_array().unwrap(), &entries);

    let (_, page) = agent.get("/logs?since=1&limit=1").await;
    assert_eq!(page["entries"][0]["uri"], "/second");
    assert_eq!(page["entries"].as_array().unwrap().len(), 1);
    let (_, page) = agent.get("/logs?limit=2").await;
    let uris: Vec<&Value> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["uri"])
        .collect();
    assert_eq!(uris, ["/second", "/third"]);
    let (_, page) = agent.get("/logs?host=LOGS.localhost").await;
    assert_eq!(page["entries"].as_array().unwrap().len(), 3);
    let (_, page) = agent.get("/logs?host=other.localhost").await;
    assert_eq!(page["entries"], serde_json::json!([]));
    let mut replay = SseReader::new(
        agent
            .http
            .get(agent.url("/logs/stream?since=1"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("GET /logs/stream?since=1"),
    );
    let replayed = read_logs(
        &mut replay,
        2,
        Duration::from_secs(5),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        replayed.iter().map(SseEvent::log_id).collect::<Vec<_>>(),
        [2, 3]
    );
    let (status, body) = agent.get("/logs?limit=many").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let health = agent.health().await;
    assert_eq!(
        health["log"],
        serde_json::json!({
            "malformed": 0,
            "last_id": 3,
            "file": agent.access_log().to_str().unwrap(),
        })
    );
}

#[tokio::test]
async fn the_log_routes_need_the_token() {
    let caddy = Caddy::start().await;
    let agent = LogAgent::start(&caddy).await;

    for path in ["/logs", "/logs/stream"] {
        let response = agent
            .http
            .get(agent.url(path))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_requests_through_several_rolls_reach_a_live_reader_exactly_once_in_order() {
    const REQUESTS: usize = 50_000;
    let caddy = Caddy::start().await;
    let agent = LogAgent::start(&caddy).await;
    let host = agent.serve_logged_site(&caddy).await;
    let mut stream = agent.stream(None).await;
    let started = Instant::now();

    let reader = tokio::spawn(async move {
        let events = read_logs(
            &mut stream,
            REQUESTS,
            Duration::from_secs(20),
            Duration::from_secs(120),
        )
        .await;
        (events, started.elapsed())
    });
    requests(caddy.http_port, &host, 0..REQUESTS, 8).await;
    let sent_in = started.elapsed();
    let (events, read_in) = reader.await.expect("the reader");

    let others: Vec<&SseEvent> = events.iter().filter(|e| e.event != "log").collect();
    assert!(others.is_empty(), "gaps or other events: {others:?}");
    let ids: Vec<u64> = events.iter().map(SseEvent::log_id).collect();
    for pair in ids.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "ids must go up one by one");
    }
    assert_eq!(ids[0], 1);
    let uris: HashSet<String> = events.iter().map(uri).collect();
    assert_eq!(uris.len(), REQUESTS, "a path came twice");
    assert!(
        (0..REQUESTS).all(|n| uris.contains(&format!("/r/{n}"))),
        "a path is missing"
    );
    // Caddy gzips a rolled file in the background; give the last one a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while agent.rolled_files().len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rolled = agent.rolled_files();
    assert!(rolled.len() >= 2, "Caddy rolled only {rolled:?}");
    let health = agent.health().await;
    assert_eq!(health["log"]["malformed"], 0, "{health}");
    eprintln!(
        "{REQUESTS} requests sent in {sent_in:.1?}, all read in {read_in:.1?}, through {} rolls; agent RSS {} KiB",
        rolled.len(),
        rss_kib(agent.pid())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_resumes_across_an_agent_killed_and_restarted_without_gap_or_repeat() {
    let caddy = Caddy::start().await;
    let mut agent = LogAgent::start(&caddy).await;
    let host = agent.serve_logged_site(&caddy).await;
    let mut stream = agent.stream(None).await;
    requests(caddy.http_port, &host, 0..100, 1).await;
    let before = read_logs(
        &mut stream,
        40,
        Duration::from_secs(10),
        Duration::from_secs(20),
    )
    .await;
    let last_seen = before.last().unwrap().log_id();
    assert_eq!(last_seen, 40);
    drop(stream);

    agent.kill9();
    requests(caddy.http_port, &host, 100..200, 1).await;
    agent.restart().await;
    let mut stream = agent.stream(Some(last_seen)).await;
    let after = read_logs(
        &mut stream,
        160,
        Duration::from_secs(10),
        Duration::from_secs(30),
    )
    .await;

    let others: Vec<&SseEvent> = after.iter().filter(|e| e.event != "log").collect();
    assert!(others.is_empty(), "gaps or other events: {others:?}");
    let ids: Vec<u64> = after.iter().map(SseEvent::log_id).collect();
    assert_eq!(ids, (41..=200).collect::<Vec<u64>>());
    let uris: Vec<String> = after.iter().map(uri).collect();
    let expected: Vec<String> = (40..200).map(|n| format!("/r/{n}")).collect();
    assert_eq!(
        uris, expected,
        "the same ids name the same requests as before"
    );
    assert!(
        stream.next(Duration::from_millis(500)).await.is_none(),
        "nothing after the last request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_gets_a_gap_and_the_agent_memory_stays_bounded() {
    const REQUESTS: usize = 20_000;
    let caddy = Caddy::start().await;
    let agent = LogAgent::start(&caddy).await;
    let host = agent.serve_logged_site(&caddy).await;
    // A reader whose socket buffer is tiny, so not reading soon stalls the agent's writes.
    let mut stalled =
        SseReader::over_small_socket(agent.addr, "/logs/stream", TOKEN, 64 * 1024).await;

    // The kernel queues up to 4 MiB for the stalled socket (tcp_wmem); a 1 KiB query
    // string per request makes that about 3,000 events, well short of the 20,000 written.
    requests_padded(caddy.http_port, &host, 0..REQUESTS, 8, 1024).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Value::Null;
    while Instant::now() < deadline {
        seen = agent.get("/logs?limit=1").await.1["last_id"].clone();
        if seen == REQUESTS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, REQUESTS, "the agent read every line Caddy wrote");
    let rss = rss_kib(agent.pid());

    let stalled_at = Instant::now();
    let (mut logs, mut missing) = (0, 0);
    while logs + missing < REQUESTS as u64 && stalled_at.elapsed() < Duration::from_secs(60) {
        let Some(event) = stalled.next(Duration::from_secs(10)).await else {
            break;
        };
        match event.event.as_str() {
            "log" => logs += 1,
            "gap" => missing += event.json()["missing"].as_u64().expect("a count"),
            other => panic!("unexpected event {other}"),
        }
    }
    eprintln!(
        "stalled reader: {logs} entries and {missing} reported missing, read in {:.1?}; agent RSS {rss} KiB",
        stalled_at.elapsed()
    );
    assert!(missing > 0, "no gap event ({logs} entries arrived)");
    assert_eq!(
        logs + missing,
        REQUESTS as u64,
        "every line is delivered or counted"
    );
    assert!(rss < 200 * 1024, "agent RSS {rss} KiB");
}

#[tokio::test]
async fn a_malformed_line_is_counted_in_health_and_the_stream_goes_on() {
    let caddy = Caddy::start().await;
    let agent = LogAgent::start(&caddy).await;
    // Caddy opens an existing log with O_APPEND (a new one without): created first, our line
    // and Caddy's interleave instead of Caddy writing over ours.
    std::fs::File::create(agent.access_log()).expect("create the access log");
    let host = agent.serve_logged_site(&caddy).await;
    let mut stream = agent.stream(None).await;

    assert_eq!(caddy.get(&host, "/before").await.0, 200);
    let first = read_logs(
        &mut stream,
        1,
        Duration::from_secs(10),
        Duration::from_secs(10),
    )
    .await;
    append(&agent.access_log(), "this is not an access-log line\n");
    append(
        &agent.access_log(),
        "{\"level\":\"info\",\"ts\":1.5,\"logger\":\"http.log\",\"msg\":\"not an access line\"}\n",
    );
    assert_eq!(caddy.get(&host, "/after").await.0, 200);
    let second = read_logs(
        &mut stream,
        1,
        Duration::from_secs(10),
        Duration::from_secs(10),
    )
    .await;

    assert_eq!(uri(&first[0]), "/before");
    assert_eq!(uri(&second[0]), "/after");
    // The skipped lines keep their ids: 2 and 3.
    assert_eq!((first[0].log_id(), second[0].log_id()), (1, 4));
    let health = agent.health().await;
    assert_eq!(health["log"]["malformed"], 1, "{health}");
    assert_eq!(health["log"]["last_id"], 4, "{health}");
    assert_eq!(agent.get("/logs").await.1["malformed"], 1);
}

#[tokio::test]
async fn the_agent_stops_promptly_on_sigterm_with_a_stream_open() {
    let caddy = Caddy::start().await;
    let mut agent = LogAgent::start(&caddy).await;
    let mut stream = agent.stream(None).await;
    let started = Instant::now();

    let status = agent.process.as_mut().expect("running").terminate();

    assert!(status.success(), "{status}\n{}", agent.log());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        stream.next(Duration::from_secs(2)).await.is_none(),
        "the stream ended"
    );
}

#[tokio::test]
async fn resuming_from_further_back_than_the_agent_keeps_starts_with_a_gap() {
    let caddy = Caddy::start().await;
    let agent = LogAgent::start_with(
        &caddy,
        vec![("GATEHOUSE_AGENT_LOG_BUFFER_LINES", "5".into())],
    )
    .await;
    let host = agent.serve_logged_site(&caddy).await;
    requests(caddy.http_port, &host, 0..20, 1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while agent.get("/logs").await.1["last_id"] != 20 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut stream = agent.stream(Some(3)).await;
    let events = read_logs(
        &mut stream,
        5,
        Duration::from_secs(5),
        Duration::from_secs(10),
    )
    .await;

    assert_eq!(events[0].event, "gap");
    assert_eq!(events[0].id, None, "a gap does not move Last-Event-ID");
    assert_eq!(events[0].json(), serde_json::json!({ "missing": 12 }));
    assert_eq!(
        events[1..].iter().map(SseEvent::log_id).collect::<Vec<_>>(),
        [16, 17, 18, 19, 20]
    );
    let response = agent
        .http
        .get(agent.url("/logs/stream"))
        .bearer_auth(TOKEN)
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}
