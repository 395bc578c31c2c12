//! A site's address (`example.com`, `*.example.com`, `http://app.localhost:8080`): parsed once
//! from what a person typed, then stored and written to the Caddyfile in one canonical ASCII
//! form, so that the same site can never be entered twice under two spellings.
//!
//! The input is hostile: it ends up as the key of a site block in a Caddyfile shared with other
//! people's sites. Only a small, well-understood grammar is accepted, and everything accepted is
//! made of `[a-z0-9.*:/-]`, which Caddy's lexer always reads as one plain token.

use std::net::Ipv4Addr;

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

use crate::domain::FieldError;

/// The longest host name DNS can carry (RFC 1035, without the root dot).
const MAX_HOST_LEN: usize = 253;
/// The longest label DNS can carry.
const MAX_LABEL_LEN: usize = 63;
/// Input longer than this is refused before any real work, so that a pasted novel costs
/// nothing. Generous enough for a scheme, a 253-character host and a port.
pub(super) const MAX_INPUT_CHARS: usize = 300;

fn refuse<T>(why: impl Into<String>) -> Result<T, FieldError> {
    Err(FieldError(why.into()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn prefix(self) -> &'static str {
        match self {
            Scheme::Http => "http://",
            Scheme::Https => "https://",
        }
    }
}

/// A validated site address. Equal addresses have equal canonical text, whatever was typed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SiteAddress {
    canonical: String,
    scheme: Option<Scheme>,
    /// ASCII host, including the leading `*.` of a wildcard.
    host: String,
    port: Option<u16>,
}

impl SiteAddress {
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        let text = input.trim();
        if text.is_empty() {
            return refuse("Enter a domain name, e.g. example.com.");
        }
        if text.chars().count() > MAX_INPUT_CHARS {
            return refuse("That address is too long; a domain name has at most 253 characters.");
        }
        check_characters(text)?;
        let (scheme, rest) = split_scheme(text)?;
        check_authority_characters(rest)?;
        let (host, port) = split_port(rest)?;
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.is_empty() {
            return refuse("Enter a domain name, e.g. example.com.");
        }

        if host == "*" {
            return refuse(
                "A lone * would catch every site; use a wildcard like *.example.com instead.",
            );
        }
        let host = if let Some(base) = host.strip_prefix("*.") {
            if base.contains('*') {
                return refuse(
                    "A wildcard must be the whole first part only, as in *.example.com.",
                );
            }
            let (base, kind) = normalize_host(base, false)?;
            if kind == HostKind::Ipv4 {
                return refuse("A wildcard cannot be used with an IP address.");
            }
            if !base.contains('.') && base != "localhost" {
                return refuse(format!(
                    "*.{base} would cover a whole top-level domain; a wildcard needs a name \
                     under it, as in *.example.{base}."
                ));
            }
            format!("*.{base}")
        } else if host.contains('*') {
            return refuse("A wildcard must be the whole first part only, as in *.example.com.");
        } else {
            normalize_host(host, false)?.0
        };
        if host.len() > MAX_HOST_LEN {
            return refuse("That domain name is too long; the limit is 253 characters.");
        }

        // `http.:8080` would be stored as `http:8080`, which reads as a scheme without `//`
        // (found by the site_address fuzz target).
        if scheme.is_none() && port.is_some() && (host == "http" || host == "https") {
            return refuse("Write the scheme as http:// or https://.");
        }

