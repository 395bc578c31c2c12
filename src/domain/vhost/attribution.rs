//! Which site an access-log line belongs to: exactly one, or none, decided the way Caddy
//! routes the request, so a log viewer never shows one owner's lines to another.
//!
//! Caddy picks a server by the port the connection arrived on, then the most specific host
//! matcher among that server's sites: an exact name before a wildcard. Its access log gives
//! the `Host` header (with the port when the client sent one) and whether the connection was
//! TLS, not the port it arrived on; so the port is the header's, or else the scheme's default
//! (443 over TLS, 80 without). Browsers always send the real port. A client that sends a port
//! other than the one it connected to can only move *its own* request's line, and only
//! between sites of one name, which belong to one owner unless an admin knowingly allowed
//! an overlap (see `names`).
//!
//! Ties are broken deterministically: sites are taken in the order the Caddyfile lists them
//! (by address), which is also the order Caddy tries blocks with the same host on one port
//! (seen with Caddy 2.6.2: of `bob.localhost:28443` and `https://bob.localhost:28443`, the
//! block written first answers, whichever it is).
//! A plain `http://` request on port 80 for a name that only has a site without scheme and
//! port is that site's: Caddy's automatic HTTPS answers it with a redirect.

use super::SiteAddress;
use super::address::normalize_request_host;
use std::collections::HashMap;

/// Every site with something to know it by (an id, an owner), ready to attribute lines.
pub struct Attribution<T> {
    /// Sorted by canonical address: the Caddyfile's order.
    sites: Vec<(SiteAddress, T)>,
    /// Host (`a.example.com` or `*.example.com`) → indexes into `sites`, in order.
    by_host: HashMap<String, Vec<usize>>,
}

impl<T> Attribution<T> {
    pub fn new(sites: impl IntoIterator<Item = (SiteAddress, T)>) -> Self {
        let mut sites: Vec<(SiteAddress, T)> = sites.into_iter().collect();
        sites.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        let mut by_host: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, (address, _)) in sites.iter().enumerate() {
            by_host
                .entry(address.host().to_string())
                .or_default()
                .push(i);
        }
        Self { sites, by_host }
    }

    /// The site that served a request with this `Host` header (port included when sent),
    /// over TLS or not; None when no site did (only admins see such lines).
    pub fn site_for(&self, host: &str, tls: bool) -> Option<&T> {
        let name = normalize_request_host(host)?;
        let sent_port = split_port(host);
        let port = sent_port.unwrap_or(if tls { 443 } else { 80 });
        let wildcard = name
            .split_once('.')
            .map(|(_, parent)| format!("*.{parent}"));
        let candidates = |key: Option<&str>| -> Vec<usize> {
            key.and_then(|k| self.by_host.get(k))
                .cloned()
                .unwrap_or_default()
        };
        let exact = candidates(Some(&name));
        let wild = candidates(wildcard.as_deref());
        let on_port = |list: &[usize]| {
            list.iter()
                .copied()
                .find(|&i| self.sites[i].0.listener_port() == port)
        };
        let redirected = |list: &[usize]| {
            list.iter().copied().find(|&i| {
                let a = &self.sites[i].0;
                a.https().is_none() && a.port().is_none()
            })
        };
        let found = on_port(&exact).or_else(|| on_port(&wild)).or_else(|| {
            // Automatic HTTPS: plain HTTP on port 80 for a site that listens on 443.
            (port == 80 && !tls)
                .then(|| redirected(&exact).or_else(|| redirected(&wild)))
                .flatten()
        });
        found.map(|i| &self.sites[i].1)
    }
}

