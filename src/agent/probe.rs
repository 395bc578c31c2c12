//! `POST /caddy/probe`: one request for one site through this agent's own Caddy, as a
//! visitor's would arrive, so the hub can compare a site before and after a change (see
//! `fleet::rollout`).
//!
//! Where the request goes is never the caller's to say: the agent reads the addresses
//! Caddy's HTTP servers listen on from Caddy's running config, and dials the one that takes
//! the site's port (an unspecified address as loopback). The caller names only the site and
//! a path; the site's host travels as the `Host` header and the TLS server name. So the
//! endpoint reaches this Caddy and nothing else, and cannot serve as an open proxy. The
//! certificate is not checked: the probe judges how the site answers, and a site's
//! certificate may come from a CA this machine does not trust. Redirects are answers, not
//! followed. Every request is bounded in time.

use super::AgentState;
use super::api::Refusal;
use crate::domain::vhost::SiteAddress;
pub use crate::wire::{ProbeOutcome, ProbeRequest};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// The longest a probe may wait for Caddy's answer, whatever the caller asks.
pub const MAX_PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// What a probe waits when the caller does not say.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// The host a wildcard site is asked for: one label under the wildcard, as Caddy matches it.
const WILDCARD_LABEL: &str = "gatehouse-probe";

/// Where to reach the listener of Caddy's that takes `port`, from one of Caddy's `listen`
/// addresses (`[network/]host:port[-port]`). An unspecified host is asked on loopback; a
/// host that is not an IP (nor `localhost`) and a non-TCP network are skipped.
pub fn dial_address(listen: &str, port: u16) -> Option<SocketAddr> {
    let address = match listen.split_once('/') {
        Some((network, rest)) if network.starts_with("tcp") => rest,
        Some(_) => return None,
        None => listen,
    };
    let (host, ports) = address.rsplit_once(':')?;
    let (low, high) = ports.split_once('-').unwrap_or((ports, ports));
    let (low, high) = (low.parse::<u16>().ok()?, high.parse::<u16>().ok()?);
    if !(low..=high).contains(&port) {
        return None;
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = match host {
        "" | "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        host => match host.parse::<IpAddr>().ok()? {
            ip if ip.is_unspecified() && ip.is_ipv4() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            ip if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        },
    };
    Some(SocketAddr::new(ip, port))
}

/// The URL a visitor would ask for `site` and `path`, and the host name in it.
fn visitor_url(site: &SiteAddress, path: &str) -> Result<(reqwest::Url, String), String> {
    if !path.starts_with('/') || path.starts_with("//") || path.len() > 2048 {
        return Err("the path must start with a single / (at most 2048 characters)".into());
    }
    let host = match site.host().strip_prefix("*.") {
        Some(parent) => format!("{WILDCARD_LABEL}.{parent}"),
        None => site.host().to_string(),
    };
    // As Caddy serves it: `http://` or port 80 in plain HTTP, anything else over HTTPS.
    let scheme = if site.https() == Some(false) || site.listener_port() == 80 {
        "http"
    } else {
        "https"
    };
    let url = format!("{scheme}://{host}:{}{path}", site.listener_port());
    let url = reqwest::Url::parse(&url).map_err(|e| format!("not a URL: {e}"))?;
    if url.host_str() != Some(host.as_str()) {
        return Err("the path must not change the host".into());
    }
    Ok((url, host))
}

