//! `GET /health` (the process is up) and `GET /ready` (the database answers).

use anyreply_core::ErrorCode;
use axum::Json;
use axum::extract::State;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};

use crate::app::App;
use crate::error::{ApiError, ApiResult};

pub async fn get_health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn get_ready(State(app): State<App>) -> ApiResult<Json<Value>> {
    let unavailable = |e: &dyn std::fmt::Display| {
        ApiError::internal(ErrorCode::ServiceUnavailable, "not ready", e)
    };
    let mut conn = app.db().await.map_err(|e| unavailable(&e))?;
    diesel::sql_query("SELECT 1")
        .execute(&mut conn)
        .await
        .map_err(|e| unavailable(&e))?;
    Ok(Json(json!({ "status": "ready" })))
}
