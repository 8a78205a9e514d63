//! `GET /api/user/me`.

use anyreply_core::ErrorCode;
use anyreply_core::wire::Me;
use axum::Json;
use axum::extract::State;

use crate::app::App;
use crate::error::ApiResult;
use crate::extract::Caller;
use crate::models::account;

pub async fn get_me(State(app): State<App>, caller: Caller) -> ApiResult<Json<Me>> {
    let mut conn = app.db().await?;
    let account = account::find(&mut conn, caller.account_id)
        .await?
        .ok_or(ErrorCode::Unauthorized)?;
    Ok(Json(account.into_me()))
}
