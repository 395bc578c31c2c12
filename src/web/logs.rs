//! The live access-log viewer. Opening the page shows recent history from every agent;
//! new lines then arrive over SSE (htmx's SSE extension) as table rows. Filters and per-user
//! visibility are applied here on the hub, never in the page: a `user` receives only lines
//! whose host belongs to one of their sites.

use super::{AppState, CurrentUser, Render};
use crate::db::agents::{self, Agent};
use crate::db::vhosts;
use crate::domain::vhost::SiteAddress;
use crate::error::Result;
use crate::fleet::logs::{LogEntry, LogEvent};
use crate::views;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

/// Rows kept on the page: older ones are removed as new ones arrive.
pub const ROW_CAP: u64 = 300;
/// Lines of history shown when the page opens.
const HISTORY: usize = 200;

#[derive(Deserialize, Default, Clone, Debug)]
pub struct LogQuery {
    /// A site's domain (its canonical form), or empty for all.
    #[serde(default)]
    pub vhost: String,
    /// "", "2xx", "3xx", "4xx" or "5xx".
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub method: String,
    /// Free text, matched in host, path and client address.
    #[serde(default)]
    pub q: String,
    /// Show the table without the live stream.
    #[serde(default)]
    pub paused: String,
}

impl LogQuery {
    pub fn paused(&self) -> bool {
        !self.paused.is_empty()
    }

    /// The query string for links and the stream URL (without `paused`).
    pub fn to_query(&self) -> String {
        serde_urlencoded::to_string([
            ("vhost", self.vhost.as_str()),
            ("status", self.status.as_str()),
            ("method", self.method.as_str()),
            ("q", self.q.as_str()),
        ])
        .unwrap_or_default()
    }
}

/// Which lines someone may see and has asked to see.
pub struct LogFilter {
    /// None: everything (admin). Some: only these sites' hosts.
    visible: Option<Vec<SiteAddress>>,
    site: Option<SiteAddress>,
    status: Option<u16>,
    method: Option<String>,
    text: Option<String>,
}

impl LogFilter {
    pub fn matches(&self, e: &LogEntry) -> bool {
        if let Some(sites) = &self.visible {
            if !sites.iter().any(|s| s.matches_host(&e.host)) {
                return false;
            }
        }
        if let Some(site) = &self.site {
            if !site.matches_host(&e.host) {
                return false;
            }
        }
        if let Some(class) = self.status {
            if e.status / 100 != class {
                return false;
            }
        }
        if let Some(m) = &self.method {
            if !e.method.eq_ignore_ascii_case(m) {
                return false;
            }
        }
        if let Some(t) = &self.text {
            let t = t.to_lowercase();
            if ![&e.host, &e.uri, &e.remote_ip]
                .iter()
                .any(|f| f.to_lowercase().contains(&t))
            {
                return false;
            }
        }
        true
    }
}

/// The filter for this user and query: a `user` sees only their own sites' lines.
async fn filter_for(state: &AppState, current: &CurrentUser, q: &LogQuery) -> Result<LogFilter> {
    let visible = if current.user.is_admin() {
        None
    } else {
        let uid = current.user.id;
        let mine = state
            .db
            .run(move |c| {
                vhosts::list(
                    c,
                    &vhosts::Filter {
                        owner_id: Some(uid),
                        ..Default::default()
                    },
                )
            })
            .await?;
        Some(
            mine.iter()
                .filter_map(|v| SiteAddress::parse(&v.domain).ok())
                .collect(),
        )
    };
    Ok(LogFilter {
        visible,
        site: SiteAddress::parse(&q.vhost).ok(),
        status: q
            .status
            .strip_suffix("xx")
            .and_then(|d| d.parse().ok())
            .filter(|c| (1..=5).contains(c)),
        method: Some(q.method.trim().to_uppercase()).filter(|m| !m.is_empty()),
        text: Some(q.q.trim().to_string()).filter(|t| !t.is_empty()),
    })
}

