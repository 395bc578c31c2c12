//! Static files, embedded in the binary so the one executable is the whole portal, and the
//! URLs pages link them by: each carries a content hash (`?v=`), so a new build is fetched
//! at once and an unchanged file is never fetched twice.

use std::sync::OnceLock;

pub struct Asset {
    pub path: &'static str,
    pub bytes: &'static [u8],
    pub content_type: &'static str,
}

macro_rules! asset {
    ($path:literal, $ty:literal) => {
        Asset {
            path: $path,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/static/", $path)),
            content_type: $ty,
        }
    };
}

pub const HTMX: &str = "vendor/htmx-2.0.11.min.js";
pub const HTMX_SSE: &str = "vendor/htmx-ext-sse-2.2.4.min.js";

pub static ASSETS: &[Asset] = &[
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!(
        "vendor/htmx-2.0.11.min.js",
        "text/javascript; charset=utf-8"
    ),
    asset!(
        "vendor/htmx-ext-sse-2.2.4.min.js",
        "text/javascript; charset=utf-8"
    ),
];

/// FNV-1a, 64 bit: a stable content fingerprint for cache busting (not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn versions() -> &'static [String] {
    static VERSIONS: OnceLock<Vec<String>> = OnceLock::new();
    VERSIONS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("{:016x}", fnv1a(a.bytes)))
            .collect()
    })
}

pub(crate) fn find(path: &str) -> Option<(&'static Asset, &'static str)> {
    ASSETS
        .iter()
        .zip(versions())
        .find(|(a, _)| a.path == path)
        .map(|(a, v)| (a, v.as_str()))
}

/// The URL to use in pages: `/static/app.css?v=<hash>`.
///
/// # Panics
/// On a path that is not embedded: a programming error caught by any test rendering the page.
pub fn url(path: &str) -> String {
    let (_, version) = find(path).unwrap_or_else(|| panic!("unknown static asset {path}"));
    format!("/static/{path}?v={version}")
}