        let mut canonical = String::new();
        if let Some(scheme) = scheme {
            canonical.push_str(scheme.prefix());
        }
        canonical.push_str(&host);
        if let Some(port) = port {
            canonical.push(':');
            canonical.push_str(&port.to_string());
        }
        Ok(SiteAddress {
            canonical,
            scheme,
            host,
            port,
        })
    }

    /// The canonical form: lowercase ASCII, international names in punycode. This is what is
    /// stored and written to the Caddyfile.
    pub fn as_str(&self) -> &str {
        &self.canonical
    }

    /// The address for people: international names in Unicode, scheme and port as stored.
    pub fn display(&self) -> String {
        let mut out = String::new();
        if let Some(scheme) = self.scheme {
            out.push_str(scheme.prefix());
        }
        match self.host.strip_prefix("*.") {
            Some(base) => {
                out.push_str("*.");
                out.push_str(&to_unicode(base));
            }
            None => out.push_str(&to_unicode(&self.host)),
        }
        if let Some(port) = self.port {
            out.push(':');
            out.push_str(&port.to_string());
        }
        out
    }

    /// The ASCII host without scheme or port (with the `*.` of a wildcard).
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Whether the address says `http://` (Some(false)), `https://` (Some(true)) or neither.
    pub fn https(&self) -> Option<bool> {
        self.scheme.map(|s| s == Scheme::Https)
    }

    /// The port Caddy listens on for this address, as its Caddyfile adapter decides: the
    /// explicit port, else 80 for `http://`, else the HTTPS port 443.
    pub fn listener_port(&self) -> u16 {
        match (self.port, self.scheme) {
            (Some(port), _) => port,
            (None, Some(Scheme::Http)) => 80,
            (None, _) => 443,
        }
    }

    pub fn is_wildcard(&self) -> bool {
        self.host.starts_with("*.")
    }

    /// Whether an HTTP `Host` header belongs to this site. The header's port is ignored, case
    /// and Unicode are normalized the way the address itself was, and a wildcard stands for
    /// exactly one label, as in Caddy: `*.example.com` matches `a.example.com` but neither
    /// `example.com` nor `a.b.example.com`.
    pub fn matches_host(&self, request_host: &str) -> bool {
        let Some(request) = normalize_request_host(request_host) else {
            return false;
        };
        match self.host.strip_prefix("*.") {
            None => request == self.host,
            Some(base) => request
                .strip_suffix(base)
                .and_then(|rest| rest.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.contains(['.', '*'])),
        }
    }
}

/// Why an address with a space or comma in it is refused: several addresses typed into one
/// site (`a.com b.com`, `a.com, b.com`), or a space inside one name (`my site.com`).
fn separator_reason(text: &str, found: char) -> &'static str {
    let parts: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|p| !p.is_empty())
        .collect();
    let looks_like_an_address =
        |p: &&str| p.contains(['.', ':']) || p.eq_ignore_ascii_case("localhost");
    if parts.len() > 1 && parts.iter().all(looks_like_an_address) {
        "Enter one address per site; add another site for more."
    } else if found == ',' {
        "Commas are not allowed in a site address."
    } else {
        "A site address cannot contain spaces."
    }
}

/// Rules for the whole text, checked first so the reason names the most obvious problem.
fn check_characters(text: &str) -> Result<(), FieldError> {
    for c in text.chars() {
        // Before the control check: a tab or newline is a separator to the person typing.
        if c.is_whitespace() || c == ',' {
            return refuse(separator_reason(text, c));
        }
        if c.is_control() {
            return refuse("The address contains an invisible control character; retype it.");
        }
        match c {
            '{' | '}' => {
                return refuse(
                    "Braces are not allowed in a site address; placeholders cannot be used here.",
                );
            }
            '"' | '\'' | '`' => return refuse("Quotes are not allowed in a site address."),
            '\\' => return refuse("Backslashes are not allowed in a site address."),
            _ => {}
        }
    }
    Ok(())
}

fn split_scheme(text: &str) -> Result<(Option<Scheme>, &str), FieldError> {
    if let Some((scheme, rest)) = text.split_once("://") {
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return refuse("Only http:// and https:// addresses are supported."),
        };
        return Ok((Some(scheme), rest));
    }
    let lower = text.get(..6).unwrap_or(text).to_ascii_lowercase();
    if lower.starts_with("http:") || lower.starts_with("https:") {
        return refuse("Write the scheme as http:// or https://.");
    }
    Ok((None, text))
}

/// Rules for what follows the scheme: just a host and maybe a port.
fn check_authority_characters(rest: &str) -> Result<(), FieldError> {
    if rest.contains('@') {
        return refuse(
            "A site address cannot contain a user name (user@…); enter just the domain.",
        );
    }
    if rest.contains('/') {
        return refuse("A site address cannot contain a path (/…); enter just the domain.");
    }
    if rest.contains('?') {
        return refuse("A site address cannot contain a query (?…); enter just the domain.");
    }
    if rest.contains('#') {
        return refuse("A site address cannot contain #.");
    }
    if rest.contains(['[', ']']) || rest.matches(':').count() > 1 {
        return refuse(
            "IPv6 addresses are not supported yet; use a domain name or an IPv4 address.",
        );
    }
    Ok(())
}

