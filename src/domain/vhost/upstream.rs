//! Reverse-proxy targets (`app:8080`, `[::1]:9000`, `https://backend.example`), checked
//! strictly because Caddy 2.6 is not strict itself: it silently accepts `127.0.0.1:notaport`
//! and only fails when the first request arrives.
//!
//! Every accepted upstream is written in a canonical form made of `[a-z0-9._:/\[\]-]`, which
//! Caddy's lexer always reads as one plain token.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::address::{HostKind, MAX_INPUT_CHARS, normalize_host, parse_port, shorten};
use crate::domain::FieldError;

/// More than this many backends in one site is a configuration mistake, not a load balancer.
pub const MAX_UPSTREAMS: usize = 32;

fn refuse<T>(why: impl Into<String>) -> Result<T, FieldError> {
    Err(FieldError(why.into()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum UpstreamScheme {
    Http,
    Https,
}

/// One validated upstream in canonical form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    canonical: String,
    scheme: Option<UpstreamScheme>,
    /// ASCII host name, IPv4 literal, or bracketed IPv6 literal.
    host: String,
    port: Option<u16>,
}

impl Upstream {
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        let text = input.trim();
        if text.is_empty() {
            return refuse("Enter an upstream, e.g. 127.0.0.1:8080.");
        }
        if text.chars().count() > MAX_INPUT_CHARS {
            return refuse("That upstream is too long.");
        }
        if text
            .get(..5)
            .is_some_and(|p| p.eq_ignore_ascii_case("unix/"))
        {
            return refuse(
                "Unix sockets are not supported here; an admin can use the raw Caddyfile \
                 template for them.",
            );
        }
        check_characters(text)?;
        let (scheme, rest) = split_scheme(text)?;
        // A trailing slash is what people paste from a browser; it carries no meaning.
        let rest = match scheme {
            Some(_) => rest.strip_suffix('/').unwrap_or(rest),
            None => rest,
        };
        if rest.contains('@') {
            return refuse("An upstream cannot contain a user name or password (user@…).");
        }
        if rest.contains('/') {
            return refuse(
                "An upstream cannot contain a path; Caddy only takes a scheme, a host and a port.",
            );
        }
        if rest.contains('?') {
            return refuse("An upstream cannot contain a query (?…).");
        }

        let (host, port) = split_host_port(rest)?;
        let Some(port_or_default) = port.or(match scheme {
            Some(UpstreamScheme::Http) => Some(80),
            Some(UpstreamScheme::Https) => Some(443),
            None => None,
        }) else {
            return refuse(format!(
                "Add a port, e.g. {}:8080.",
                shorten(host.trim_end_matches(':'))
            ));
        };
        match (scheme, port_or_default) {
            (Some(UpstreamScheme::Http), 443) => {
                return refuse("Port 443 is for HTTPS; write https:// or use another port.");
            }
            (Some(UpstreamScheme::Https), 80) => {
                return refuse("Port 80 is for plain HTTP; write http:// or use another port.");
            }
            _ => {}
        }

        // `http.:8080` would be written as `http:8080`, which reads as a scheme without `//`
        // (found by fuzzing).
        if scheme.is_none() && (host == "http" || host == "https") {
            return refuse("Write the scheme as http:// or https://.");
        }

        let mut canonical = String::new();
        canonical.push_str(match scheme {
            Some(UpstreamScheme::Http) => "http://",
            Some(UpstreamScheme::Https) => "https://",
            None => "",
        });
        canonical.push_str(&host);
        if let Some(port) = port {
            canonical.push(':');
            canonical.push_str(&port.to_string());
        }
        Ok(Upstream {
            canonical,
            scheme,
            host,
            port,
        })
    }

    /// The canonical form, as written to the Caddyfile.
    pub fn as_str(&self) -> &str {
        &self.canonical
    }

    /// The scheme written in front, if any.
    pub(super) fn scheme(&self) -> Option<UpstreamScheme> {
        self.scheme
    }
}

fn check_characters(text: &str) -> Result<(), FieldError> {
    for c in text.chars() {
        // Before the control check: a tab or newline is a separator to the person typing.
        if c.is_whitespace() || c == ',' {
            return refuse("Enter a single upstream here, without spaces or commas.");
        }
        if c.is_control() {
            return refuse("The upstream contains an invisible control character; retype it.");
        }
        match c {
            '{' | '}' => {
                return refuse("Placeholders and braces are not allowed in an upstream.");
            }
            '"' | '\'' | '`' => return refuse("Quotes are not allowed in an upstream."),
            '\\' | '#' | '<' | '>' | '|' | '^' | ';' | '$' => {
                return refuse(format!(
                    "The character {c:?} is not allowed in an upstream."
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn split_scheme(text: &str) -> Result<(Option<UpstreamScheme>, &str), FieldError> {
    if let Some((scheme, rest)) = text.split_once("://") {
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => UpstreamScheme::Http,
            "https" => UpstreamScheme::Https,
            _ => {
                return refuse(format!(
                    "Only http:// and https:// upstreams are supported, not {}://.",
                    shorten(scheme)
                ));
            }
        };
        return Ok((Some(scheme), rest));
    }
    let lower = text.get(..6).unwrap_or(text).to_ascii_lowercase();
    if lower.starts_with("http:") || lower.starts_with("https:") {
        return refuse("Write the scheme as http:// or https://.");
    }
    Ok((None, text))
}

/// Splits `host[:port]` or `[ipv6][:port]` and canonicalizes the host.
fn split_host_port(rest: &str) -> Result<(String, Option<u16>), FieldError> {
    if let Some(inner) = rest.strip_prefix('[') {
        let Some((ip, after)) = inner.split_once(']') else {
            return refuse("Close the IPv6 address with ], e.g. [::1]:8080.");
        };
        if ip.contains('%') {
            return refuse("IPv6 zone identifiers (%eth0) are not supported.");
        }
        let Ok(ip) = ip.parse::<Ipv6Addr>() else {
            return refuse("That is not a valid IPv6 address.");
        };
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(parse_port(port)?),
                None => return refuse("Write the port after the brackets, e.g. [::1]:8080."),
            },
        };
        return Ok((format!("[{ip}]"), port));
    }
    if rest.contains(['[', ']']) || rest.matches(':').count() > 1 {
        return refuse("Write IPv6 addresses in brackets, e.g. [::1]:8080.");
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, Some(parse_port(port)?)),
        None => (rest, None),
    };
    if host.is_empty() {
        return refuse("Enter a host before the port, e.g. 127.0.0.1:8080.");
    }
    if host.contains('*') {
        return refuse("Wildcards are not allowed in an upstream.");
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let (host, kind) = normalize_host(host, true)?;
    debug_assert!(kind == HostKind::Name || host.parse::<Ipv4Addr>().is_ok());
    Ok((host, port))
}

/// One or more upstreams for one `reverse_proxy`, without duplicates and all with the same
/// scheme (Caddy cannot mix plain and TLS upstreams in one proxy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstreams(Vec<Upstream>);

impl Upstreams {
    /// Upstreams separated by whitespace, commas or newlines.
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        if input.len() > MAX_UPSTREAMS * (MAX_INPUT_CHARS + 2) {
            return refuse(format!("That is too long for {MAX_UPSTREAMS} upstreams."));
        }
        let items: Vec<&str> = input
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|item| !item.is_empty())
            .collect();
        if items.is_empty() {
            return refuse("Enter at least one upstream, e.g. 127.0.0.1:8080.");
        }
        if items.len() > MAX_UPSTREAMS {
            return refuse(format!("At most {MAX_UPSTREAMS} upstreams are allowed."));
        }
        let mut seen = HashSet::new();
        let mut upstreams = Vec::with_capacity(items.len());
        for item in items {
            let upstream = Upstream::parse(item)
                .map_err(|e| FieldError(format!("{}: {}", shorten(item), e.0)))?;
            if !seen.insert(upstream.canonical.clone()) {
                return refuse(format!("{} is listed twice.", upstream.canonical));
            }
            upstreams.push(upstream);
        }
        // Without a scheme Caddy speaks plain HTTP, but one https:// among them switches every
        // upstream to TLS (verified with caddy 2.6.2), so "none" counts as http here.
        let tls = |u: &Upstream| u.scheme == Some(UpstreamScheme::Https);
        if upstreams.iter().any(tls) && !upstreams.iter().all(tls) {
            return refuse(
                "All upstreams must use the same scheme: Caddy cannot mix https:// with plain \
                 HTTP upstreams in one proxy.",
            );
        }
        Ok(Upstreams(upstreams))
    }

    pub fn as_slice(&self) -> &[Upstream] {
        &self.0
    }

    /// Space-separated, as written after `reverse_proxy` in the Caddyfile.
    pub fn joined(&self) -> String {
        self.0
            .iter()
            .map(Upstream::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::caddyfile::{LexOptions, Quote, tokenize_with};

    fn canonical(input: &str) -> String {
        Upstream::parse(input)
            .unwrap_or_else(|e| panic!("{input:?} should be accepted: {e}"))
            .as_str()
            .to_string()
    }

    fn reason(input: &str) -> String {
        match Upstream::parse(input) {
            Ok(u) => panic!("{input:?} should be refused, got {:?}", u.as_str()),
            Err(e) => e.0,
        }
    }

    fn list_reason(input: &str) -> String {
        match Upstreams::parse(input) {
            Ok(u) => panic!("{input:?} should be refused, got {:?}", u.joined()),
            Err(e) => e.0,
        }
    }

    #[test]
    fn a_host_named_like_a_scheme_is_refused() {
        // Found by fuzzing: `http.:6` was written as `http:6`, which did not parse again.
        assert!(reason("http.:6").contains("http://"));
        assert!(reason("https.:8443").contains("http://"));
    }

    #[test]
    fn host_and_port_pairs_are_accepted_in_lowercase() {
        assert_eq!(canonical(" App:8080 "), "app:8080");
        assert_eq!(canonical("127.0.0.1:3000"), "127.0.0.1:3000");
        assert_eq!(
            canonical("backend.internal.example:443"),
            "backend.internal.example:443"
        );
        assert_eq!(canonical("localhost:08080"), "localhost:8080");
    }

    #[test]
    fn docker_style_names_with_underscores_are_accepted() {
        assert_eq!(canonical("project_app_1:80"), "project_app_1:80");
    }

    #[test]
    fn ipv6_literals_in_brackets_are_accepted_in_canonical_form() {
        assert_eq!(canonical("[::1]:8080"), "[::1]:8080");
        assert_eq!(canonical("[2001:DB8:0:0::1]:443"), "[2001:db8::1]:443");
        assert_eq!(canonical("http://[::1]"), "http://[::1]");
    }

    #[test]
    fn http_and_https_urls_may_leave_out_the_port() {
        assert_eq!(
            canonical("HTTPS://Backend.Example"),
            "https://backend.example"
        );
        assert_eq!(canonical("http://app:8080"), "http://app:8080");
        assert_eq!(canonical("https://app:8443/"), "https://app:8443");
    }

    #[test]
    fn a_bare_host_without_a_port_is_refused_with_an_example() {
        assert_eq!(reason("app"), "Add a port, e.g. app:8080.");
        assert_eq!(reason("10.0.0.2"), "Add a port, e.g. 10.0.0.2:8080.");
        assert!(reason("[::1]").contains("Add a port"));
    }

    #[test]
    fn bad_ports_are_refused() {
        assert!(reason("127.0.0.1:notaport").contains("number"));
        assert!(reason("app:0").contains("1 to 65535"));
        assert!(reason("app:65536").contains("1 to 65535"));
        assert!(reason("app:").contains("Add a port number"));
        assert!(reason("[::1]:x").contains("number"));
        assert!(reason("[::1]8080").contains("after the brackets"));
    }

    #[test]
    fn ports_that_contradict_the_scheme_are_refused_like_caddy_does() {
        assert!(reason("http://app:443").contains("443 is for HTTPS"));
        assert!(reason("https://app:80").contains("80 is for plain HTTP"));
    }

    #[test]
    fn paths_queries_and_user_names_are_refused() {
        assert!(reason("http://app:8080/api").contains("path"));
        assert!(reason("app:8080/api").contains("path"));
        assert!(reason("http://app//").contains("path"));
        assert!(reason("http://app?x=1").contains("query"));
        assert!(reason("http://user:pw@app:8080").contains("user name"));
    }

    #[test]
    fn placeholders_spaces_and_quotes_are_refused() {
        assert!(reason("{env.BACKEND}:80").contains("Placeholders"));
        assert!(reason("{upstream}").contains("Placeholders"));
        assert!(reason("app :8080").contains("single upstream"));
        assert!(reason("\"app:8080\"").contains("Quotes"));
        assert!(reason("app:8080#x").contains("'#'"));
        assert!(reason("app\\:8080").contains("'\\\\'"));
        assert!(reason("app\u{7}:80").contains("control character"));
    }

    #[test]
    fn unix_sockets_are_refused_with_a_pointer_to_the_raw_template() {
        assert!(reason("unix//run/php/php-fpm.sock").contains("raw Caddyfile"));
        assert!(reason("UNIX/run/app.sock").contains("raw Caddyfile"));
    }

    #[test]
    fn other_schemes_and_malformed_schemes_are_refused() {
        assert!(reason("h2c://app:8080").contains("Only http:// and https://"));
        assert!(reason("fastcgi://app:9000").contains("Only http:// and https://"));
        assert!(reason("http:app:8080").contains("http:// or https://"));
    }

    #[test]
    fn unbracketed_ipv6_and_wildcards_are_refused() {
        assert!(reason("::1:8080").contains("brackets"));
        assert!(reason("[::1:8080").contains("Close"));
        assert!(reason("[fe80::1%eth0]:80").contains("zone"));
        assert!(reason("[not-ip]:80").contains("IPv6"));
        assert!(reason("*.example.com:80").contains("Wildcards"));
    }

    #[test]
    fn bad_host_names_are_refused() {
        assert!(reason("-app:80").contains("hyphen"));
        assert!(reason("a..b:80").contains("empty part"));
        assert!(reason(":8080").contains("host before the port"));
        assert!(reason("999.1.1.1:80").contains("IPv4"));
    }

    #[test]
    fn lists_are_split_on_whitespace_commas_and_newlines() {
        let list = Upstreams::parse(" a:1, b:2\n\nc:3\td:4 ,").unwrap();
        assert_eq!(list.joined(), "a:1 b:2 c:3 d:4");
        assert_eq!(list.as_slice().len(), 4);
        assert_eq!(list.as_slice()[1].as_str(), "b:2");
        assert_eq!(Upstreams::parse("app:80").unwrap().joined(), "app:80");
    }

    #[test]
    fn an_empty_list_is_refused() {
        assert!(list_reason("").contains("at least one"));
        assert!(list_reason(" ,\n ").contains("at least one"));
    }

    #[test]
    fn at_most_32_upstreams_are_accepted() {
        let ok: Vec<String> = (1..=32).map(|i| format!("app{i}:80")).collect();
        assert_eq!(
            Upstreams::parse(&ok.join("\n")).unwrap().as_slice().len(),
            32
        );
        let too_many: Vec<String> = (1..=33).map(|i| format!("app{i}:80")).collect();
        assert!(list_reason(&too_many.join("\n")).contains("At most 32"));
    }

    #[test]
    fn duplicates_are_refused_after_normalization() {
        assert_eq!(list_reason("app:80 APP:080"), "app:80 is listed twice.");
    }

    #[test]
    fn errors_in_a_list_name_the_offending_entry() {
        assert_eq!(list_reason("a:1 b c:3"), "b: Add a port, e.g. b:8080.");
    }

    #[test]
    fn plain_and_tls_upstreams_cannot_be_mixed() {
        assert!(list_reason("app:8080 https://b:8443").contains("same scheme"));
        assert!(list_reason("https://b:8443 http://app:8080").contains("same scheme"));
        Upstreams::parse("app:8080 http://b:8080").unwrap();
        Upstreams::parse("https://a https://b:8443").unwrap();
    }

    fn assert_single_token(text: &str) {
        for options in [LexOptions::CADDY_2_7, LexOptions::CADDY_2_6] {
            let tokens = tokenize_with(text, options).expect("lexes");
            assert_eq!(tokens.len(), 1, "{text:?}");
            assert_eq!(tokens[0].text, text);
            assert_eq!(tokens[0].quote, Quote::None);
            assert!(!text.contains(['{', '}']));
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        const IPV6_SAMPLES: &[&str] = &[
            "[::1]",
            "[2001:DB8:0::1]",
            "[::ffff:127.0.0.1]",
            "[fe80::1%1]",
        ];

        /// Mostly upstream-shaped text, so that a good share of the inputs is accepted.
        fn upstreamish() -> impl Strategy<Value = String> {
            let host = prop_oneof![
                4 => "[a-zA-Z0-9_-]{1,10}(\\.[a-zA-Z0-9-]{1,8}){0,2}",
                2 => "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
                1 => prop::sample::select(IPV6_SAMPLES).prop_map(str::to_string),
                1 => "\\[[0-9a-fA-F:]{2,12}\\]",
                1 => "[a-z{}\"#@/ unix]{1,6}",
            ];
            let port =
                prop_oneof![6 => ":[0-9]{1,5}", 1 => ":[0-9a-z]{0,6}", 1 => Just(String::new())];
            let tail = prop_oneof![6 => Just(""), 1 => Just("/"), 1 => Just("/x"), 1 => Just("?q")];
            (
                prop::option::of(
                    prop_oneof![3 => "[hH][tT][tT][pP][sS]?://", 1 => Just("h2c://".to_string())],
                ),
                host,
                port,
                tail,
            )
                .prop_map(|(scheme, host, port, tail)| {
                    format!("{}{host}{port}{tail}", scheme.unwrap_or_default())
                })
        }

        fn any_input() -> impl Strategy<Value = String> {
            prop_oneof![3 => upstreamish(), 1 => "\\PC{0,40}", 1 => ".{0,20}"]
        }

        const SEPARATORS: &[&str] = &[" ", ",", "\n", ", ", "\t"];

        proptest! {
            #![proptest_config(ProptestConfig { cases: 384, failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn parsing_never_panics_and_accepted_upstreams_round_trip(input in any_input()) {
                if let Ok(upstream) = Upstream::parse(&input) {
                    prop_assert_eq!(Upstream::parse(upstream.as_str()), Ok(upstream.clone()));
                    assert_single_token(upstream.as_str());
                    prop_assert!(upstream.as_str().chars().all(|c| c.is_ascii_lowercase()
                        || c.is_ascii_digit() || "._:/[]-".contains(c)));
                }
            }

            #[test]
            fn accepted_lists_round_trip_through_their_joined_form(
                items in prop::collection::vec(any_input(), 0..6),
                separators in prop::collection::vec(prop::sample::select(SEPARATORS), 6),
            ) {
                let input: String =
                    items.iter().zip(&separators).map(|(i, s)| format!("{i}{s}")).collect();
                if let Ok(list) = Upstreams::parse(&input) {
                    prop_assert_eq!(Upstreams::parse(&list.joined()), Ok(list.clone()));
                    for upstream in list.as_slice() {
                        assert_single_token(upstream.as_str());
                    }
                }
            }
        }
    }
}
