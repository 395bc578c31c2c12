//! One line of Caddy's JSON access log, parsed: the few fields the log viewer shows, taken from
//! a line that may be anything at all (a fuzzing target), without ever panicking.
//!
//! Caddy 2.6 writes, per request, a line like
//! `{"level":"info","ts":1795316604.98,"logger":"http.log.access.log0","msg":"handled request",
//! "request":{"remote_ip":"127.0.0.1","method":"GET","host":"app.localhost:8080","uri":"/x",…},
//! "duration":0.0000137,"size":10,"status":200,…}`. Other loggers may share the file; their
//! lines are recognised and set aside rather than counted as damage.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// One request Caddy handled, as the agent serves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The agent's number for the line: increasing, stable across agent restarts. `0` until
    /// the tailer numbers it ([`parse_line`] cannot know where the line sits).
    pub id: u64,
    /// When Caddy logged it, Unix seconds.
    pub ts: f64,
    /// `request.host` as Caddy saw it, port included (`app.example.com:8080`).
    pub host: String,
    pub method: String,
    /// Path and query, as sent.
    pub uri: String,
    pub status: u16,
    /// Seconds Caddy took to handle the request.
    pub duration: f64,
    /// Response body bytes.
    pub size: u64,
    pub remote_ip: String,
    /// Caddy's level: `info`, or `error` for 5xx answers.
    pub level: String,
    /// Whether the request came over TLS (Caddy logs `request.tls` then): with the host,
    /// it tells which site served the request. Older agents do not send it.
    #[serde(default)]
    pub tls: bool,
}

/// What a line turned out to be when it is not damaged.
#[derive(Debug, Clone, PartialEq)]
pub enum ParsedLine {
    /// An access-log line; its `id` is `0`.
    Access(Entry),
    /// A well-formed line from another logger (`logger` not `http.log.access…`): skip it.
    NotAccess,
}

/// Why a line is not usable: counted as malformed by the tailer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not a JSON object: {0}")]
    NotJson(String),
    #[error("an access-log line without a usable `{0}`")]
    Missing(&'static str),
}

/// Reads one line (without its newline; a trailing `\r` or spaces are tolerated).
pub fn parse_line(line: &str) -> Result<ParsedLine, ParseError> {
    let raw: RawLine<'_> = match serde_json::from_str(line) {
        Ok(raw) => raw,
        // A line of another logger may use `request`, `status`, … in its own way; only when
        // even its logger cannot be read is it damaged.
        Err(err) => {
            return match serde_json::from_str::<LoggerOnly<'_>>(line) {
                Ok(other) if !is_access_logger(other.logger.as_deref()) => {
                    Ok(ParsedLine::NotAccess)
                }
                _ => Err(ParseError::NotJson(err.to_string())),
            };
        }
    };
    if !is_access_logger(raw.logger.as_deref()) {
        return Ok(ParsedLine::NotAccess);
    }
    let request = raw.request.ok_or(ParseError::Missing("request"))?;
    let text = |value: Option<Cow<'_, str>>, name| value.map(Cow::into_owned).ok_or(name);
    Ok(ParsedLine::Access(Entry {
        id: 0,
        ts: raw.ts.ok_or(ParseError::Missing("ts"))?,
        host: text(request.host, ParseError::Missing("request.host"))?,
        method: text(request.method, ParseError::Missing("request.method"))?,
        uri: text(request.uri, ParseError::Missing("request.uri"))?,
        status: raw.status.ok_or(ParseError::Missing("status"))?,
        duration: raw.duration.unwrap_or(0.0),
        size: raw.size.unwrap_or(0),
        remote_ip: request.remote_ip.map(Cow::into_owned).unwrap_or_default(),
        level: raw
            .level
            .map_or_else(|| "info".to_string(), Cow::into_owned),
        tls: request.tls.is_some(),
    }))
}

/// `http.log.access` and its named children (`http.log.access.log0`), nothing else.
fn is_access_logger(logger: Option<&str>) -> bool {
    logger.is_some_and(|name| {
        name.strip_prefix("http.log.access")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    })
}