fn split_port(rest: &str) -> Result<(&str, Option<u16>), FieldError> {
    match rest.rsplit_once(':') {
        Some((host, port)) => Ok((host, Some(parse_port(port)?))),
        None => Ok((rest, None)),
    }
}

/// A TCP port from 1 to 65535, written in decimal digits only.
pub(super) fn parse_port(text: &str) -> Result<u16, FieldError> {
    if text.is_empty() {
        return refuse("Add a port number after the colon, or remove the colon.");
    }
    if !text.chars().all(|c| c.is_ascii_digit()) {
        return refuse(format!(
            "The port must be a number from 1 to 65535, not {:?}.",
            shorten(text)
        ));
    }
    let digits = text.trim_start_matches('0');
    match digits.parse::<u16>() {
        Ok(port) if digits.len() <= 5 && port > 0 => Ok(port),
        _ => refuse("The port must be a number from 1 to 65535."),
    }
}

/// What kind of host a name turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HostKind {
    Name,
    Ipv4,
}

/// Turns a typed host (no scheme, port or wildcard) into its canonical ASCII form: an IPv4
/// literal as std writes it, or a lowercase DNS name with international labels in punycode.
/// Underscores are refused in site names (certificates cannot carry them) but may be allowed
/// for upstreams, where Docker-style names such as `project_app_1` resolve fine. A trailing
/// dot is the caller's business: stripping it here too would let `example.com..` through.
pub(super) fn normalize_host(
    host: &str,
    allow_underscore: bool,
) -> Result<(String, HostKind), FieldError> {
    if host.is_empty() {
        return refuse("Enter a host name, e.g. example.com.");
    }
    for c in host.chars() {
        match c {
            '_' if !allow_underscore => {
                return refuse("Underscores are not allowed in domain names; use a hyphen.");
            }
            '_' | '.' | '-' => {}
            c if c.is_ascii_alphanumeric() || !c.is_ascii() => {}
            c => {
                return refuse(format!(
                    "The character {c:?} is not allowed in a domain name."
                ));
            }
        }
    }

    let labels: Vec<&str> = host.split('.').collect();
    let numeric = |label: &str| !label.is_empty() && label.chars().all(|c| c.is_ascii_digit());
    if labels.iter().all(|l| numeric(l)) {
        // Rust's parser refuses leading zeros, which some resolvers would read as octal.
        return match host.parse::<Ipv4Addr>() {
            Ok(ip) => Ok((ip.to_string(), HostKind::Ipv4)),
            Err(_) => refuse("That is not a valid IPv4 address, e.g. 192.0.2.10."),
        };
    }

    // The deny list is empty because the characters were checked above with better messages
    // than "invalid"; the result is checked again below, since Unicode input can map to ASCII
    // punctuation (a fullwidth slash becomes '/').
    let ascii = Uts46::new()
        .to_ascii(
            host.as_bytes(),
            AsciiDenyList::EMPTY,
            Hyphens::Allow,
            DnsLength::Ignore,
        )
        .map_err(|_| FieldError("That is not a valid international domain name.".into()))?
        .into_owned();
    // An ideographic full stop at the end maps to a trailing dot, which is dropped like an
    // ASCII one; a second one would be an empty label.
    let ascii = match ascii.strip_suffix('.') {
        Some(stripped) if !host.ends_with('.') => stripped.to_string(),
        _ => ascii,
    };
    check_labels(&ascii, allow_underscore)?;
    // The edit form shows the name in Unicode, and saving it unchanged must give this name
    // back. A punycode label that decodes to another `xn--` label would not (found by the
    // site_address fuzz target): it is no valid international name either.
    let unicode = to_unicode(&ascii);
    if unicode != ascii {
        let back = Uts46::new().to_ascii(
            unicode.as_bytes(),
            AsciiDenyList::EMPTY,
            Hyphens::Allow,
            DnsLength::Ignore,
        );
        if back.ok().as_deref() != Some(ascii.as_str()) {
            return refuse("That is not a valid international domain name.");
        }
    }
    Ok((ascii, HostKind::Name))
}

