//! The live access-log viewer. Opening the page shows recent history from every agent;
//! new lines then arrive over SSE (htmx's SSE extension) as table rows. Filters and per-user
//! visibility are applied here on the hub, never in the page: every line is attributed to
//! exactly one site (or none), the way Caddy routed it, and a `user` receives only the lines
//! of their own sites.

use super::{AppState, CurrentUser, Render};
use crate::db::agents::{self, Agent};
use crate::db::vhosts;
use crate::domain::vhost::{Attribution, SiteAddress};
use crate::error::Result;
use crate::fleet::logs::{LogEntry, LogEvent};
use crate::views;
use crate::views::logs::{LogQuery, ROW_CAP};
use axum::extract::{Query, State};
use axum::response::Response;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

/// An open stream re-reads who owns which site this often.
const VISIBILITY_REFRESH: Duration = Duration::from_secs(10);
/// Lines of history shown when the page opens.
const HISTORY: usize = 200;

/// Which site served each logged request, with its domain and owner: exactly one site or
/// none, as Caddy routed it (see [`Attribution`]).
pub struct Sites(Attribution<(String, Option<i64>)>);

impl Sites {
    pub fn new(all: &[vhosts::Vhost]) -> Self {
        Self(Attribution::new(all.iter().filter_map(|v| {
            Some((
                SiteAddress::parse(&v.domain).ok()?,
                (v.domain.clone(), v.owner_id),
            ))
        })))
    }

    /// The domain and owner of the site that served `host` (a Host header, port included)
    /// over TLS or not; None when no site did.
    pub fn site_for(&self, host: &str, tls: bool) -> Option<(&str, Option<i64>)> {
        self.0
            .site_for(host, tls)
            .map(|(domain, owner)| (domain.as_str(), *owner))
    }
}

/// Which lines someone may see and has asked to see.
pub struct LogFilter {
    /// Every site, to attribute each line to one; empty when nothing depends on it.
    sites: Sites,
    /// None: every line (admin). Some: only lines of sites this user owns.
    viewer: Option<i64>,
    /// Only lines of this site (its canonical domain).
    site: Option<String>,
    status: Option<u16>,
    method: Option<String>,
    text: Option<String>,
}

