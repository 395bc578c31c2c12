//! Who may serve which names: the grants an admin delegates to a `user`, whether two site
//! addresses overlap as Caddy would serve them, and the ports a `user`'s sites may use.
//!
//! **Grants.** A grant is a name alone (no scheme, no port), stored in the canonical form
//! of [`SiteAddress`]:
//! - `app.example.com` grants exactly that name (with any scheme, on the allowed ports);
//! - `*.team.example.com` grants every name *under* `team.example.com`, at any depth
//!   (`a.team.example.com`, `x.y.team.example.com`), and the wildcard sites under it
//!   (`*.team.example.com` itself, `*.a.team.example.com`). It does not grant
//!   `team.example.com`: grant that name on its own, as a certificate's wildcard would not
//!   cover it either.
//!
//! **Overlap.** Two addresses overlap when one request host could be served by either. The
//! scheme and the port are left out on purpose, so `http://bob.example.com`,
//! `bob.example.com:443`, `bob.example.com:80` and `bob.example.com:8443` all overlap
//! `bob.example.com`:
//! - browsers scope cookies by host, not by port or scheme, so a site on another port of
//!   the same name reads and sets the other site's cookies;
//! - Caddy's certificates and TLS policies are kept per name, not per port;
//! - Caddy's host matcher ignores the port of the `Host` header, and its access log does not
//!   say on which port a request arrived, so lines of one name on two ports could not be
//!   told apart reliably for two different owners.
//!
//! Wildcards follow Caddy: `*.example.com` matches exactly one label (`a.example.com`, not
//! `example.com` nor `a.b.example.com`), so it overlaps `a.example.com` and
//! `*.example.com`, never `a.b.example.com` or `*.a.example.com`. Names are compared in their
//! canonical form (lowercase, punycode), so no spelling slips past.

use super::SiteAddress;
use crate::domain::FieldError;

/// A name an admin delegated to a user: `app.example.com` or `*.team.example.com`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Grant(SiteAddress);

impl Grant {
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        let address = SiteAddress::parse(input)?;
        if address.https().is_some() || address.port().is_some() {
            return Err(FieldError(
                "A grant is a name alone: leave out http:// or https:// and the port.".into(),
            ));
        }
        Ok(Self(address))
    }

    /// Canonical form, as stored.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// For people: international names in Unicode.
    pub fn display(&self) -> String {
        self.0.display()
    }

    /// Whether a site at `site` lies inside this grant (see the module's doc).
    pub fn covers(&self, site: &SiteAddress) -> bool {
        let granted = self.0.host();
        match granted.strip_prefix("*.") {
            None => site.host() == granted,
            Some(base) => site
                .host()
                .strip_suffix(base)
                .and_then(|rest| rest.strip_suffix('.'))
                .is_some_and(|below| !below.is_empty()),
        }
    }
}

/// Whether some request host could be served by both `a` and `b`, whatever their schemes and
/// ports (see the module's doc for why ports do not separate two sites).
pub fn overlaps(a: &SiteAddress, b: &SiteAddress) -> bool {
    let (a, b) = (a.host(), b.host());
    a == b || wildcard_matches(a, b) || wildcard_matches(b, a)
}

/// Whether the wildcard `pattern` (`*.base`) matches the plain name `host`: exactly one label
/// in front of `base`, as Caddy's host matcher does.
fn wildcard_matches(pattern: &str, host: &str) -> bool {
    let Some(base) = pattern.strip_prefix("*.") else {
        return false;
    };
    host.strip_suffix(base)
        .and_then(|rest| rest.strip_suffix('.'))
        .is_some_and(|label| !label.is_empty() && !label.contains(['.', '*']))
}

/// Text that every stored domain overlapping `site` contains: the prefilter for a query, so
/// the exact [`overlaps`] runs only on a few rows. A name's wildcard `*.parent` and the name
/// itself both contain `parent`; a wildcard's names all contain its base.
pub fn overlap_needle(site: &SiteAddress) -> &str {
    let host = site.host();
    match host.strip_prefix("*.") {
        Some(base) => base,
        None => host.split_once('.').map_or(host, |(_, parent)| parent),
    }
}

