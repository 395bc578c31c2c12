//! The agent's recent access-log entries and the two routes that serve them: a bounded ring
//! for `GET /logs`, and a broadcast for `GET /logs/stream` (Server-Sent Events) that resumes
//! from `Last-Event-ID` without a gap or a duplicate between what is replayed and what is live.
//!
//! The [tailer](super::tailer) is the only writer. Memory stays bounded whatever the readers
//! do: the ring holds `log_buffer_lines` entries, the broadcast [`LIVE_CAPACITY`], and a
//! reader that falls further behind than that is told how many it missed (`event: gap`).

use super::AgentState;
use super::api::ErrorBody;
use crate::domain::access_log::{Entry, host_without_port};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt, stream};
use serde::Deserialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

/// Entries a live reader may fall behind before it is told it missed some. Large enough
/// for one read of the tailer (a MiB of log, about 2,500 lines) several times over, so a
/// reader that keeps up never sees a gap; small enough that a stalled one costs little, since
/// the entries themselves are shared with the ring.
pub const LIVE_CAPACITY: usize = 8_192;
/// `GET /logs` answers at most this many entries, whatever `limit` asks.
pub const MAX_LIMIT: usize = 10_000;
const DEFAULT_LIMIT: usize = 200;
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The shared store: cheap to clone.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Store>,
}

struct Store {
    ring: Mutex<Ring>,
    live: broadcast::Sender<Arc<Entry>>,
    malformed: AtomicU64,
    /// Entries read from the access log, sent to readers, and skipped for slow readers.
    read: prometheus_client::metrics::counter::Counter,
    streamed: prometheus_client::metrics::counter::Counter,
    dropped: prometheus_client::metrics::counter::Counter,
    /// Set when the agent shuts down: streams never end on their own, and a graceful
    /// shutdown waits for every open response.
    closing: watch::Sender<bool>,
}

struct Ring {
    entries: VecDeque<Arc<Entry>>,
    capacity: usize,
    /// Every entry with an id at or above this that was ever published is in `entries` (or is
    /// yet to come); ids below were evicted or belong to an earlier agent process.
    covered_from: u64,
}

/// What the ring holds after a given id.
pub struct Replay {
    pub entries: Vec<Arc<Entry>>,
    /// Ids after the requested one that the ring can no longer give.
    pub missing: u64,
}

impl LogStore {
    pub fn new(capacity: usize) -> Self {
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        Self {
            inner: Arc::new(Store {
                ring: Mutex::new(Ring {
                    entries: VecDeque::with_capacity(capacity.min(MAX_LIMIT)),
                    capacity: capacity.max(1),
                    covered_from: 1,
                }),
                live,
                malformed: AtomicU64::new(0),
                read: Default::default(),
                streamed: Default::default(),
                dropped: Default::default(),
                closing: watch::Sender::new(false),
            }),
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        // Every change to the ring leaves it consistent before the next line, so a panic
        // elsewhere while it was held does not make it unsound.
        self.inner
            .ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Says that this process starts numbering at `first_id`: lower ids, if any, were given
    /// out by an earlier process (or lost while none ran) and cannot be replayed.
    pub fn starts_at(&self, first_id: u64) {
        let mut ring = self.ring();
        if ring.entries.is_empty() {
            ring.covered_from = first_id;
        }
    }

    /// Adds entries (ids increasing), evicting the oldest, then sends them to live readers.
    /// Ring first, broadcast second: a reader subscribes before it reads the ring, so every
    /// entry reaches it one way or the other (see [`LogStore::subscribe`]).
    pub fn publish(&self, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        self.inner.read.inc_by(entries.len() as u64);
        let entries: Vec<Arc<Entry>> = entries.into_iter().map(Arc::new).collect();
        {
            let mut ring = self.ring();
            for entry in &entries {
                if ring.entries.len() == ring.capacity {
                    if let Some(evicted) = ring.entries.pop_front() {
                        ring.covered_from = evicted.id + 1;
                    }
                }
                ring.entries.push_back(Arc::clone(entry));
            }
        }
        for entry in entries {
            // No receiver is not an error: nobody is watching.
            let _ = self.inner.live.send(entry);
        }
    }

    /// Ends every event stream, so a graceful shutdown is not held up by them.
    pub fn close(&self) {
        self.inner.closing.send_replace(true);
    }

    pub fn count_malformed(&self, lines: u64) {
        self.inner.malformed.fetch_add(lines, Ordering::Relaxed);
    }

    /// The log counters, for `/metrics`.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        let malformed = prometheus_client::metrics::counter::Counter::<u64>::default();
        malformed.inc_by(self.malformed());
        registry.register(
            "gatehouse_agent_log_lines_read",
            "Access-log entries read from Caddy's access log",
            self.inner.read.clone(),
        );
        registry.register(
            "gatehouse_agent_log_lines_malformed",
            "Access-log lines that could not be read",
            malformed,
        );
        registry.register(
            "gatehouse_agent_log_lines_streamed",
            "Access-log entries sent to live readers (the hub), once per reader",
            self.inner.streamed.clone(),
        );
        registry.register(
            "gatehouse_agent_log_lines_dropped",
            "Access-log entries a live reader missed (it read too slowly, or resumed too late)",
            self.inner.dropped.clone(),
        );
    }

    /// Lines of the access log that could not be read, since the agent started.
    pub fn malformed(&self) -> u64 {
        self.inner.malformed.load(Ordering::Relaxed)
    }

    /// The newest id accounted for: the last entry's, or the one before the first this
    /// process will give out. Resuming from it replays nothing and reports no gap.
    pub fn last_id(&self) -> u64 {
        let ring = self.ring();
        ring.entries
            .back()
            .map_or(ring.covered_from.saturating_sub(1), |e| e.id)
    }

    /// Live entries from now on. Subscribe before [`LogStore::replay_after`], then drop live
    /// entries up to the last one replayed: nothing falls between the two, nothing comes twice.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Entry>> {
        self.inner.live.subscribe()
    }

