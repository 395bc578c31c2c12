//! Live access logs through the hub: one upstream SSE connection per agent, shared by every
//! browser that watches (a broadcast channel), never one per tab. The connection opens on
//! the first viewer, resumes from the last event id after a drop (backing off), and closes
//! when nobody has watched for a grace period. A browser that reads too slowly misses lines
//! and is told how many, so memory stays bounded whatever it does.

use super::Fleet;
use crate::db::agents::Agent;
use crate::db::{Db, agents};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// One access-log line, as the agent parses and sends it.
pub(crate) use crate::domain::access_log::Entry as LogEntry;

/// What a watcher receives.
#[derive(Debug, Clone)]
pub(crate) enum LogEvent {
    Line {
        agent: Arc<str>,
        entry: Arc<LogEntry>,
    },
    /// The agent reported lines it could not deliver (its ring overflowed).
    Gap { agent: Arc<str>, missing: u64 },
}

/// Lines kept in flight per agent for slow watchers before they start skipping.
const CHANNEL: usize = 8192;

struct Upstream {
    tx: broadcast::Sender<LogEvent>,
    task: tokio::task::JoinHandle<()>,
}

/// The per-agent upstreams, shared by the whole hub.
pub struct LogHub {
    upstreams: Mutex<HashMap<i64, Upstream>>,
    /// An upstream nobody watches is closed after this long.
    grace: Duration,
    pub(crate) stats: LogStats,
}

/// What `/metrics` reports about live logs.
#[derive(Clone, Default)]
pub(crate) struct LogStats {
    /// Lines received from agents.
    pub(crate) received: prometheus_client::metrics::counter::Counter,
    /// Lines sent to viewers (after visibility filtering), counted once per viewer.
    pub(crate) streamed: prometheus_client::metrics::counter::Counter,
    /// Lines a viewer missed because it read too slowly, or an agent could not deliver.
    pub(crate) dropped: prometheus_client::metrics::counter::Counter,
}

impl LogStats {
    pub(crate) fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "gatehouse_log_lines_received",
            "Access-log lines received from agents",
            self.received.clone(),
        );
        registry.register(
            "gatehouse_log_lines_streamed",
            "Access-log lines sent to live viewers, once per viewer",
            self.streamed.clone(),
        );
        registry.register(
            "gatehouse_log_lines_dropped",
            "Access-log lines a viewer or an agent could not deliver",
            self.dropped.clone(),
        );
    }
}

impl LogHub {
    pub(crate) fn new(grace: Duration) -> Self {
        Self {
            upstreams: Mutex::new(HashMap::new()),
            grace,
            stats: LogStats::default(),
        }
    }

    /// A receiver of agent `agent`'s live lines, opening the upstream if needed.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        db: &Db,
        fleet: &Arc<Fleet>,
        agent: &Agent,
    ) -> broadcast::Receiver<LogEvent> {
        let mut map = self.upstreams.lock().expect("log hub lock");
        if let Some(up) = map.get(&agent.id).filter(|u| !u.task.is_finished()) {
            return up.tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(CHANNEL);
        let task = tokio::spawn(run_upstream(
            Arc::clone(self),
            db.clone(),
            Arc::clone(fleet),
            agent.id,
            tx.clone(),
        ));
        map.insert(agent.id, Upstream { tx, task });
        rx
    }

    /// How many upstream connections are open (one per watched agent).
    pub fn open_upstreams(&self) -> usize {
        self.upstreams
            .lock()
            .expect("log hub lock")
            .values()
            .filter(|u| !u.task.is_finished())
            .count()
    }

    /// Closes the upstream of `agent` if nobody has watched it for the grace period. Decided
    /// under the same lock `subscribe` takes, so a viewer never joins an upstream that is
    /// about to go away.
    fn close_if_idle(
        &self,
        agent: i64,
        tx: &broadcast::Sender<LogEvent>,
        since: &mut Option<tokio::time::Instant>,
    ) -> bool {
        let mut map = self.upstreams.lock().expect("log hub lock");
        if !idle(tx, since, self.grace) {
            return false;
        }
        map.remove(&agent);
        true
    }

    fn close(&self, agent: i64) {
        self.upstreams.lock().expect("log hub lock").remove(&agent);
    }
}