fn check_labels(ascii: &str, allow_underscore: bool) -> Result<(), FieldError> {
    if ascii.len() > MAX_HOST_LEN {
        return refuse("That domain name is too long; the limit is 253 characters.");
    }
    let labels: Vec<&str> = ascii.split('.').collect();
    for label in &labels {
        if label.is_empty() {
            return refuse("The name has an empty part: two dots in a row, or a dot at the start.");
        }
        if label.len() > MAX_LABEL_LEN {
            return refuse("Each part of a domain name between dots can be at most 63 characters.");
        }
        let allowed = |c: char| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || c == '-'
                || (allow_underscore && c == '_')
        };
        let bad = label.chars().find(|&c| !allowed(c));
        if let Some(c) = bad {
            return refuse(format!(
                "The character {c:?} is not allowed in a domain name."
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return refuse("A part of a domain name cannot start or end with a hyphen.");
        }
    }
    let last = labels.last().copied().unwrap_or_default();
    if last.chars().all(|c| c.is_ascii_digit()) {
        return refuse("The last part of a domain name cannot be only digits.");
    }
    Ok(())
}

/// The request's host in the same canonical form as [`SiteAddress::host`], or `None` when it
/// cannot be the name of any site we accept.
pub(super) fn normalize_request_host(request_host: &str) -> Option<String> {
    let host = request_host.trim();
    if host.len() > 4 * MAX_INPUT_CHARS || host.starts_with('[') {
        return None;
    }
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        Some(_) => return None,
        None => host,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Some(ip.to_string());
    }
    Uts46::new()
        .to_ascii(
            host.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::Allow,
            DnsLength::Ignore,
        )
        .ok()
        .map(|ascii| ascii.into_owned())
}

/// Unicode for display; falls back to ASCII if the name somehow does not decode.
fn to_unicode(ascii: &str) -> String {
    let (unicode, result) =
        Uts46::new().to_unicode(ascii.as_bytes(), AsciiDenyList::EMPTY, Hyphens::Allow);
    match result {
        Ok(()) => unicode.into_owned(),
        Err(_) => ascii.to_string(),
    }
}