/// The port of `host[:port]`, when there is one.
fn split_port(host: &str) -> Option<u16> {
    let (_, port) = host.trim().rsplit_once(':')?;
    port.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(sites: &[(&str, &'static str)]) -> Attribution<&'static str> {
        Attribution::new(
            sites
                .iter()
                .map(|(a, who)| (SiteAddress::parse(a).unwrap(), *who)),
        )
    }

    #[test]
    fn an_exact_name_wins_over_a_wildcard_and_the_port_decides() {
        let t = table(&[
            ("*.example.com", "wild"),
            ("shop.example.com", "shop"),
            ("http://app.localhost:8080", "a8080"),
            ("http://app.localhost:9090", "a9090"),
        ]);
        assert_eq!(t.site_for("shop.example.com", true), Some(&"shop"));
        assert_eq!(t.site_for("blog.example.com:443", false), Some(&"wild"));
        assert_eq!(t.site_for("Blog.Example.com", true), Some(&"wild"));
        assert_eq!(t.site_for("a.b.example.com", true), None, "one label only");
        assert_eq!(t.site_for("app.localhost:8080", false), Some(&"a8080"));
        assert_eq!(t.site_for("app.localhost:9090", false), Some(&"a9090"));
        assert_eq!(t.site_for("app.localhost:7070", false), None);
        assert_eq!(t.site_for("other.test", true), None);
        assert_eq!(t.site_for("", true), None);
    }

    #[test]
    fn the_scheme_of_the_connection_separates_http_from_https_sites_of_one_name() {
        // Bob's HTTPS site and (by an admin's override) Alice's plain-HTTP one.
        let t = table(&[
            ("bob.example.com", "bob"),
            ("http://bob.example.com", "alice"),
        ]);
        assert_eq!(t.site_for("bob.example.com", true), Some(&"bob"));
        assert_eq!(t.site_for("bob.example.com", false), Some(&"alice"));
        assert_eq!(t.site_for("bob.example.com:443", false), Some(&"bob"));
        assert_eq!(t.site_for("bob.example.com:80", false), Some(&"alice"));
    }

    #[test]
    fn sites_of_one_name_on_one_port_go_to_the_first_in_caddyfile_order() {
        // Caddy merges these into one route and tries the first block first.
        let one = table(&[
            ("https://bob.example.com", "third"),
            ("bob.example.com:443", "second"),
            ("bob.example.com", "first"),
        ]);
        let other_order = table(&[
            ("bob.example.com", "first"),
            ("bob.example.com:443", "second"),
            ("https://bob.example.com", "third"),
        ]);
        for t in [&one, &other_order] {
            assert_eq!(t.site_for("bob.example.com", true), Some(&"first"));
            assert_eq!(t.site_for("bob.example.com:443", true), Some(&"first"));
        }
    }

    #[test]
    fn plain_http_for_an_automatic_https_site_is_its_redirect() {
        let t = table(&[("bob.example.com", "bob"), ("*.example.com", "wild")]);
        assert_eq!(t.site_for("bob.example.com", false), Some(&"bob"));
        assert_eq!(t.site_for("x.example.com:80", false), Some(&"wild"));
        // An explicit port of its own gets no redirect on 80.
        let t = table(&[("bob.example.com:8443", "bob")]);
        assert_eq!(t.site_for("bob.example.com", false), None);
        assert_eq!(t.site_for("bob.example.com:8443", true), Some(&"bob"));
    }

    #[test]
    fn every_line_goes_to_at_most_one_site_whatever_the_overlaps() {
        let t = table(&[
            ("*.example.com", "w"),
            ("http://*.example.com", "hw"),
            ("bob.example.com:80", "b80"),
            ("bob.example.com:8080", "b8080"),
        ]);
        assert_eq!(t.site_for("bob.example.com", false), Some(&"b80"));
        assert_eq!(t.site_for("bob.example.com:8080", false), Some(&"b8080"));
        assert_eq!(t.site_for("bob.example.com", true), Some(&"w"));
        assert_eq!(t.site_for("eve.example.com", false), Some(&"hw"));
        assert_eq!(t.site_for("eve.example.com:443", true), Some(&"w"));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn address() -> impl Strategy<Value = String> {
            (
                prop_oneof![Just(""), Just("http://"), Just("https://")],
                prop_oneof![Just("*"), Just("a"), Just("b"), Just("a.b")],
                prop::option::of(prop_oneof![Just(80u16), Just(443), Just(8080)]),
            )
                .prop_map(|(scheme, first, port)| {
                    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
                    format!("{scheme}{first}.example.com{port}")
                })
        }

        fn host() -> impl Strategy<Value = String> {
            (
                prop_oneof![Just("a"), Just("b"), Just("c"), Just("a.b"), Just("A")],
                prop::option::of(prop_oneof![Just(80u16), Just(443), Just(8080)]),
            )
                .prop_map(|(first, port)| {
                    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
                    format!("{first}.example.com{port}")
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

            /// The site a line goes to serves its host, and does not depend on the order the
            /// sites were added in.
            #[test]
            fn attribution_serves_the_host_and_ignores_insertion_order(
                sites in prop::collection::btree_set(address(), 0..8),
                host in host(),
                tls in any::<bool>(),
            ) {
                let list: Vec<(SiteAddress, String)> = sites
                    .iter()
                    .map(|s| (SiteAddress::parse(s).unwrap(), s.clone()))
                    .collect();
                let mut reversed = list.clone();
                reversed.reverse();
                let forward = Attribution::new(list.clone());
                let backward = Attribution::new(reversed);
                let found = forward.site_for(&host, tls);
                prop_assert_eq!(found, backward.site_for(&host, tls));
                if let Some(domain) = found {
                    prop_assert!(SiteAddress::parse(domain).unwrap().matches_host(&host));
                }
            }
        }
    }
}
