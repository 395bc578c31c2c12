//! The live log viewer: filters, a table that fills from history and then from the SSE
//! stream, pause and resume, and a cap on the rows kept (each new row removes the one that
//! falls off the end, out of band, so the page never grows without bound).

use crate::fleet::logs::LogEntry;
use maud::{Markup, html};
use serde::Deserialize;

/// Rows kept on the page: older ones are removed as new ones arrive.
pub const ROW_CAP: u64 = 300;
#[derive(Deserialize, Default, Clone, Debug)]
#[serde(default)]
pub struct LogQuery {
    /// A site's domain (its canonical form), or empty for all.
    pub vhost: String,
    /// "", "2xx", "3xx", "4xx" or "5xx".
    pub status: String,
    pub method: String,
    /// Free text, matched in host, path and client address.
    pub q: String,
    /// Show the table without the live stream.
    pub paused: String,
}

impl LogQuery {
    pub fn paused(&self) -> bool {
        !self.paused.is_empty()
    }

    /// The page's own address with these filters (only the ones set): what the address bar
    /// shows, so a filtered view can be reloaded, bookmarked and shared.
    pub fn page_url(&self) -> String {
        let set: Vec<(&str, &str)> = [
            ("vhost", self.vhost.as_str()),
            ("status", self.status.as_str()),
            ("method", self.method.as_str()),
            ("q", self.q.as_str()),
            ("paused", self.paused.as_str()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect();
        match serde_urlencoded::to_string(set).unwrap_or_default() {
            query if query.is_empty() => "/logs".into(),
            query => format!("/logs?{query}"),
        }
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

fn clock(ts: f64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts as i64)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[hour]:[minute]:[second]"
            ))
            .ok()
        })
        .unwrap_or_default()
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    }
}

fn status_class(status: u16) -> &'static str {
    if status == 0 {
        return "status-none";
    }
    match status / 100 {
        2 => "status-2xx",
        3 => "status-3xx",
        4 => "status-4xx",
        5 => "status-5xx",
        _ => "status-other",
    }
}

pub fn page(q: &LogQuery, sites: &[String], rows: &[(String, LogEntry)]) -> Markup {
    html! {
        section .card #logs {
            h1 { "Live logs" }
            form .filters #log-filters method="get" action="/logs" hx-get="/logs/table" hx-target="#log-table"
                hx-swap="outerHTML" hx-trigger="change, input delay:400ms from:#log-q" {
                div .field {
                    label for="log-vhost" { "Site" }
                    select #log-vhost name="vhost" {
                        option value="" { "All sites" }
                        @for s in sites { option value=(s) selected[q.vhost == *s] { (s) } }
                    }
                }
                div .field {
                    label for="log-status" { "Status" }
                    select #log-status name="status" {
                        @for (v, l) in [("", "Any"), ("2xx", "2xx success"), ("3xx", "3xx redirect"), ("4xx", "4xx client error"), ("5xx", "5xx server error"), ("none", "None: no handler answered")] {
                            option value=(v) selected[q.status == v] { (l) }
                        }
                    }
                }
                div .field {
                    label for="log-method" { "Method" }
                    select #log-method name="method" {
                        @for m in ["", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] {
                            option value=(m) selected[q.method.eq_ignore_ascii_case(m)] { @if m.is_empty() { "Any" } @else { (m) } }
                        }
                    }
                }
                div .field {
                    label for="log-q" { "Search" }
                    input #log-q type="search" name="q" value=(q.q) placeholder="path, host or client IP" autocomplete="off";
                }
                noscript { button .button type="submit" { "Filter" } }
            }
            (table(q, rows))
        }
    }
}

/// The table with its controls; live (connected to the stream) unless paused.
pub fn table(q: &LogQuery, rows: &[(String, LogEntry)]) -> Markup {
    let live = !q.paused();
    let stream = format!("/logs/stream?{}", q.to_query());
    html! {
        div #log-table .log-table-wrap data-live=(live)
            hx-ext=[live.then_some("sse")] sse-connect=[live.then_some(stream.as_str())] {
            div .log-controls {
                @if live {
                    span .live-dot #log-state { "Live" }
                    button .button .small #log-pause type="button" hx-get="/logs/table" hx-include="#log-filters"
                        hx-vals=r#"{"paused":"1"}"# hx-target="#log-table" hx-swap="outerHTML" { "Pause" }
                } @else {
                    span .paused-dot #log-state { "Paused" }
                    button .button .small #log-resume type="button" hx-get="/logs/table" hx-include="#log-filters"
                        hx-target="#log-table" hx-swap="outerHTML" { "Resume" }
                }
                span .muted .hint { "Newest first; at most " (ROW_CAP) " live rows are kept." }
            }
            div .table-wrap {
                table .table .log-table {
                    thead { tr { th { "Time" } th { "Site" } th { "Method" } th { "Path" } th { "Status" } th { "Duration" } th { "Size" } th { "Client" } } }
                    tbody #log-rows sse-swap=[live.then_some("log")] hx-swap="afterbegin" {
                        @for (agent, e) in rows { (row_cells(None, agent, e)) }
                    }
                }
            }
            @if rows.is_empty() { p .muted #no-logs { "No requests yet. New ones appear here as they happen." } }
        }
    }
}

