//! `GET /api/user/me`.

use anyreply_core::ErrorCode;
use anyreply_core::wire::Me;
use axum::Json;
use axum::extract::State;

use crate::app::App;
use crate::error::ApiResult;
use crate::extract::Caller;
use crate::models::account;

/// The calling account: a cheap way to check a key and read the balance.
#[utoipa::path(
    get,
    path = "/api/user/me",
    tag = "account",
    security(("api_key" = [])),
    responses((status = 200, description = "The account", body = Me))
)]
pub async fn get_me(State(app): State<App>, caller: Caller) -> ApiResult<Json<Me>> {
    let mut conn = app.db().await?;
    let account = account::find(&mut conn, caller.account_id)
        .await?
        .ok_or(ErrorCode::Unauthorized)?;
    Ok(Json(account.into_me()))
}
