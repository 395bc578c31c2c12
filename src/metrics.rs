//! Prometheus metrics for the hub and the agent, in the text exposition format, built on
//! `prometheus-client`. Each side registers what it counts; request latencies are recorded by
//! one middleware under the route pattern (never the raw path, so ids cannot blow up the
//! number of series).
//!
//! `/metrics` is closed unless configured: with a token it needs `Authorization: Bearer
//! <token>`; without one it answers only requests made directly from this machine (a
//! loopback peer and no forwarding headers, so a reverse proxy on the same host does not open
//! it to the world).

use crate::auth::token::constant_time_eq;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::time::Instant;

/// The content type of the text exposition format `prometheus-client` writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets from half a millisecond to about 16 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// A family of latency histograms keyed by `L`.
pub type Latencies<L> = Family<L, Histogram, fn() -> Histogram>;

/// A new, empty [`Latencies`].
pub fn latencies<L: Clone + std::hash::Hash + Eq>() -> Latencies<L> {
    Family::new_with_constructor(latency_histogram)
}

/// A single latency histogram with the standard buckets.
pub fn histogram() -> Histogram {
    latency_histogram()
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    /// The route pattern, e.g. `/vhosts/{id}/toggle`.
    pub route: String,
    pub status: u16,
}

/// The outcome of an operation (a deploy, a reload, a push).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

impl OutcomeLabels {
    pub fn of(outcome: &'static str) -> Self {
        Self { outcome }
    }
}

/// A counter per outcome.
pub type Outcomes = Family<OutcomeLabels, Counter>;

/// Request latencies of one HTTP server.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: Latencies<RequestLabels>,
}

impl std::fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpMetrics")
    }
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpMetrics {
    pub fn new() -> Self {
        Self {
            requests: latencies(),
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (until the response headers), by route",
            self.requests.clone(),
        );
    }
}

/// Middleware (added with `route_layer`, so the route pattern is known): records how long
/// each request took to answer.
pub async fn track(State(metrics): State<HttpMetrics>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Whether a scrape may read the metrics: with `token` set, the request must carry it as a
/// Bearer token; without, it must come straight from this machine.
pub fn allowed(token: &str, peer: Option<SocketAddr>, headers: &HeaderMap) -> bool {
    if !token.is_empty() {
        return headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes()));
    }
    let forwarded = ["forwarded", "x-forwarded-for", "x-real-ip"]
        .iter()
        .any(|h| headers.contains_key(*h));
    peer.is_some_and(|p| p.ip().is_loopback()) && !forwarded
}

/// The answer to a refused scrape: 403 (a 404 would hide a misconfiguration).
pub fn refused() -> Response {
    (
        StatusCode::FORBIDDEN,
        "metrics need the configured token, or a request from this machine\n",
    )
        .into_response()
}

/// The peer address axum recorded for the connection, if it did.
pub fn peer(extensions: &axum::http::Extensions) -> Option<SocketAddr> {
    extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)
}

/// The registry in the text exposition format.
pub fn exposition(registry: &Registry) -> Response {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, registry) {
        tracing::error!(error = %e, "encoding metrics");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [
            (header::CONTENT_TYPE, CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_token_is_required_when_configured() {
        let local = Some(SocketAddr::from(([127, 0, 0, 1], 5000)));
        assert!(!allowed("s3cret-token", local, &headers(&[])));
        assert!(!allowed(
            "s3cret-token",
            local,
            &headers(&[("authorization", "Bearer wrong")])
        ));
        assert!(allowed(
            "s3cret-token",
            Some(SocketAddr::from(([203, 0, 113, 9], 5000))),
            &headers(&[("authorization", "Bearer s3cret-token")])
        ));
    }

    #[test]
    fn without_a_token_only_direct_local_requests_pass() {
        let local = Some(SocketAddr::from(([127, 0, 0, 1], 5000)));
        let remote = Some(SocketAddr::from(([203, 0, 113, 9], 5000)));
        assert!(allowed("", local, &headers(&[])));
        assert!(!allowed("", remote, &headers(&[])));
        assert!(!allowed("", None, &headers(&[])));
        // A reverse proxy on this machine forwards the world's requests from loopback.
        assert!(!allowed(
            "",
            local,
            &headers(&[("x-forwarded-for", "203.0.113.9")])
        ));
        assert!(!allowed(
            "",
            local,
            &headers(&[("forwarded", "for=1.2.3.4")])
        ));
    }
}