/// At most 40 characters of user text, for quoting it back in a message.
pub(super) fn shorten(text: &str) -> String {
    const LIMIT: usize = 40;
    if text.chars().count() <= LIMIT {
        return text.to_string();
    }
    let mut short: String = text.chars().take(LIMIT).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::caddyfile::{LexOptions, Quote, tokenize_with};

    fn canonical(input: &str) -> String {
        SiteAddress::parse(input)
            .unwrap_or_else(|e| panic!("{input:?} should be accepted: {e}"))
            .as_str()
            .to_string()
    }

    fn reason(input: &str) -> String {
        match SiteAddress::parse(input) {
            Ok(a) => panic!("{input:?} should be refused, got {:?}", a.as_str()),
            Err(e) => e.0,
        }
    }

    #[test]
    fn plain_domains_are_lowercased_and_trimmed() {
        assert_eq!(canonical("  Example.COM \n"), "example.com");
        assert_eq!(canonical("www.example.co.uk"), "www.example.co.uk");
        assert_eq!(canonical("a-b.example"), "a-b.example");
        assert_eq!(
            canonical("r3---sn-abc.example.com"),
            "r3---sn-abc.example.com"
        );
    }

    #[test]
    fn a_host_named_like_a_scheme_with_a_port_is_refused() {
        // Found by fuzzing: `http.:6` was stored as `http:6`, which then did not parse.
        assert!(reason("http.:6").contains("http://"));
        assert!(reason("HTTPS.:443").contains("http://"));
        assert_eq!(canonical("http://http:8080"), "http://http:8080");
    }

    #[test]
    fn a_punycode_label_that_decodes_to_another_punycode_label_is_refused() {
        // Found by fuzzing: accepted, it showed in the edit form as `xn---b---ɽ----ɽ---`,
        // which saving the form then refused.
        assert!(reason("xn--xn---b-----------rche").contains("international"));
        // Real international names still read back from their display form.
        let address = SiteAddress::parse("xn--bcher-kva.example").unwrap();
        assert_eq!(address.display(), "bücher.example");
        assert_eq!(canonical(&address.display()), "xn--bcher-kva.example");
    }

    #[test]
    fn a_trailing_dot_is_removed() {
        assert_eq!(canonical("example.com."), "example.com");
        assert_eq!(
            SiteAddress::parse("example.com.").unwrap(),
            SiteAddress::parse("example.com").unwrap()
        );
    }

    #[test]
    fn international_names_are_stored_as_punycode_and_shown_in_unicode() {
        let typed = SiteAddress::parse("Bücher.example").unwrap();
        let punycode = SiteAddress::parse("xn--bcher-kva.example").unwrap();
        assert_eq!(typed, punycode);
        assert_eq!(typed.as_str(), "xn--bcher-kva.example");
        assert_eq!(typed.host(), "xn--bcher-kva.example");
        assert_eq!(typed.display(), "bücher.example");
        assert_eq!(
            SiteAddress::parse("https://*.bücher.example:8443")
                .unwrap()
                .display(),
            "https://*.bücher.example:8443"
        );
    }

    #[test]
    fn ascii_names_display_as_they_are_stored() {
        let a = SiteAddress::parse("http://app.localhost:8080").unwrap();
        assert_eq!(a.display(), "http://app.localhost:8080");
    }

    #[test]
    fn a_leading_wildcard_label_is_accepted() {
        let a = SiteAddress::parse("*.Example.com").unwrap();
        assert_eq!(a.as_str(), "*.example.com");
        assert!(a.is_wildcard());
        assert_eq!(a.host(), "*.example.com");
        assert!(!SiteAddress::parse("example.com").unwrap().is_wildcard());
        assert_eq!(canonical("*.localhost"), "*.localhost");
    }

    #[test]
    fn scheme_and_port_are_kept_in_canonical_form() {
        let a = SiteAddress::parse("HTTP://App.localhost:08080").unwrap();
        assert_eq!(a.as_str(), "http://app.localhost:8080");
        assert_eq!(a.host(), "app.localhost");
        assert_eq!(a.port(), Some(8080));
        assert_eq!(canonical("https://example.com"), "https://example.com");
        assert_eq!(canonical("example.com:443"), "example.com:443");
        assert_eq!(SiteAddress::parse("example.com").unwrap().port(), None);
    }

    #[test]
    fn localhost_single_label_names_and_ipv4_literals_are_accepted() {
        assert_eq!(canonical("localhost"), "localhost");
        assert_eq!(canonical("api.localhost"), "api.localhost");
        assert_eq!(canonical("intranet"), "intranet");
        assert_eq!(canonical("127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(canonical("http://192.0.2.10"), "http://192.0.2.10");
    }

    #[test]
    fn spaces_and_commas_are_refused_as_several_addresses() {
        for input in ["a.com b.com", "a.com,b.com", "a.com, b.com", "a.com\tb.com"] {
            assert!(reason(input).contains("one address per site"), "{input:?}");
        }
    }

    #[test]
    fn a_space_inside_one_name_is_refused_as_a_space() {
        for input in ["bad domain", "my site.example.com", "shop .example.com"] {
            assert_eq!(
                reason(input),
                "A site address cannot contain spaces.",
                "{input:?}"
            );
        }
        assert_eq!(
            reason("shop,example.com"),
            "Commas are not allowed in a site address."
        );
    }

    #[test]
    fn paths_queries_and_user_names_are_refused() {
        assert!(reason("example.com/x").contains("path"));
        assert!(reason("https://example.com/").contains("path"));
        assert!(reason("example.com?x=1").contains("query"));
        assert!(reason("user@example.com").contains("user name"));
        assert!(reason("https://user:pw@example.com").contains("user name"));
    }

    #[test]
    fn schemes_other_than_http_and_https_are_refused() {
        assert!(reason("ftp://example.com").contains("Only http:// and https://"));
        assert!(reason("://example.com").contains("Only http:// and https://"));
        assert!(reason("http:example.com").contains("http:// or https://"));
        assert!(reason("https:/example.com").contains("http:// or https://"));
    }

    #[test]
    fn a_lone_star_and_wildcards_over_a_top_level_domain_are_refused() {
        assert!(reason("*").contains("every site"));
        assert!(reason("http://*:8080").contains("every site"));
        assert!(reason("*.com").contains("top-level domain"));
        assert!(reason("*.com.").contains("top-level domain"));
    }

    #[test]
    fn wildcards_anywhere_but_the_whole_first_label_are_refused() {
        for input in [
            "a.*.com",
            "*.*.example.com",
            "a*.example.com",
            "*a.example.com",
            "example.*",
        ] {
            assert!(reason(input).contains("wildcard"), "{input:?}");
        }
        assert!(reason("*.127.0.0.1").contains("IP address"));
    }

    #[test]
    fn empty_labels_are_refused() {
        for input in [
            "a..example.com",
            ".example.com",
            "example.com..",
            "*..example.com",
        ] {
            assert!(reason(input).contains("empty part"), "{input:?}");
        }
        assert!(reason(".").starts_with("Enter a domain name"));
        assert!(reason("   ").starts_with("Enter a domain name"));
    }

    #[test]
    fn underscores_are_refused_with_a_hint() {
        assert!(reason("my_site.example.com").contains("Underscores"));
    }

    #[test]
    fn labels_must_not_start_or_end_with_a_hyphen_or_be_too_long() {
        assert!(reason("-a.example.com").contains("hyphen"));
        assert!(reason("a-.example.com").contains("hyphen"));
        let long_label = format!("{}.example.com", "a".repeat(64));
        assert!(reason(&long_label).contains("63"));
        canonical(&format!("{}.example.com", "a".repeat(63)));
    }

    #[test]
    fn names_longer_than_253_characters_are_refused() {
        let label = "a".repeat(63);
        let ok = format!("{label}.{label}.{label}.{}", "a".repeat(61));
        assert_eq!(ok.len(), 253);
        canonical(&ok);
        let too_long = format!("{label}.{label}.{label}.{}", "a".repeat(62));
        assert!(reason(&too_long).contains("253"));
        assert!(reason(&"a.".repeat(400)).contains("too long"));
    }

    #[test]
    fn caddyfile_special_characters_are_refused_by_name() {
        assert!(reason("{host}.example.com").contains("Braces"));
        assert!(reason("example.com}").contains("Braces"));
        assert!(reason("\"example.com\"").contains("Quotes"));
        assert!(reason("`example.com`").contains("Quotes"));
        assert!(reason("exa#mple.com").contains('#'));
        assert!(reason("example\\.com").contains("Backslash"));
        assert!(reason("exa<mple.com").contains("'<'"));
        assert!(reason("exa$mple.com").contains("'$'"));
        assert!(reason("exa%41mple.com").contains("'%'"));
        assert!(reason("import;x").contains("';'"));
    }

    #[test]
    fn control_characters_are_refused() {
        assert!(reason("exa\u{0}mple.com").contains("control character"));
        assert!(reason("example.com\u{1b}[31m").contains("control character"));
    }

    #[test]
    fn unicode_that_maps_to_punctuation_is_refused() {
        // A fullwidth solidus folds to '/', which must not sneak in after normalization.
        assert!(SiteAddress::parse("example\u{ff0f}com").is_err());
        assert!(SiteAddress::parse("example.com\u{3002}\u{3002}").is_err());
        assert_eq!(canonical("example\u{3002}com\u{3002}"), "example.com");
        assert_eq!(canonical("\u{ff25}xample.com"), "example.com");
    }

    #[test]
    fn ipv6_is_refused_for_now() {
        for input in [
            "[::1]",
            "[::1]:8080",
            "::1",
            "http://[2001:db8::1]",
            "2001:db8::1",
        ] {
            assert!(reason(input).contains("IPv6"), "{input:?}");
        }
    }

    #[test]
    fn ports_must_be_between_1_and_65535() {
        assert!(reason("example.com:0").contains("1 to 65535"));
        assert!(reason("example.com:65536").contains("1 to 65535"));
        assert!(reason("example.com:99999999999999999999").contains("1 to 65535"));
        assert!(reason("example.com:http").contains("number"));
        assert!(reason("example.com:+80").contains("number"));
        assert!(reason("example.com:").contains("Add a port number"));
        assert_eq!(canonical("example.com:65535"), "example.com:65535");
        assert_eq!(canonical("example.com:1"), "example.com:1");
    }

    #[test]
    fn bad_ipv4_literals_and_numeric_top_level_labels_are_refused() {
        assert!(reason("256.1.1.1").contains("IPv4"));
        assert!(reason("1.2.3").contains("IPv4"));
        assert!(reason("01.2.3.4").contains("IPv4"));
        assert!(reason("12345").contains("IPv4"));
        assert!(reason("example.123").contains("only digits"));
    }

    #[test]
    fn invalid_punycode_is_refused() {
        assert!(reason("xn--.example").contains("international"));
        assert!(reason("xn--a.example").contains("international"));
        assert!(reason("xn--9999999999.example").contains("international"));
    }

    #[test]
    fn the_request_host_matches_regardless_of_port_case_and_encoding() {
        let site = SiteAddress::parse("https://bücher.example:8443").unwrap();
        assert!(site.matches_host("bücher.example"));
        assert!(site.matches_host("XN--BCHER-KVA.example:443"));
        assert!(site.matches_host("Bücher.Example."));
        assert!(!site.matches_host("buecher.example"));
        assert!(!site.matches_host("www.bücher.example"));
        assert!(!site.matches_host(""));
        assert!(!site.matches_host("bücher.example:http"));
        let ip = SiteAddress::parse("127.0.0.1:8080").unwrap();
        assert!(ip.matches_host("127.0.0.1:9999"));
        assert!(!ip.matches_host("[::1]:8080"));
    }

    #[test]
    fn a_wildcard_matches_exactly_one_label_like_caddy() {
        let site = SiteAddress::parse("*.example.com").unwrap();
        assert!(site.matches_host("a.example.com"));
        assert!(site.matches_host("WWW.Example.com:443"));
        assert!(!site.matches_host("example.com"));
        assert!(!site.matches_host("a.b.example.com"));
        assert!(!site.matches_host(".example.com"));
        assert!(!site.matches_host("aexample.com"));
        assert!(!site.matches_host("*.example.com"));
    }

    #[test]
    fn canonical_addresses_are_single_plain_caddyfile_tokens() {
        for input in [
            "example.com",
            "*.example.com",
            "http://app.localhost:8080",
            "Bücher.example",
            "127.0.0.1:8080",
        ] {
            assert_single_token(SiteAddress::parse(input).unwrap().as_str());
        }
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

        /// Mostly address-shaped text, so that a good share of the inputs is accepted.
        fn addressish() -> impl Strategy<Value = String> {
            let label = prop_oneof![
                6 => "[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?",
                1 => "[a-zA-Z0-9-]{1,4}",
                1 => "[a-zA-Z0-9äöüßéñ\u{4e2d}\u{0430}-]{1,8}",
                1 => Just("xn--bcher-kva".to_string()),
                1 => Just("*".to_string()),
                1 => "[_.*{}\"#:/@?\\[\\] ]{1,2}",
            ];
            (
                prop::option::of(
                    prop_oneof![4 => "[hH][tT][tT][pP][sS]?://", 1 => Just("ftp://".to_string())],
                ),
                prop::collection::vec(label, 1..5),
                prop::option::of("[0-9]{1,6}"),
                prop::bool::ANY,
            )
                .prop_map(|(scheme, labels, port, dot)| {
                    let mut s = scheme.unwrap_or_default();
                    s.push_str(&labels.join("."));
                    if dot {
                        s.push('.');
                    }
                    if let Some(port) = port {
                        s.push(':');
                        s.push_str(&port);
                    }
                    s
                })
        }

        fn any_input() -> impl Strategy<Value = String> {
            prop_oneof![3 => addressish(), 1 => "\\PC{0,40}", 1 => ".{0,20}"]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 384, failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn parsing_never_panics_and_accepted_addresses_round_trip(input in any_input()) {
                if let Ok(address) = SiteAddress::parse(&input) {
                    prop_assert_eq!(SiteAddress::parse(address.as_str()), Ok(address.clone()));
                    prop_assert_eq!(SiteAddress::parse(&address.display()), Ok(address.clone()));
                    assert_single_token(address.as_str());
                    prop_assert!(address.as_str().chars().all(|c| c.is_ascii_lowercase()
                        || c.is_ascii_digit() || ".-*:/".contains(c)));
                    prop_assert!(address.host().len() <= MAX_HOST_LEN);
                    let _ = address.matches_host(&input);
                }
            }

            #[test]
            fn an_address_matches_its_own_host(input in addressish()) {
                if let Ok(address) = SiteAddress::parse(&input) {
                    let host = address.host().replacen("*.", "x.", 1);
                    prop_assert!(address.matches_host(&host), "{:?} vs {:?}", address, host);
                    let deeper = format!("a.b.{host}");
                    prop_assert!(!address.matches_host(&deeper));
                }
            }
        }
    }
}
