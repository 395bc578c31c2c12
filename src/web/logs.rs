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
/// An open stream re-reads who owns which site this often.
const VISIBILITY_REFRESH: Duration = Duration::from_secs(10);
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

/// Every site with its owner, to tell whose site a logged request was for.
pub struct Owners(Vec<(SiteAddress, Option<i64>)>);

impl Owners {
    /// The owner of the site that served `host` (a Host header, port included): the most
    /// specific match wins, as in Caddy: an exact name over a wildcard, the matching port
    /// over none. None when no site matches.
    pub fn owner_of(&self, host: &str) -> Option<Option<i64>> {
        let port = host
            .rsplit_once(':')
            .filter(|(h, _)| !h.ends_with(']') || h.starts_with('['))
            .and_then(|(_, p)| p.parse::<u16>().ok());
        self.0
            .iter()
            .filter(|(site, _)| {
                site.matches_host(host) && site.port().is_none_or(|p| Some(p) == port)
            })
            .max_by_key(|(site, _)| (!site.is_wildcard(), site.port().is_some()))
            .map(|(_, owner)| *owner)
    }
}

/// Which lines someone may see and has asked to see.
pub struct LogFilter {
    /// None: everything (admin). Some: only lines of sites this user owns.
    visible: Option<(i64, Owners)>,
    site: Option<SiteAddress>,
    status: Option<u16>,
    method: Option<String>,
    text: Option<String>,
}

impl LogFilter {
    pub fn matches(&self, e: &LogEntry) -> bool {
        if let Some((me, owners)) = &self.visible {
            if owners.owner_of(&e.host) != Some(Some(*me)) {
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
        // Every site, not only theirs: a wildcard of theirs must not claim a more specific
        // site of someone else's.
        let all = state
            .db
            .run(|c| vhosts::list(c, &vhosts::Filter::default()))
            .await?;
        let owners = all
            .iter()
            .filter_map(|v| Some((SiteAddress::parse(&v.domain).ok()?, v.owner_id)))
            .collect();
        Some((current.user.id, Owners(owners)))
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
    // Who owns what can change while the stream is open (a site given away, deleted, taken
    // by someone else): the filter is rebuilt now and then, not trusted for ever.
    let cell = Arc::new(tokio::sync::Mutex::new((
        tokio::time::Instant::now(),
        filter,
    )));
    let seq = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let events = merged.filter_map(move |item| {
        let (cell, seq, state, current, q) = (
            cell.clone(),
            seq.clone(),
            state.clone(),
            current.clone(),
            q.clone(),
        );
        async move {
            let filter = {
                let mut guard = cell.lock().await;
                if guard.0.elapsed() >= VISIBILITY_REFRESH {
                    if let Ok(fresh) = filter_for(&state, &current, &q).await {
                        guard.1 = Arc::new(fresh);
                    }
                    guard.0 = tokio::time::Instant::now();
                }
                guard.1.clone()
            };
            let next = || seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            let stats = &state.log_hub.stats;
            let html = match item {
                Ok(LogEvent::Line { agent, entry }) => filter.matches(&entry).then(|| {
                    stats.streamed.inc();
                    views::logs::live_row(next(), &agent, &entry, ROW_CAP)
                }),
                Ok(LogEvent::Gap { agent, missing }) if missing > 0 => {
                    Some(views::logs::skipped_row(
                        next(),
                        &format!("{missing} lines from {agent} could not be delivered"),
                        ROW_CAP,
                    ))
                }
                Ok(LogEvent::Gap { .. }) => None,
                // This browser read too slowly and the channel moved on without it.
                Err(BroadcastStreamRecvError::Lagged(n)) => Some({
                    stats.dropped.inc_by(n);
                    views::logs::skipped_row(
                        next(),
                        &format!("{n} lines skipped: the connection was too slow"),
                        ROW_CAP,
                    )
                }),
            };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn owners(list: &[(&str, i64)]) -> Owners {
        Owners(
            list.iter()
                .map(|(d, o)| (SiteAddress::parse(d).unwrap(), Some(*o)))
                .collect(),
        )
    }

    #[test]
    fn the_most_specific_site_owns_a_request() {
        let o = owners(&[
            ("*.example.com", 1),
            ("shop.example.com", 2),
            ("http://app.localhost:8080", 3),
            ("http://app.localhost:9090", 4),
        ]);
        assert_eq!(
            o.owner_of("shop.example.com"),
            Some(Some(2)),
            "an exact name beats a wildcard"
        );
        assert_eq!(o.owner_of("blog.example.com:443"), Some(Some(1)));
        assert_eq!(o.owner_of("app.localhost:8080"), Some(Some(3)));
        assert_eq!(
            o.owner_of("app.localhost:9090"),
            Some(Some(4)),
            "the port decides"
        );
        assert_eq!(o.owner_of("other.test"), None);
    }
}