    /// Every entry in the ring with an id above `since`, oldest first.
    pub fn replay_after(&self, since: u64) -> Replay {
        let ring = self.ring();
        let start = ring.entries.partition_point(|e| e.id <= since);
        Replay {
            entries: ring.entries.range(start..).cloned().collect(),
            missing: ring.covered_from.saturating_sub(since.saturating_add(1)),
        }
    }

    /// At most `limit` entries for `host` (port ignored, any case), oldest first: the first
    /// ones after `since`, or without it the most recent ones.
    pub fn query(&self, since: Option<u64>, limit: usize, host: Option<&str>) -> Vec<Entry> {
        let wanted = host.map(host_without_port);
        let matches = |e: &&Arc<Entry>| {
            wanted.is_none_or(|h| host_without_port(&e.host).eq_ignore_ascii_case(h))
        };
        let ring = self.ring();
        let mut out: Vec<Entry> = match since {
            Some(since) => {
                let start = ring.entries.partition_point(|e| e.id <= since);
                ring.entries
                    .range(start..)
                    .filter(matches)
                    .take(limit)
                    .map(|e| Entry::clone(e))
                    .collect()
            }
            None => ring
                .entries
                .iter()
                .rev()
                .filter(matches)
                .take(limit)
                .map(|e| Entry::clone(e))
                .collect(),
        };
        if since.is_none() {
            out.reverse();
        }
        out
    }
}

pub use crate::wire::{LogHealth, LogsPage};

impl LogHealth {
    pub fn of(state: &AgentState) -> Self {
        Self {
            malformed: state.logs().malformed(),
            last_id: state.logs().last_id(),
            file: state.config().access_log.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct LogsQuery {
    /// How many entries, at most [`MAX_LIMIT`]; 200 when absent.
    pub limit: Option<usize>,
    /// Only entries with a greater id.
    pub since: Option<u64>,
    /// Only entries for this host; the port and the case are ignored.
    pub host: Option<String>,
}

pub async fn recent(
    State(state): State<AgentState>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => return bad_request(rejection.body_text()),
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let logs = state.logs();
    let last_id = logs.last_id();
    let entries = logs.query(query.since, limit, query.host.as_deref());
    Json(LogsPage {
        entries,
        last_id,
        malformed: logs.malformed(),
    })
    .into_response()
}

#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    /// Resume after this id; the `Last-Event-ID` header, when sent, wins.
    pub since: Option<u64>,
}

/// `GET /logs/stream`: `event: log` per entry (`id:` is the entry's id, `data:` its JSON), and
/// `event: gap` with `{"missing": n}` when `n` ids cannot be delivered — older than the ring
/// on resume, or skipped because this reader fell behind. Without `Last-Event-ID` or `since`
/// only new entries are sent.
pub async fn stream(
    State(state): State<AgentState>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => return bad_request(rejection.body_text()),
    };
    let since = match headers.get("last-event-id") {
        Some(value) => match value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            Some(id) => Some(id),
            None => return bad_request("Last-Event-ID must be an entry id".into()),
        },
        None => query.since,
    };
    Sse::new(events(state.logs(), since))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response()
}