/// Whether a `user` may put a site at `site`: no explicit port, or one of `allowed`.
pub fn port_allowed(site: &SiteAddress, allowed: &[u16]) -> bool {
    site.port().is_none_or(|p| allowed.contains(&p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(s: &str) -> SiteAddress {
        SiteAddress::parse(s).unwrap()
    }

    fn grant(s: &str) -> Grant {
        Grant::parse(s).unwrap()
    }

    #[test]
    fn an_exact_grant_covers_that_name_with_any_scheme_or_port_and_nothing_else() {
        let g = grant("App.Example.com");
        assert_eq!(g.as_str(), "app.example.com");
        for s in [
            "app.example.com",
            "http://app.example.com",
            "https://app.example.com:8443",
        ] {
            assert!(g.covers(&site(s)), "{s}");
        }
        for s in [
            "example.com",
            "a.app.example.com",
            "*.app.example.com",
            "xapp.example.com",
        ] {
            assert!(!g.covers(&site(s)), "{s}");
        }
    }

    #[test]
    fn a_wildcard_grant_covers_every_name_below_at_any_depth_but_not_its_base() {
        let g = grant("*.team.example.com");
        for s in [
            "a.team.example.com",
            "x.y.team.example.com",
            "*.team.example.com",
            "*.a.team.example.com",
            "http://a.team.example.com:80",
        ] {
            assert!(g.covers(&site(s)), "{s}");
        }
        for s in [
            "team.example.com",
            "evilteam.example.com",
            "a.evilteam.example.com",
            "*.example.com",
            "example.com",
        ] {
            assert!(!g.covers(&site(s)), "{s}");
        }
    }

    #[test]
    fn grants_are_names_alone_in_canonical_form() {
        assert!(Grant::parse("http://a.example.com").is_err());
        assert!(Grant::parse("a.example.com:443").is_err());
        assert!(Grant::parse("*.com").is_err(), "a whole top-level domain");
        assert!(Grant::parse("a.*.example.com").is_err());
        assert_eq!(
            grant("*.bücher.example").as_str(),
            "*.xn--bcher-kva.example"
        );
        assert_eq!(
            grant("*.xn--bcher-kva.example").display(),
            "*.bücher.example"
        );
        assert!(grant("*.bücher.example").covers(&site("shop.BÜCHER.example")));
    }

    #[test]
    fn the_same_name_overlaps_whatever_the_scheme_or_port() {
        let bob = site("bob.example.com");
        for s in [
            "http://bob.example.com",
            "https://bob.example.com",
            "bob.example.com:443",
            "bob.example.com:80",
            "http://bob.example.com:2019",
            "BOB.example.com.",
        ] {
            assert!(overlaps(&site(s), &bob), "{s}");
            assert!(overlaps(&bob, &site(s)), "{s} (reversed)");
        }
    }

    #[test]
    fn a_wildcard_overlaps_exactly_the_names_caddy_would_serve_with_it() {
        let wild = site("*.example.com");
        for s in [
            "bob.example.com",
            "http://x.example.com:8080",
            "*.example.com",
        ] {
            assert!(overlaps(&wild, &site(s)), "{s}");
            assert!(overlaps(&site(s), &wild), "{s} (reversed)");
        }
        for s in [
            "example.com",
            "a.b.example.com",
            "*.a.example.com",
            "bob.example.org",
            "xexample.com",
        ] {
            assert!(!overlaps(&wild, &site(s)), "{s}");
        }
        assert!(!overlaps(&site("a.example.com"), &site("b.example.com")));
    }

    #[test]
    fn the_needle_is_in_every_overlapping_domain() {
        let cases = [
            (
                "bob.example.com",
                &["*.example.com", "http://bob.example.com:80"][..],
            ),
            (
                "*.example.com",
                &["a.example.com", "https://*.example.com"][..],
            ),
            ("localhost", &["localhost:8080"][..]),
        ];
        for (s, others) in cases {
            let needle = overlap_needle(&site(s)).to_string();
            for other in others {
                assert!(overlaps(&site(s), &site(other)));
                assert!(site(other).as_str().contains(&needle), "{s} vs {other}");
            }
        }
    }

    #[test]
    fn a_user_port_is_implied_or_allowed() {
        let allowed = [80, 443];
        assert!(port_allowed(&site("x.example.com"), &allowed));
        assert!(port_allowed(&site("http://x.example.com"), &allowed));
        assert!(port_allowed(&site("x.example.com:443"), &allowed));
        assert!(!port_allowed(&site("http://x.example.com:2019"), &allowed));
        assert!(port_allowed(&site("http://x.example.com:2019"), &[2019]));
    }
}