/// Asks this agent's Caddy for the site, on Caddy's own listener for its port.
pub async fn probe(state: &AgentState, request: &ProbeRequest) -> ProbeOutcome {
    let site = match SiteAddress::parse(&request.address) {
        Ok(site) => site,
        Err(e) => return ProbeOutcome::Invalid { error: e.0 },
    };
    let (url, host) = match visitor_url(&site, &request.path) {
        Ok(found) => found,
        Err(error) => return ProbeOutcome::Invalid { error },
    };
    let listeners = match state.caddy().listeners().await {
        Ok(listeners) => listeners,
        Err(e) => {
            return ProbeOutcome::CaddyUnreachable {
                error: e.to_string(),
            };
        }
    };
    let port = site.listener_port();
    let Some((listener, dial)) = listeners
        .iter()
        .find_map(|l| dial_address(l, port).map(|dial| (l.clone(), dial)))
    else {
        return ProbeOutcome::NotServed {
            error: format!("Caddy has no listener on port {port}"),
        };
    };
    let timeout = match request.timeout_ms {
        0 => DEFAULT_PROBE_TIMEOUT,
        ms => Duration::from_millis(ms).min(MAX_PROBE_TIMEOUT),
    };
    let client = reqwest::Client::builder()
        // Nothing but Caddy's own listener: no proxy, no DNS, no redirect followed.
        .no_proxy()
        .resolve(&host, dial)
        .redirect(reqwest::redirect::Policy::none())
        .tls_danger_accept_invalid_certs(true)
        .pool_max_idle_per_host(0)
        .timeout(timeout)
        .user_agent(concat!("gatehouse-probe/", env!("CARGO_PKG_VERSION")))
        .build();
    let client = match client {
        Ok(client) => client,
        Err(e) => {
            return ProbeOutcome::NoAnswer {
                error: e.to_string(),
                millis: 0,
            };
        }
    };
    // A name is resolved to Caddy's listener above; an IP address is never resolved, so
    // the URL itself is pointed at the listener and the site's address goes as `Host`.
    let mut url = url;
    let mut request_host = None;
    if let Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) = url.host() {
        request_host = Some(format!("{host}:{}", dial.port()));
        if url.set_ip_host(dial.ip()).is_err() {
            return ProbeOutcome::Invalid {
                error: "not a URL".into(),
            };
        }
    }
    let mut request = client.get(url);
    if let Some(host) = request_host {
        request = request.header(reqwest::header::HOST, host);
    }
    let started = Instant::now();
    let answer = request.send().await;
    let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match answer {
        Ok(response) => ProbeOutcome::Answered {
            code: response.status().as_u16(),
            millis,
            listener,
        },
        Err(e) => ProbeOutcome::NoAnswer {
            error: if e.is_timeout() {
                format!("no answer within {} ms", timeout.as_millis())
            } else if e.is_connect() {
                format!("cannot connect to Caddy's listener {listener}")
            } else {
                "the connection ended before an answer".into()
            },
            millis,
        },
    }
}

/// `POST /caddy/probe` (behind the agent's token).
pub async fn handler(
    State(state): State<AgentState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<ProbeOutcome>), Refusal> {
    let bytes =
        body.map_err(|rejection| Refusal::new(rejection.status(), rejection.body_text()))?;
    let request: ProbeRequest = serde_json::from_slice(&bytes).map_err(|e| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("the body must be a probe request as JSON: {e}"),
        )
    })?;
    let outcome = probe(&state, &request).await;
    let status = match outcome {
        ProbeOutcome::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        ProbeOutcome::CaddyUnreachable { .. } => StatusCode::BAD_GATEWAY,
        _ => StatusCode::OK,
    };
    Ok((status, Json(outcome)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listener_for_a_port_is_dialled_on_its_own_address_or_loopback() {
        let at = |listen: &str, port| dial_address(listen, port).map(|a| a.to_string());
        assert_eq!(at(":8080", 8080).as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(
            at("127.0.0.2:8080", 8080).as_deref(),
            Some("127.0.0.2:8080")
        );
        assert_eq!(at("tcp/[::1]:80-90", 85).as_deref(), Some("[::1]:85"));
        assert_eq!(at("[::]:443", 443).as_deref(), Some("[::1]:443"));
        assert_eq!(at("0.0.0.0:443", 443).as_deref(), Some("127.0.0.1:443"));
        assert_eq!(at("10.0.0.5:443", 443).as_deref(), Some("10.0.0.5:443"));
        assert_eq!(at(":8080", 8081), None, "another port");
        assert_eq!(at("udp/:443", 443), None, "HTTP/3 is not asked");
        assert_eq!(at("unix//run/caddy.sock", 80), None);
        assert_eq!(at("example.com:443", 443), None, "never a name to resolve");
    }

    #[test]
    fn a_site_is_asked_for_as_a_visitor_would_ask() {
        let url = |address: &str, path: &str| {
            visitor_url(&SiteAddress::parse(address).unwrap(), path)
                .map(|(u, h)| (u.to_string(), h))
        };
        assert_eq!(
            url("http://app.localhost:8080", "/").unwrap(),
            ("http://app.localhost:8080/".into(), "app.localhost".into())
        );
        assert_eq!(url("example.com", "/x").unwrap().0, "https://example.com/x");
        assert_eq!(
            url("*.example.com", "/").unwrap().0,
            "https://gatehouse-probe.example.com/"
        );
        assert!(url("example.com", "@evil.test/").is_err());
        assert!(url("example.com", "//evil.test/").is_err());
    }
}