fn row_cells(id: Option<String>, agent: &str, e: &LogEntry) -> Markup {
    html! {
        tr .log-row .(status_class(e.status)) id=[id] data-agent=(agent) data-host=(e.host) {
            td data-label="Time" { (clock(e.ts)) }
            td .mono data-label="Site" { (e.host) }
            td data-label="Method" { (e.method) }
            td .mono .log-path data-label="Path" { (e.uri) }
            td .log-status data-label="Status" {
                @if e.status == 0 {
                    // Caddy logs 0 when no handler wrote a response; it then sent an empty 200.
                    abbr title="No handler answered: Caddy sent an empty 200 and logged status 0" { "none" }
                } @else {
                    (e.status)
                }
            }
            td data-label="Duration" { (format!("{:.1} ms", e.duration * 1000.0)) }
            td data-label="Size" { (size(e.size)) }
            td .mono data-label="Client" { (e.remote_ip) }
        }
    }
}

/// The row that falls off the end when row `seq` arrives, removed out of band.
fn drop_old(seq: u64, cap: u64) -> Markup {
    html! {
        @if seq > cap { tr id=(format!("live-{}", seq - cap)) hx-swap-oob="delete" {} }
    }
}

/// One live line, as sent over SSE.
pub fn live_row(seq: u64, agent: &str, e: &LogEntry, cap: u64) -> Markup {
    html! { (row_cells(Some(format!("live-{seq}")), agent, e)) (drop_old(seq, cap)) }
}

/// "N lines skipped" in place of lines this browser could not be sent.
pub fn skipped_row(seq: u64, message: &str, cap: u64) -> Markup {
    html! {
        tr .log-skipped id=(format!("live-{seq}")) { td colspan="8" { (message) } }
        (drop_old(seq, cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::logs::LogEntry;

    fn entry() -> LogEntry {
        LogEntry {
            id: 1,
            ts: 1_800_000_000.0,
            host: "a.example.com:443".into(),
            method: "GET".into(),
            uri: "/<script>alert(1)</script>".into(),
            status: 404,
            duration: 0.0123,
            size: 2048,
            remote_ip: "192.0.2.7".into(),
            level: "info".into(),
            tls: false,
        }
    }

    #[test]
    fn each_live_row_removes_the_one_that_falls_off_the_cap() {
        let first = live_row(5, "edge", &entry(), 300).into_string();
        assert!(first.contains(r#"id="live-5""#) && !first.contains("hx-swap-oob"));
        let later = live_row(305, "edge", &entry(), 300).into_string();
        assert!(
            later.contains(r#"<tr id="live-5" hx-swap-oob="delete">"#),
            "{later}"
        );
        let skipped = skipped_row(301, "3 lines skipped", 300).into_string();
        assert!(skipped.contains(r#"<tr id="live-1" hx-swap-oob="delete">"#));
    }

    #[test]
    fn a_line_no_handler_answered_says_so_instead_of_a_bare_zero() {
        let unanswered = LogEntry {
            status: 0,
            ..entry()
        };
        let row = format!(
            "<table>{}</table>",
            live_row(1, "edge", &unanswered, 300).into_string()
        );
        let doc = scraper::Html::parse_fragment(&row);
        let cell = |css: &str| {
            doc.select(&scraper::Selector::parse(css).unwrap())
                .map(|e| e.text().collect::<String>())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            cell("tr.log-row.status-none td.log-status abbr[title]"),
            ["none"]
        );
        assert_eq!(cell("tr.status-other"), Vec::<String>::new());
        let q = LogQuery {
            status: "none".into(),
            ..Default::default()
        };
        let page = page(&q, &[], &[]).into_string();
        let doc = scraper::Html::parse_fragment(&page);
        let options = doc
            .select(&scraper::Selector::parse("#log-status option[value=none][selected]").unwrap())
            .count();
        assert_eq!(options, 1, "the status filter can pick those lines");
    }

    #[test]
    fn log_lines_are_rendered_inert_and_classed_by_status() {
        let row = live_row(1, "edge", &entry(), 300).into_string();
        assert!(
            !row.contains("<script>") && row.contains("&lt;script&gt;"),
            "{row}"
        );
        assert!(row.contains("status-4xx") && row.contains("12.3 ms") && row.contains("2.0 KiB"));
    }
}
