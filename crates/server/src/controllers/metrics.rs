//! `GET /metrics`: the Prometheus exposition, behind `ANYREPLY_METRICS_TOKEN` when it is set.

use anyreply_core::{ErrorBody, ErrorCode};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::IntoResponse;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::telemetry::metrics;

/// The content type Prometheus scrapers ask for.
const EXPOSITION: HeaderValue =
    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");

/// The Prometheus metrics of this process (see docs/operating.md, "Operating it").
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus' text exposition format", body = String, content_type = "text/plain"),
        (status = 401, description = "`UNAUTHORIZED`: `ANYREPLY_METRICS_TOKEN` is set and was not sent as a Bearer token", body = ErrorBody),
    )
)]
pub async fn get_metrics(
    State(app): State<App>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    if let Some(token) = &app.settings.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(token.expose_secret().as_bytes())) {
            return Err(ApiError::new(ErrorCode::Unauthorized)
                .with_message("/metrics wants the ANYREPLY_METRICS_TOKEN as a Bearer token"));
        }
    }
    let gauges = metrics::Gauges {
        pool: app.pool.status(),
        replies_in_flight: app.engine.in_flight.count(),
        replies_waiting_for_turn: app.engine.wakeups.waiting(),
    };
    let text = metrics::render(&app.metrics, gauges);
    Ok(([(header::CONTENT_TYPE, EXPOSITION)], text))
}