/// The host part of `host[:port]`, as Go's `net.SplitHostPort` sees it: `[::1]:443` → `::1`,
/// `app.example.com:8080` → `app.example.com`; a bare IPv6 address is returned whole.
pub fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((inside, _)) => inside,
            None => host,
        };
    }
    match host.split_once(':') {
        Some((name, port)) if !port.contains(':') => name,
        _ => host,
    }
}

/// The fields of a line that matter; everything else (headers above all) is skipped unread.
/// Strings borrow from the line unless they carry escapes.
#[derive(Deserialize)]
struct RawLine<'a> {
    #[serde(borrow)]
    level: Option<Cow<'a, str>>,
    ts: Option<f64>,
    #[serde(borrow)]
    logger: Option<Cow<'a, str>>,
    #[serde(borrow)]
    request: Option<RawRequest<'a>>,
    duration: Option<f64>,
    size: Option<u64>,
    status: Option<u16>,
}

#[derive(Deserialize)]
struct RawRequest<'a> {
    #[serde(borrow)]
    remote_ip: Option<Cow<'a, str>>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    host: Option<Cow<'a, str>>,
    #[serde(borrow)]
    uri: Option<Cow<'a, str>>,
    /// Present (an object) only for a TLS connection; its contents do not matter here.
    #[serde(default)]
    tls: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct LoggerOnly<'a> {
    #[serde(borrow)]
    logger: Option<Cow<'a, str>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by Caddy 2.6.2 for `GET /hello?x=1` (the agent's test machine, curl).
    const CADDY_LINE: &str = r#"{"level":"info","ts":1795321879.9131644,"logger":"http.log.access.log0","msg":"handled request","request":{"remote_ip":"127.0.0.1","remote_port":"49566","proto":"HTTP/1.1","method":"GET","host":"a.localhost:18999","uri":"/hello?x=1","headers":{"User-Agent":["curl/7.88.1"],"Accept":["*/*"]}},"user_id":"","duration":0.000021803,"size":2,"status":200,"resp_headers":{"Server":["Caddy"],"Content-Type":["text/plain; charset=utf-8"]}}"#;
    /// Caddy 2.6.2's line for a 502 from an upstream that refused the connection.
    const CADDY_ERROR_LINE: &str = r#"{"level":"error","ts":1795321879.9289472,"logger":"http.log.access.log0","msg":"handled request","request":{"remote_ip":"127.0.0.1","remote_port":"49578","proto":"HTTP/1.1","method":"GET","host":"a.localhost:18999","uri":"/up","headers":{"User-Agent":["curl/7.88.1"],"Accept":["*/*"]}},"user_id":"","duration":0.000278328,"size":0,"status":502,"resp_headers":{"Server":["Caddy"]}}"#;

    fn entry(line: &str) -> Entry {
        match parse_line(line) {
            Ok(ParsedLine::Access(entry)) => entry,
            other => panic!("not an access line: {other:?}"),
        }
    }

    #[test]
    fn a_real_caddy_line_gives_every_field() {
        assert_eq!(
            entry(CADDY_LINE),
            Entry {
                id: 0,
                ts: 1795321879.9131644,
                host: "a.localhost:18999".into(),
                method: "GET".into(),
                uri: "/hello?x=1".into(),
                status: 200,
                duration: 0.000021803,
                size: 2,
                remote_ip: "127.0.0.1".into(),
                level: "info".into(),
                tls: false,
            }
        );
    }

    #[test]
    fn a_tls_request_is_marked_so() {
        let line = CADDY_LINE.replace(
            r#""headers":{"#,
            r#""tls":{"resumed":false,"version":772,"server_name":"a.localhost"},"headers":{"#,
        );
        assert!(entry(&line).tls);
        assert!(!entry(&CADDY_LINE.replace(r#""headers":{"#, r#""tls":null,"headers":{"#)).tls);
    }

    #[test]
    fn an_upstream_failure_is_an_error_level_entry() {
        let entry = entry(CADDY_ERROR_LINE);
        assert_eq!((entry.level.as_str(), entry.status), ("error", 502));
    }

    #[test]
    fn escaped_strings_and_a_trailing_carriage_return_are_read() {
        let line = CADDY_LINE.replace("/hello?x=1", r#"/a\u0020b\"c"#) + "\r";
        assert_eq!(entry(&line).uri, "/a b\"c");
    }

    #[test]
    fn lines_of_other_loggers_are_set_aside_not_damaged() {
        for line in [
            r#"{"level":"info","ts":1.5,"logger":"http.log","msg":"server running"}"#,
            r#"{"level":"info","ts":1.5,"logger":"http.log.accessory","request":{}}"#,
            r#"{"level":"info","ts":1.5,"msg":"no logger at all"}"#,
            r#"{"logger":"tls","request":"a string here","status":"weird"}"#,
        ] {
            assert_eq!(parse_line(line), Ok(ParsedLine::NotAccess), "{line}");
        }
        assert!(matches!(
            parse_line(&CADDY_LINE.replace("http.log.access.log0", "http.log.access")),
            Ok(ParsedLine::Access(_))
        ));
    }

    #[test]
    fn garbage_and_incomplete_access_lines_are_malformed() {
        for line in [
            "",
            "not json",
            "{\"level\":\"info\"",
            "[1,2,3]",
            "null",
            r#"{"logger":"http.log.access.log0","request":{"host":"a","method":"GET","uri":"/"},"status":200}"#,
            r#"{"logger":"http.log.access.log0","ts":1,"request":{"host":"a","method":"GET","uri":"/"},"status":70000}"#,
            r#"{"logger":"http.log.access.log0","ts":1,"status":200}"#,
        ] {
            assert!(parse_line(line).is_err(), "{line}: {:?}", parse_line(line));
        }
        assert_eq!(
            parse_line(&CADDY_LINE.replace("\"status\":200", "\"code\":200")),
            Err(ParseError::Missing("status"))
        );
    }

    #[test]
    fn the_port_is_stripped_from_names_and_bracketed_ipv6() {
        for (host, expected) in [
            ("app.example.com:8080", "app.example.com"),
            ("app.example.com", "app.example.com"),
            ("[::1]:443", "::1"),
            ("[::1]", "::1"),
            ("::1", "::1"),
            ("[broken", "[broken"),
            ("127.0.0.1:80", "127.0.0.1"),
            ("", ""),
        ] {
            assert_eq!(host_without_port(host), expected, "{host}");
        }
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn no_input_makes_the_parser_panic(line in any::<String>()) {
                let _ = parse_line(&line);
                let _ = host_without_port(&line);
            }

            #[test]
            fn no_damage_to_a_real_line_makes_the_parser_panic(
                cut in 0usize..400,
                insert in "[\\[\\]{}\",:a-z0-9\\\\ ]{0,6}",
            ) {
                let line = super::CADDY_LINE;
                let mut at = cut.min(line.len());
                while !line.is_char_boundary(at) {
                    at -= 1;
                }
                let damaged = format!("{}{insert}{}", &line[..at], &line[at..]);
                let _ = parse_line(&damaged);
                let _ = parse_line(&line[..at]);
            }

            #[test]
            fn any_host_and_uri_survive_the_trip_through_json(host in any::<String>(), uri in any::<String>()) {
                let line = serde_json::json!({
                    "level": "info", "ts": 1.0, "logger": "http.log.access.log0",
                    "request": {"remote_ip": "::1", "method": "GET", "host": host, "uri": uri},
                    "duration": 0.5, "size": 1, "status": 204,
                })
                .to_string();
                let ParsedLine::Access(entry) = parse_line(&line).unwrap() else {
                    panic!("not an access line: {line}");
                };
                prop_assert_eq!(entry.host, host);
                prop_assert_eq!(entry.uri, uri);
            }
        }
    }
}