impl LogFilter {
    pub fn matches(&self, e: &LogEntry) -> bool {
        if self.viewer.is_some() || self.site.is_some() {
            let served_by = self.sites.site_for(&e.host, e.tls);
            if let Some(me) = self.viewer
                && served_by.map(|(_, owner)| owner) != Some(Some(me))
            {
                return false;
            }
            if let Some(site) = &self.site
                && served_by.map(|(domain, _)| domain) != Some(site.as_str())
            {
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

/// The filter for this user and query: a `user` sees only lines of their own sites, and a
/// site's filter shows only the lines that site served (not a wildcard's other names').
async fn filter_for(state: &AppState, current: &CurrentUser, q: &LogQuery) -> Result<LogFilter> {
    let viewer = (!current.user.is_admin()).then_some(current.user.id);
    let site = SiteAddress::parse(&q.vhost)
        .ok()
        .map(|a| a.as_str().to_string());
    // Every site, not only the viewer's: a wildcard of theirs must not claim a more specific
    // site of someone else's.
    let all = if viewer.is_some() || site.is_some() {
        state
            .db
            .run(|c| vhosts::list(c, &vhosts::Filter::default()))
            .await?
    } else {
        Vec::new()
    };
    Ok(LogFilter {
        sites: Sites::new(&all),
        viewer,
        site,
        status: status_filter(&q.status),
        method: Some(q.method.trim().to_uppercase()).filter(|m| !m.is_empty()),
        text: Some(q.q.trim().to_string()).filter(|t| !t.is_empty()),
    })
}

/// The status filter's value as the hundreds digit a line's status must have: a class
/// (`4xx` is 4), or `none` (0): the lines no handler answered, which Caddy logs as status 0.
fn status_filter(value: &str) -> Option<u16> {
    match value {
        "none" => Some(0),
        class => class
            .strip_suffix("xx")
            .and_then(|d| d.parse().ok())
            .filter(|c| (1..=5).contains(c)),
    }
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
                    .json::<crate::wire::LogsPage>()
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
    let mut response = render.page("Live logs", views::logs::table(&q, &rows));
    // The address bar follows the filters (htmx pushes this URL into the history).
    if let Ok(url) = axum::http::HeaderValue::from_str(&q.page_url()) {
        response.headers_mut().insert("hx-push-url", url);
    }
    Ok(response)
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

    fn site(id: i64, domain: &str, owner: Option<i64>) -> vhosts::Vhost {
        vhosts::Vhost {
            id,
            domain: SiteAddress::parse(domain).unwrap().as_str().into(),
            template: "raw".into(),
            params: "{}".into(),
            config: String::new(),
            enabled: true,
            owner_id: owner,
            all_agents: true,
            agent_ids: Vec::new(),
            labels: Vec::new(),
            created_at: 0,
            updated_at: 0,
        }
    }

    fn line(host: &str, tls: bool) -> LogEntry {
        LogEntry {
            id: 1,
            ts: 1.0,
            host: host.into(),
            method: "GET".into(),
            uri: "/".into(),
            status: 200,
            duration: 0.0,
            size: 0,
            remote_ip: "192.0.2.1".into(),
            level: "info".into(),
            tls,
        }
    }

    fn viewers(sites: &[vhosts::Vhost], viewer: Option<i64>, site: Option<&str>) -> LogFilter {
        LogFilter {
            sites: Sites::new(sites),
            viewer,
            site: site.map(String::from),
            status: None,
            method: None,
            text: None,
        }
    }

    /// Who of `people` (and an admin, None) sees `entry`.
    fn seen_by(sites: &[vhosts::Vhost], entry: &LogEntry, people: &[i64]) -> Vec<i64> {
        people
            .iter()
            .copied()
            .filter(|p| viewers(sites, Some(*p), None).matches(entry))
            .collect()
    }

    #[test]
    fn the_none_filter_picks_the_lines_no_handler_answered() {
        let unanswered = LogEntry {
            status: 0,
            ..line("a.example.com", false)
        };
        let answered = line("a.example.com", false);
        let with = |value: &str| LogFilter {
            status: status_filter(value),
            ..viewers(&[], None, None)
        };
        assert!(with("none").matches(&unanswered));
        assert!(!with("none").matches(&answered));
        assert!(with("2xx").matches(&answered) && !with("2xx").matches(&unanswered));
        assert!(with("").matches(&unanswered), "Any");
        assert_eq!(status_filter("9xx"), None);
    }

    #[test]
    fn each_line_of_overlapping_names_is_seen_by_exactly_one_owner() {
        // Bob's site, and what an admin knowingly let Alice (2) and Carol (3) have beside it.
        const BOB: i64 = 1;
        let sites = [
            site(1, "bob.example.com", Some(BOB)),
            site(2, "http://bob.example.com", Some(2)),
            site(3, "*.example.com", Some(3)),
            site(4, "bob.example.com:8443", Some(2)),
        ];
        let people = [BOB, 2, 3];
        let cases = [
            (line("bob.example.com", true), vec![BOB]),
            (line("bob.example.com:443", true), vec![BOB]),
            (line("bob.example.com", false), vec![2]),
            (line("bob.example.com:8443", true), vec![2]),
            (line("eve.example.com", true), vec![3]),
            (line("BOB.Example.COM.", true), vec![BOB]),
            (line("nobody.test", true), vec![]),
        ];
        for (entry, expected) in &cases {
            assert_eq!(&seen_by(&sites, entry, &people), expected, "{}", entry.host);
            assert!(
                viewers(&sites, None, None).matches(entry),
                "an admin sees all"
            );
        }
        // The order sites were added in does not matter.
        let mut reversed = sites.clone();
        reversed.reverse();
        for (entry, expected) in &cases {
            assert_eq!(
                &seen_by(&reversed, entry, &people),
                expected,
                "{}",
                entry.host
            );
        }
    }

    #[test]
    fn a_sites_filter_shows_only_the_lines_that_site_served() {
        let sites = [
            site(1, "*.example.com", Some(1)),
            site(2, "shop.example.com", Some(1)),
        ];
        let wild = viewers(&sites, None, Some("*.example.com"));
        assert!(wild.matches(&line("blog.example.com", true)));
        assert!(!wild.matches(&line("shop.example.com", true)));
        let shop = viewers(&sites, Some(1), Some("shop.example.com"));
        assert!(shop.matches(&line("shop.example.com:443", true)));
    }
}
