//! `GET /health` (the process is up) and `GET /ready` (the database answers).

use anyreply_core::{ErrorBody, ErrorCode};
use axum::Json;
use axum::extract::State;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::App;
use crate::error::{ApiError, ApiResult};

/// How the process stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` from `/health`, `ready` from `/ready`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// The process is up.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses((status = 200, description = "Up", body = Health, example = json!({ "status": "ok" })))
)]
pub async fn get_health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The process is up and its database answers.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Health, example = json!({ "status": "ready" })),
        (status = 503, description = "`SERVICE_UNAVAILABLE`: the database does not answer", body = ErrorBody),
    )
)]
pub async fn get_ready(State(app): State<App>) -> ApiResult<Json<Health>> {
    let unavailable = |e: &dyn std::fmt::Display| {
        crate::pg_cluster::database_seems_gone();
        ApiError::internal(ErrorCode::ServiceUnavailable, "not ready", e)
    };
    let mut conn = app.db().await.map_err(|e| unavailable(&e))?;
    diesel::sql_query("SELECT 1")
        .execute(&mut conn)
        .await
        .map_err(|e| unavailable(&e))?;
    Ok(Json(Health { status: "ready" }))
}
