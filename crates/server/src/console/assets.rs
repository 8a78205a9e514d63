//! The console's scripts, styles and icon, built into the binary and served under paths that name
//! their content's hash (so they can be cached for good), each with its Subresource Integrity.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256, Sha384};

use crate::error::ApiError;
use anyreply_core::ErrorCode;

/// One file the console's pages load.
#[derive(Debug)]
pub(super) struct Asset {
    /// Where pages find it: `/console/assets/<name>-<hash>.<ext>`.
    pub(super) path: String,
    /// Its `integrity` attribute: `sha384-…`.
    pub(super) integrity: String,
    file_name: String,
    content_type: &'static str,
    body: &'static [u8],
}

impl Asset {
    fn new(stem: &str, extension: &str, content_type: &'static str, body: &'static [u8]) -> Self {
        let digest = Sha256::digest(body);
        let short: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        let file_name = format!("{stem}-{short}.{extension}");
        Self {
            path: format!("/console/assets/{file_name}"),
            integrity: format!(
                "sha384-{}",
                base64::engine::general_purpose::STANDARD.encode(Sha384::digest(body))
            ),
            file_name,
            content_type,
            body,
        }
    }
}

/// The assets of every page.
#[derive(Debug)]
pub(super) struct Assets {
    /// htmx 2.0.11, vendored with its licence in `assets/vendor/`.
    pub(super) htmx: Asset,
    pub(super) script: Asset,
    pub(super) style: Asset,
    pub(super) icon: Asset,
}

pub(super) static ASSETS: LazyLock<Assets> = LazyLock::new(|| Assets {
    htmx: Asset::new(
        "htmx-2.0.11",
        "min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/vendor/htmx-2.0.11/htmx.min.js"),
    ),
    script: Asset::new(
        "console",
        "js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/console/console.js"),
    ),
    style: Asset::new(
        "console",
        "css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/console/console.css"),
    ),
    icon: Asset::new(
        "favicon",
        "svg",
        "image/svg+xml",
        include_bytes!("../../assets/console/favicon.svg"),
    ),
});

/// `GET /console/assets/{file}`.
pub(super) async fn serve(Path(file): Path<String>) -> Response {
    let assets = &*ASSETS;
    let Some(asset) = [&assets.htmx, &assets.script, &assets.style, &assets.icon]
        .into_iter()
        .find(|asset| asset.file_name == file)
    else {
        return ApiError::new(ErrorCode::NotFound).into_response();
    };
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        asset.body,
    )
        .into_response()
}