/// The replay after `since` (if any), then live entries, as SSE events.
pub fn events(
    logs: &LogStore,
    since: Option<u64>,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let live = logs.subscribe();
    let Replay { entries, missing } = match since {
        Some(since) => logs.replay_after(since),
        None => Replay {
            entries: Vec::new(),
            missing: 0,
        },
    };
    let seen = entries.last().map_or(since.unwrap_or(0), |e| e.id);
    let store = Arc::clone(&logs.inner);
    store.dropped.inc_by(missing);
    let gap = (missing > 0).then(|| gap_event(missing));
    let counted = Arc::clone(&store);
    let live = BroadcastStream::new(live).filter_map(move |item| {
        std::future::ready(match item {
            Ok(entry) if entry.id <= seen => None,
            Ok(entry) => {
                counted.streamed.inc();
                Some(log_event(&entry))
            }
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                counted.dropped.inc_by(n);
                Some(gap_event(n))
            }
        })
    });
    let mut closing = logs.inner.closing.subscribe();
    stream::iter(gap)
        .chain(stream::iter(entries).map(move |e| {
            store.streamed.inc();
            log_event(&e)
        }))
        .chain(live)
        .map(Ok)
        .take_until(async move {
            // An error means the store is gone, which is a shutdown too.
            let _ = closing.wait_for(|closing| *closing).await;
        })
}

fn log_event(entry: &Entry) -> Event {
    Event::default()
        .id(entry.id.to_string())
        .event("log")
        .json_data(entry)
        .expect("an entry serializes to JSON")
}

/// No `id:` line, so a browser's `Last-Event-ID` stays on the last entry it really got.
fn gap_event(missing: u64) -> Event {
    Event::default()
        .event("gap")
        .json_data(crate::wire::Gap { missing })
        .expect("a gap serializes to JSON")
}

fn bad_request(error: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(ErrorBody { error })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64, host: &str) -> Entry {
        Entry {
            id,
            ts: 1.0,
            host: host.into(),
            method: "GET".into(),
            uri: format!("/{id}"),
            status: 200,
            duration: 0.001,
            size: 2,
            remote_ip: "127.0.0.1".into(),
            level: "info".into(),
            tls: false,
        }
    }

    fn ids(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.id).collect()
    }

    #[test]
    fn the_ring_keeps_the_newest_entries_and_knows_what_it_lost() {
        let logs = LogStore::new(3);
        logs.publish((1..=5).map(|id| entry(id, "a:80")).collect());

        assert_eq!(ids(&logs.query(None, 10, None)), [3, 4, 5]);
        let replay = logs.replay_after(0);
        assert_eq!(replay.missing, 2);
        assert_eq!(replay.entries.len(), 3);
        assert_eq!(logs.replay_after(2).missing, 0);
        assert_eq!(logs.replay_after(4).entries.len(), 1);
        assert_eq!(logs.last_id(), 5);
    }

    #[test]
    fn a_query_takes_the_newest_without_since_and_the_next_ones_with_it() {
        let logs = LogStore::new(100);
        logs.publish((1..=10).map(|id| entry(id, "a:80")).collect());

        assert_eq!(ids(&logs.query(None, 3, None)), [8, 9, 10]);
        assert_eq!(ids(&logs.query(Some(4), 3, None)), [5, 6, 7]);
        assert_eq!(ids(&logs.query(Some(10), 3, None)), Vec::<u64>::new());
    }

    #[test]
    fn the_host_filter_ignores_port_and_case() {
        let logs = LogStore::new(100);
        logs.publish(vec![
            entry(1, "App.example.com:8080"),
            entry(2, "other.example.com"),
            entry(3, "app.example.com"),
            entry(4, "[::1]:443"),
        ]);

        assert_eq!(ids(&logs.query(None, 10, Some("app.EXAMPLE.com"))), [1, 3]);
        assert_eq!(
            ids(&logs.query(None, 10, Some("app.example.com:1"))),
            [1, 3]
        );
        assert_eq!(ids(&logs.query(None, 10, Some("::1"))), [4]);
        assert_eq!(ids(&logs.query(None, 10, Some("[::1]"))), [4]);
    }

    #[test]
    fn a_process_that_starts_numbering_late_reports_earlier_ids_as_missing() {
        let logs = LogStore::new(100);
        logs.starts_at(41);
        assert_eq!(logs.last_id(), 40);
        assert_eq!(logs.replay_after(40).missing, 0);
        assert_eq!(logs.replay_after(30).missing, 10);
        logs.publish(vec![entry(41, "a")]);
        assert_eq!(logs.last_id(), 41);
    }
}
