//! The account's operators (owners only): who may sign in and with which role; adding one
//! shows their password link once, as the API answers it.

use anyreply_core::ErrorCode;
use anyreply_core::wire::{Operator as OperatorData, OperatorInput, OperatorRole, OperatorUpdate};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;

use super::form::Pairs;
use super::session::{Operator, Submitted};
use super::{ConsoleError, FormErrors, Layout, form_errors};
use crate::app::App;
use crate::controllers::operators as api;
use crate::error::ApiError;
use crate::models::operator;

#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "console/operators.html")]
pub(super) struct OperatorsPage {
    layout: Layout,
    operators: Vec<OperatorData>,
    /// The operator signed in now (they cannot remove themselves here).
    me: Option<i64>,
    /// A password link just made, shown once: whose, and the link.
    link: Option<(String, String)>,
    errors: FormErrors,
    email: String,
    name: String,
}

impl OperatorsPage {
    fn roles(&self) -> [&'static str; 3] {
        OperatorRole::ALL.map(OperatorRole::as_str)
    }

    fn is_me(&self, id: &i64) -> bool {
        self.me == Some(*id)
    }
}

async fn page(
    app: &App,
    signed_in: &Operator,
    link: Option<(String, String)>,
    errors: FormErrors,
    (email, name): (String, String),
) -> Result<OperatorsPage, ConsoleError> {
    let mut conn = app.db().await?;
    let rows = operator::list(&mut conn, signed_in.account_id).await?;
    Ok(OperatorsPage {
        layout: Layout::signed_in(signed_in, "operators"),
        operators: rows.into_iter().map(|row| row.into_wire()).collect(),
        me: signed_in.operator_id,
        link,
        errors,
        email,
        name,
    })
}

/// `GET /console/operators`.
pub(super) async fn list(
    State(app): State<App>,
    signed_in: Operator,
) -> Result<Response, ConsoleError> {
    let blank = (String::new(), String::new());
    Ok(page(&app, &signed_in, None, FormErrors::default(), blank)
        .await?
        .into_response())
}

/// `POST /console/operators`: adds one and shows their password link.
pub(super) async fn create(
    State(app): State<App>,
    submitted: Submitted<Pairs>,
) -> Result<Response, ConsoleError> {
    let Submitted {
        operator: signed_in,
        form,
    } = submitted;
    let (email, name) = (form.get("email").to_owned(), form.get("name").to_owned());
    let body = json!({ "email": email, "name": name, "role": form.get("role") });
    let added = match OperatorInput::from_json(&body) {
        Ok(input) => {
            let mut conn = app.db().await?;
            let actor = signed_in.actor();
            api::add(
                &mut conn,
                &app.settings,
                signed_in.account_id,
                &input,
                &actor,
            )
            .await
        }
        Err(errors) => Err(ApiError::validation(errors)),
    };
    match added {
        Ok(added) => {
            let link = (added.data.email, added.password_link.unwrap_or_default());
            let blank = (String::new(), String::new());
            Ok(
                page(&app, &signed_in, Some(link), FormErrors::default(), blank)
                    .await?
                    .into_response(),
            )
        }
        Err(refusal) => {
            let errors = if refusal.code == ErrorCode::OperatorEmailTaken {
                let mut errors = FormErrors::default();
                errors
                    .fields
                    .insert("email".to_owned(), vec![refusal.body().message]);
                errors
            } else {
                form_errors(refusal, ErrorCode::OperatorNotFound)?
            };
            let page = page(&app, &signed_in, None, errors, (email, name)).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

/// `POST /console/operators/{id}`: a new role.
pub(super) async fn update(
    State(app): State<App>,
    Path(id): Path<i64>,
    submitted: Submitted<Pairs>,
) -> Result<Response, ConsoleError> {
    let change = OperatorUpdate::from_json(&json!({ "role": submitted.form.get("role") }))
        .map_err(ApiError::validation)?;
    let mut conn = app.db().await?;
    let signed_in = &submitted.operator;
    api::change_operator(
        &mut conn,
        signed_in.account_id,
        id,
        &change,
        &signed_in.actor(),
    )
    .await?;
    Ok(Redirect::to("/console/operators").into_response())
}

/// `POST /console/operators/{id}/link`: a new password link (the old one stops working).
pub(super) async fn new_link(
    State(app): State<App>,
    Path(id): Path<i64>,
    submitted: Submitted<Pairs>,
) -> Result<Response, ConsoleError> {
    let signed_in = submitted.operator;
    let mut conn = app.db().await?;
    let found = operator::find(&mut conn, signed_in.account_id, id)
        .await?
        .ok_or(ApiError::new(ErrorCode::OperatorNotFound))?;
    let (url, _) = api::new_link(&mut conn, &app.settings, &found, &signed_in.actor()).await?;
    let link = (found.email, url);
    let blank = (String::new(), String::new());
    Ok(
        page(&app, &signed_in, Some(link), FormErrors::default(), blank)
            .await?
            .into_response(),
    )
}

/// `POST /console/operators/{id}/delete`: removes them; their sessions end with them.
pub(super) async fn delete(
    State(app): State<App>,
    Path(id): Path<i64>,
    submitted: Submitted<Pairs>,
) -> Result<Response, ConsoleError> {
    let mut conn = app.db().await?;
    let signed_in = &submitted.operator;
    api::remove(&mut conn, signed_in.account_id, id, &signed_in.actor()).await?;
    Ok(Redirect::to("/console/operators").into_response())
}
