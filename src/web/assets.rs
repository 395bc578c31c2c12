//! Serves the static files of [`crate::assets`]. A URL with the file's content hash (`?v=`)
//! is cached for a year as immutable; a plain one revalidates with an ETag.

use axum::extract::{Path, Query};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::assets::find;
use crate::error::AppError;

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