/// Follows one agent's `/logs/stream` for as long as someone watches.
async fn run_upstream(
    hub: Arc<LogHub>,
    db: Db,
    fleet: Arc<Fleet>,
    id: i64,
    tx: broadcast::Sender<LogEvent>,
) {
    let mut last_id: Option<u64> = None;
    let mut backoff = Duration::from_millis(250);
    let mut idle_since: Option<tokio::time::Instant> = None;
    loop {
        let Ok(Some(agent)) = db.run(move |c| agents::find(c, id)).await else {
            break;
        };
        let name: Arc<str> = Arc::from(agent.name.as_str());
        // The agent's own trust settings (CA or pin) apply to its log stream too.
        let client = match fleet.client_for(&agent) {
            Ok(client) => client,
            Err(error) => {
                tracing::warn!(agent = %agent.name, %error, "no client for the log stream");
                tokio::time::sleep(Duration::from_secs(5)).await;
                if hub.close_if_idle(id, &tx, &mut idle_since) {
                    return;
                }
                continue;
            }
        };
        let mut request = client
            .get(format!("{}/logs/stream", agent.url.trim_end_matches('/')))
            .bearer_auth(agent.token.expose());
        if let Some(last) = last_id {
            request = request.header("Last-Event-ID", last.to_string());
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                backoff = Duration::from_millis(250);
                let mut parser = SseParser::default();
                let mut body = response.bytes_stream();
                loop {
                    let chunk = tokio::select! {
                        chunk = body.next() => chunk,
                        // Wake up now and then to notice that nobody watches any more.
                        () = tokio::time::sleep(Duration::from_secs(1)) => {
                            if hub.close_if_idle(id, &tx, &mut idle_since) { return; }
                            continue;
                        }
                    };
                    let Some(Ok(bytes)) = chunk else { break };
                    for event in parser.feed(&bytes) {
                        match event.kind.as_str() {
                            "log" => {
                                if let Ok(entry) = serde_json::from_str::<LogEntry>(&event.data) {
                                    last_id = Some(entry.id);
                                    hub.stats.received.inc();
                                    let _ = tx.send(LogEvent::Line {
                                        agent: name.clone(),
                                        entry: Arc::new(entry),
                                    });
                                }
                            }
                            "gap" => {
                                let missing = serde_json::from_str::<crate::wire::Gap>(&event.data)
                                    .map_or(0, |gap| gap.missing);
                                hub.stats.dropped.inc_by(missing);
                                let _ = tx.send(LogEvent::Gap {
                                    agent: name.clone(),
                                    missing,
                                });
                            }
                            _ => {}
                        }
                    }
                    if hub.close_if_idle(id, &tx, &mut idle_since) {
                        return;
                    }
                }
            }
            Ok(response) => {
                tracing::warn!(agent = %agent.name, status = %response.status(), "log stream refused")
            }
            Err(_) => tracing::debug!(agent = %agent.name, "log stream unreachable"),
        }
        if hub.close_if_idle(id, &tx, &mut idle_since) {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
    hub.close(id);
}

/// True once nobody has watched for the grace period.
fn idle(
    tx: &broadcast::Sender<LogEvent>,
    since: &mut Option<tokio::time::Instant>,
    grace: Duration,
) -> bool {
    if tx.receiver_count() > 0 {
        *since = None;
        return false;
    }
    let start = *since.get_or_insert_with(tokio::time::Instant::now);
    start.elapsed() >= grace
}

/// One Server-Sent Event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub(crate) id: Option<String>,
    pub(crate) kind: String,
    pub data: String,
}

/// An incremental SSE parser: bytes in, complete events out (comments dropped).
#[derive(Default)]
pub struct SseParser {
    buffer: Vec<u8>,
    current: SseEvent,
    has_data: bool,
}

impl SseParser {
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if self.has_data || !self.current.kind.is_empty() {
                    let mut event = std::mem::take(&mut self.current);
                    if event.kind.is_empty() {
                        event.kind = "message".into();
                    }
                    events.push(event);
                }
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line
                .split_once(':')
                .map_or((line, ""), |(f, v)| (f, v.strip_prefix(' ').unwrap_or(v)));
            match field {
                "id" => self.current.id = Some(value.to_string()),
                "event" => self.current.kind = value.to_string(),
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sse_parser_handles_split_chunks_comments_and_multiline_data() {
        let mut p = SseParser::default();
        assert!(p.feed(b": keep-alive\n\nid: 7\nevent: lo").is_empty());
        let events = p.feed(b"g\ndata: {\"a\":1}\n\nevent: gap\ndata: x\ndata: y\n\n");
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[0],
            SseEvent {
                id: Some("7".into()),
                kind: "log".into(),
                data: "{\"a\":1}".into()
            }
        );
        assert_eq!(events[1].kind, "gap");
        assert_eq!(events[1].data, "x\ny");
    }
}
