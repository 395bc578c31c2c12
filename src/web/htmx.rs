//! What an htmx request asks for, read from its headers: a fragment for a plain htmx
//! request, the whole page for everything else (boosted navigation and history restoration
//! need it). A header counts only when it says `true`.

use axum::http::HeaderMap;

/// Is this request for a fragment or a page?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Page,
    Fragment,
}

impl Mode {
    pub fn of(headers: &HeaderMap) -> Self {
        let on = |name: &str| headers.get(name).is_some_and(|v| v.as_bytes() == b"true");
        if on("hx-request") && !on("hx-boosted") && !on("hx-history-restore-request") {
            Mode::Fragment
        } else {
            Mode::Page
        }
    }
}

/// Whether htmx sent the request (boosted or not): it cannot see a 303, only `HX-Redirect`.
pub fn is_htmx(headers: &HeaderMap) -> bool {
    headers
        .get("hx-request")
        .is_some_and(|v| v.as_bytes() == b"true")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn only_plain_htmx_requests_get_fragments() {
        assert_eq!(Mode::of(&headers(&[])), Mode::Page);
        assert_eq!(
            Mode::of(&headers(&[("hx-request", "true")])),
            Mode::Fragment
        );
        assert_eq!(
            Mode::of(&headers(&[("hx-request", "true"), ("hx-boosted", "true")])),
            Mode::Page
        );
        assert_eq!(
            Mode::of(&headers(&[
                ("hx-request", "true"),
                ("hx-history-restore-request", "true")
            ])),
            Mode::Page
        );
    }
}
