//! The values a template's fields accept, each checked and written in its one canonical
//! form: document roots, PHP-FPM addresses, redirect targets, health-check paths and
//! intervals.

use super::generate::GenerateContext;
use crate::domain::FieldError;
use crate::domain::vhost::address::{normalize_host, parse_port};
use crate::domain::vhost::upstream::Upstream;

pub(super) fn refuse<T>(why: impl Into<String>) -> Result<T, FieldError> {
    Err(FieldError(why.into()))
}

/// Longest document root accepted; far more than any real one, far less than PATH_MAX.
pub(super) const MAX_PATH_BYTES: usize = 1024;

/// A document root: absolute, without `.` or `..` parts, written with single slashes and no
/// trailing one. For the user role it must be `user_root_base` or a folder below it, compared
/// part by part so that `/srv/www2` is not inside `/srv/www`. Symbolic links are not (and
/// cannot be, here) resolved.
pub(super) fn site_root(
    value: &str,
    ctx: &GenerateContext,
    empty: &str,
) -> Result<String, FieldError> {
    let path = value.trim();
    if path.is_empty() {
        return refuse(empty);
    }
    let segments = path_segments(path)?;
    let canonical = format!("/{}", segments.join("/"));
    if !ctx.admin {
        let base = path_segments(ctx.user_root_base.trim()).map_err(|_| {
            FieldError(
                "No folder for sites is set up for your account, so it cannot serve files; \
                 ask an admin."
                    .into(),
            )
        })?;
        if !segments.starts_with(&base) {
            let base = format!("/{}", base.join("/"));
            let example = format!("{}/example", base.trim_end_matches('/'));
            return refuse(format!("Choose a folder inside {base}, e.g. {example}."));
        }
    }
    Ok(canonical)
}

pub(super) fn path_segments(path: &str) -> Result<Vec<&str>, FieldError> {
    if path.len() > MAX_PATH_BYTES {
        return refuse("That path is too long.");
    }
    if path.chars().any(char::is_control) {
        return refuse("The path contains an invisible control character; retype it.");
    }
    if !path.starts_with('/') {
        return refuse("Enter an absolute path that starts with /, e.g. /srv/www/example.");
    }
    if path.contains(['{', '}']) {
        return refuse("Braces are not allowed in a path; Caddy would read them as placeholders.");
    }
    if path.contains(['"', '`', '\\']) {
        return refuse("Quotes and backslashes are not allowed in a path.");
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segments.contains(&"..") {
        return refuse("A path cannot contain \"..\"; write the folder out in full.");
    }
    if segments.contains(&".") {
        return refuse("A path cannot contain \".\" parts; write the folder out in full.");
    }
    Ok(segments)
}

/// The PHP-FPM address: `host:port`, or for admins a unix socket written as Caddy wants it,
/// `unix//run/php/php-fpm.sock`.
pub(super) fn php_upstream(value: &str) -> Result<String, FieldError> {
    let text = value.trim();
    if text.is_empty() {
        return refuse("Enter the PHP-FPM address, e.g. 127.0.0.1:9000.");
    }
    if let Some(prefix) = text.get(..5)
        && prefix.eq_ignore_ascii_case("unix/")
    {
        return unix_socket(&text[5..]);
    }
    let upstream = Upstream::parse(text)?;
    if upstream.scheme().is_some() {
        return refuse(
            "Enter host:port without http:// or https://; PHP-FPM speaks FastCGI, not HTTP.",
        );
    }
    Ok(upstream.as_str().to_string())
}

/// The kernel limits a socket path to 108 bytes including the terminating NUL.
pub(super) const MAX_SOCKET_PATH_BYTES: usize = 107;

pub(super) fn unix_socket(path: &str) -> Result<String, FieldError> {
    if !path.starts_with('/') {
        return refuse(
            "Write the socket's absolute path after unix/, e.g. unix//run/php/php-fpm.sock.",
        );
    }
    if let Some(c) = path
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "/._-@+".contains(c)))
    {
        return refuse(format!(
            "The character {c:?} is not allowed in a socket path."
        ));
    }
    let segments = path_segments(path)?;
    let canonical = format!("/{}", segments.join("/"));
    if canonical.len() > MAX_SOCKET_PATH_BYTES || segments.is_empty() {
        return refuse("That is not a usable socket path.");
    }
    Ok(format!("unix/{canonical}"))
}

/// Longest redirect target accepted; longer URLs break in some browsers anyway.
pub(super) const MAX_URL_BYTES: usize = 2048;

