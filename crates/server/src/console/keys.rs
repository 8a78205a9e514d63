//! The account's API keys (owners only): listed by their prefix, created (the key shown once)
//! and revoked. A chat widget's key is listed with its widget and is revoked by deleting it.

use anyreply_core::ErrorCode;
use anyreply_core::wire::AuditAction;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use diesel_async::AsyncConnection;
use serde_json::json;

use super::form::Pairs;
use super::session::{Operator, Submitted};
use super::{ConsoleError, Layout};
use crate::app::App;
use crate::error::ApiError;
use crate::models::api_key::{self, KeyListing};
use crate::models::audit_log::{self, Target};

#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "console/keys.html")]
pub(super) struct KeysPage {
    layout: Layout,
    keys: Vec<KeyListing>,
    /// A key just made, shown this once.
    new_key: Option<String>,
}

async fn page(
    app: &App,
    owner: &Operator,
    new_key: Option<String>,
) -> Result<KeysPage, ConsoleError> {
    let mut conn = app.db().await?;
    Ok(KeysPage {
        layout: Layout::signed_in(owner, "keys"),
        keys: api_key::list_of_account(&mut conn, owner.account_id).await?,
        new_key,
    })
}

/// `GET /console/keys`.
pub(super) async fn list(
    State(app): State<App>,
    owner: Operator,
) -> Result<Response, ConsoleError> {
    Ok(page(&app, &owner, None).await?.into_response())
}

/// `POST /console/keys`: a new key, shown once.
pub(super) async fn create(
    State(app): State<App>,
    Submitted { operator, .. }: Submitted<Pairs>,
) -> Result<Response, ConsoleError> {
    let (account_id, actor) = (operator.account_id, operator.actor());
    let mut conn = app.db().await?;
    let key = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            let key = api_key::create(conn, account_id).await?;
            let (action, target) = (AuditAction::ApiKeyCreated, Target::ApiKey(key.id));
            let details = json!({ "prefix": key.prefix });
            audit_log::record(conn, account_id, &actor, action, target, details).await?;
            Ok(key)
        })
        .await?;
    Ok(page(&app, &operator, Some(key.key)).await?.into_response())
}

/// `POST /console/keys/{id}/revoke`: from now on the key gets `401`, and its console sessions
/// end.
pub(super) async fn revoke(
    State(app): State<App>,
    Path(id): Path<i64>,
    Submitted { operator, .. }: Submitted<Pairs>,
) -> Result<Response, ConsoleError> {
    let (account_id, actor) = (operator.account_id, operator.actor());
    let mut conn = app.db().await?;
    let revoked = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            let Some(prefix) = api_key::revoke_of_account(conn, account_id, id).await? else {
                return Ok(false);
            };
            let (action, target) = (AuditAction::ApiKeyRevoked, Target::ApiKey(id));
            let details = json!({ "prefix": prefix });
            audit_log::record(conn, account_id, &actor, action, target, details).await?;
            Ok(true)
        })
        .await?;
    if !revoked {
        return Err(ApiError::new(ErrorCode::NotFound)
            .with_message("No live key of this account (other than a widget's) has this id.")
            .into());
    }
    app.known_keys.forget(id);
    Ok(Redirect::to("/console/keys").into_response())
}
