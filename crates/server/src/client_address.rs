//! Who sent a request: the peer, or behind a trusted proxy (`ANYREPLY_TRUSTED_PROXIES`) the
//! address it says it forwarded for. The console's sign-in failures and the chat widget's
//! per-address limit count by it.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap};

use crate::config::Settings;

/// The peer's address, if the server was asked to keep it.
fn peer(extensions: &Extensions) -> Option<SocketAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| *address)
}

/// Whether the peer is one of the trusted proxies, whose `X-Forwarded-*` headers we believe.
pub fn from_trusted_proxy(settings: &Settings, extensions: &Extensions) -> bool {
    peer(extensions).is_some_and(|address| settings.trusted_proxies.contains(address.ip()))
}

/// The peer, or behind a trusted proxy the address it says it forwarded for (the last in
/// `X-Forwarded-For`: the one it saw itself).
pub fn of(settings: &Settings, headers: &HeaderMap, extensions: &Extensions) -> String {
    let forwarded = from_trusted_proxy(settings, extensions)
        .then(|| headers.get("x-forwarded-for"))
        .flatten()
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .map(|last| last.trim().to_owned())
        .filter(|last| !last.is_empty());
    forwarded
        .or_else(|| peer(extensions).map(|address| address.ip().to_canonical().to_string()))
        .unwrap_or_else(|| "unknown".to_owned())
}