/// The sites this user may pick in the vhost filter.
async fn sites_for(state: &AppState, current: &CurrentUser) -> Result<Vec<String>> {
    let owner = (!current.user.is_admin()).then_some(current.user.id);
    let list = state
        .db
        .run(move |c| {
            vhosts::list(
                c,
                &vhosts::Filter {
                    owner_id: owner,
                    ..Default::default()
                },
            )
        })
        .await?;
    Ok(list.into_iter().map(|v| v.domain).collect())
}

#[derive(Deserialize)]
struct History {
    #[serde(default)]
    entries: Vec<LogEntry>,
}

/// Recent lines from every agent, newest first, filtered.
async fn history(state: &AppState, filter: &LogFilter) -> Result<Vec<(String, LogEntry)>> {
    let list: Vec<Agent> = state.db.run(|c| agents::list(c)).await?;
    let fetches = list
        .into_iter()
        .filter(|a| a.online)
        .map(|agent| async move {
            let url = format!("{}/logs?limit=1000", agent.url.trim_end_matches('/'));
            let Ok(client) = state.fleet.client_for(&agent) else {
                return Vec::new();
            };
            let response = client
                .get(url)
                .bearer_auth(agent.token.expose())
                .timeout(Duration::from_secs(3))
                .send()
                .await;
            let entries = match response {
                Ok(r) if r.status().is_success() => r
                    .json::<History>()
                    .await
                    .map(|h| h.entries)
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            entries
                .into_iter()
                .map(move |e| (agent.name.clone(), e))
                .collect::<Vec<_>>()
        });
    let mut all: Vec<(String, LogEntry)> = futures::future::join_all(fetches)
        .await
        .into_iter()
        .flatten()
        .filter(|(_, e)| filter.matches(e))
        .collect();
    all.sort_by(|a, b| b.1.ts.total_cmp(&a.1.ts));
    all.truncate(HISTORY);
    Ok(all)
}

pub async fn page(
    State(state): State<AppState>,
    current: CurrentUser,
    render: Render,
    Query(q): Query<LogQuery>,
) -> Result<Response> {
    let filter = filter_for(&state, &current, &q).await?;
    let rows = history(&state, &filter).await?;
    let sites = sites_for(&state, &current).await?;
    Ok(render.page("Live logs", views::logs::page(&q, &sites, &rows)))
}

/// The table alone: swapped in when a filter changes or on pause/resume.
pub async fn table(
    State(state): State<AppState>,
    current: CurrentUser,
    render: Render,
    Query(q): Query<LogQuery>,
) -> Result<Response> {
    let filter = filter_for(&state, &current, &q).await?;
    let rows = history(&state, &filter).await?;
    Ok(render.page("Live logs", views::logs::table(&q, &rows)))
}

/// New lines as SSE, rendered as table rows, for every agent this user may watch.
pub async fn stream(
    State(state): State<AppState>,
    current: CurrentUser,
    Query(q): Query<LogQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let filter = Arc::new(filter_for(&state, &current, &q).await?);
    let list = state.db.run(|c| agents::list(c)).await?;
    let streams = list
        .iter()
        .map(|agent| BroadcastStream::new(state.log_hub.subscribe(&state.db, &state.fleet, agent)));
    let merged = futures::stream::select_all(streams);
    let mut seq: u64 = 0;
    let events = merged.filter_map(move |item| {
        let filter = filter.clone();
        let html = match item {
            Ok(LogEvent::Line { agent, entry }) => filter.matches(&entry).then(|| {
                seq += 1;
                views::logs::live_row(seq, &agent, &entry, ROW_CAP)
            }),
            Ok(LogEvent::Gap { agent, missing }) if missing > 0 => {
                seq += 1;
                Some(views::logs::skipped_row(
                    seq,
                    &format!("{missing} lines from {agent} could not be delivered"),
                    ROW_CAP,
                ))
            }
            Ok(LogEvent::Gap { .. }) => None,
            // This browser read too slowly and the channel moved on without it.
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                seq += 1;
                Some(views::logs::skipped_row(
                    seq,
                    &format!("{n} lines skipped: the connection was too slow"),
                    ROW_CAP,
                ))
            }
        };
        async move {
            html.map(|h| {
                Ok(Event::default()
                    .event("log")
                    .data(h.into_string().replace('\n', " ")))
            })
        }
    });
    Ok(Sse::new(events).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(15))
            .text("keep-alive"),
    ))
}
