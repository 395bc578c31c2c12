//! Static files, embedded in the binary so the one executable is the whole portal.
//! URLs carry a content hash (`?v=`); such requests are cached for a year as immutable,
//! and plain ones revalidate with an ETag.

use axum::extract::{Path, Query};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::OnceLock;

use crate::error::AppError;

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

fn find(path: &str) -> Option<(&'static Asset, &'static str)> {
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

#[derive(Deserialize)]
pub struct VersionQuery {
    v: Option<String>,
}

pub async fn serve(
    Path(path): Path<String>,
    Query(query): Query<VersionQuery>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let (asset, version) = find(&path).ok_or(AppError::NotFound)?;
    let etag = format!("\"{version}\"");
    let cache = if query.v.as_deref() == Some(version) {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=0, must-revalidate"
    };
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.bytes).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex is a valid header"),
    );
    Ok(response)
}