/// An absolute http(s) URL with a host. The scheme and host are normalized (international
/// names become punycode, which every browser accepts in `Location`); the rest is kept as
/// typed but must be ASCII and free of anything Caddy or a browser would read specially.
/// With `keep_path` the request's `{uri}` is appended, so the target may not end in `/` and
/// cannot carry its own query or fragment.
pub(super) fn redirect_target(value: &str, keep_path: bool) -> Result<String, FieldError> {
    let text = value.trim();
    if text.is_empty() {
        return refuse("Enter the address to redirect to, e.g. https://www.example.com.");
    }
    if text.len() > MAX_URL_BYTES {
        return refuse("That address is too long.");
    }
    for c in text.chars() {
        if c.is_whitespace() {
            return refuse("An address cannot contain spaces; write them as %20.");
        }
        if c.is_control() {
            return refuse("The address contains an invisible control character; retype it.");
        }
        match c {
            '{' | '}' => {
                return refuse(
                    "Braces are not allowed in the address; Caddy would read them as \
                     placeholders.",
                );
            }
            '"' | '\'' | '`' => return refuse("Quotes are not allowed in the address."),
            '\\' => return refuse("Backslashes are not allowed in the address."),
            '<' | '>' | '^' | '|' => {
                return refuse(format!(
                    "The character {c:?} is not allowed in an address; percent-encode it."
                ));
            }
            _ => {}
        }
    }
    let full_url = "Enter a full address starting with https:// or http://.";
    let Some((scheme, rest)) = text.split_once("://") else {
        return refuse(full_url);
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return refuse(full_url);
    }
    let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    if authority.contains('@') {
        return refuse("The address cannot contain a user name or password (user@…).");
    }
    if authority.contains(['[', ']']) {
        return refuse("IPv6 addresses are not supported in redirects yet; use a domain name.");
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(parse_port(port)?)),
        None => (authority, None),
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return refuse("The address needs a host name, e.g. https://www.example.com.");
    }
    if host.contains(['*', ':']) {
        return refuse("That host name is not valid in a redirect.");
    }
    let (host, _) = normalize_host(host, false)?;

    if !tail.is_ascii() {
        return refuse("Percent-encode non-ASCII characters in the path, e.g. %C3%BC for ü.");
    }
    check_percent_escapes(tail)?;
    let tail = if keep_path {
        if tail.contains(['?', '#']) {
            return refuse(
                "To keep the visitor's path, the address cannot have its own query (?…) or \
                 fragment (#…); remove them or untick Keep the path.",
            );
        }
        tail.trim_end_matches('/')
    } else {
        tail
    };
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    Ok(format!("{scheme}://{host}{port}{tail}"))
}

pub(super) fn check_percent_escapes(text: &str) -> Result<(), FieldError> {
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return refuse("Each % must start an escape such as %20.");
        }
    }
    Ok(())
}

/// A health check path such as `/health` or `/status?full=1`, limited to characters that need
/// no quoting in a URL or a Caddyfile.
pub(super) fn health_uri(text: &str) -> Result<String, FieldError> {
    if text.len() > 256 {
        return refuse("That path is too long.");
    }
    if !text.starts_with('/') {
        return refuse("Enter a path that starts with /, e.g. /health.");
    }
    if text.starts_with("//") {
        return refuse("The path cannot start with //.");
    }
    if let Some(c) = text
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "-._~/?=&%+,;:@!*()".contains(c)))
    {
        return refuse(if c.is_whitespace() {
            "The path cannot contain spaces; write them as %20.".to_string()
        } else {
            format!("The character {c:?} is not allowed in the health check path.")
        });
    }
    check_percent_escapes(text)?;
    Ok(text.to_string())
}

/// Bounds for the health check interval: more often than every second hammers the
/// upstreams, less often than hourly is not a health check.
pub(super) const MIN_INTERVAL_MS: u64 = 1_000;
pub(super) const MAX_INTERVAL_MS: u64 = 3_600_000;

pub(super) fn health_interval(value: &str) -> Result<String, FieldError> {
    let text = value.trim().to_ascii_lowercase();
    let text = if text.is_empty() {
        "10s".to_string()
    } else {
        text
    };
    match duration_ms(&text) {
        None => refuse("Enter a duration such as 10s, 1m or 1m30s."),
        Some(ms) if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&ms) => {
            refuse("Choose an interval from 1s to 1h.")
        }
        Some(_) => Ok(text),
    }
}

/// A Go-style duration made of whole numbers with `ms`, `s`, `m` or `h` (`1m30s`), in
/// milliseconds. A subset of what Caddy reads, so whatever passes here Caddy accepts.
pub(super) fn duration_ms(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 32 {
        return None;
    }
    let mut rest = text;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 || digits > 9 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('s') {
            (1_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else {
            return None;
        };
        total = total.checked_add(number.checked_mul(unit)?)?;
        rest = &rest[len..];
    }
    Some(total)
}
