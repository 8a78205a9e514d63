//! The operator console at `/console`: server-rendered pages (askama) where the people of one
//! account, signed in with one of its API keys, run their assistants and tools and answer
//! their customers. htmx (vendored, see `assets.rs`) makes links and forms swap the page in
//! place, and the conversation page live; without it every action is a plain form post
//! answered with a redirect.
//!
//! The pages read and write through the same functions as the API's handlers (and the same
//! models), and get typed values back: they validate, mask and refuse exactly as the API
//! does, with the same messages, and show amounts exactly as `Money` prints them. No page
//! reads a handler's JSON.

mod assets;
mod assistants;
mod audit;
mod conversations;
mod dashboard;
mod form;
mod inbox;
mod keys;
mod knowledge;
mod operators;
mod session;
mod support;
mod tools;

use anyreply_core::limits::MAX_DOCUMENT_BYTES;
use anyreply_core::wire::OperatorRole;
use anyreply_core::{ErrorBody, ErrorCode};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use std::collections::BTreeMap;

use crate::app::App;
use crate::error::ApiError;

use assets::ASSETS;

/// The console's pages, grouped by the least role each group needs (see
/// [`session::require_role`]); the sign-in pages and the assets need none.
pub fn routes(app: App) -> Router<App> {
    let needs = |role: OperatorRole| {
        axum::middleware::from_fn_with_state((app.clone(), role), session::require_role)
    };
    Router::new()
        .merge(agent_pages().route_layer(needs(OperatorRole::Agent)))
        .merge(admin_pages().route_layer(needs(OperatorRole::Admin)))
        .merge(owner_pages().route_layer(needs(OperatorRole::Owner)))
        .route(
            "/console/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        )
        .route(
            "/console/set-password",
            get(session::set_password_page).post(session::set_password),
        )
        .route("/console/sign-out", post(session::sign_out))
        .route("/console/assets/{file}", get(assets::serve))
        .layer(axum::middleware::map_response(security_headers))
}

/// What every operator may open: the dashboard (an agent's is the inbox) and the
/// conversations.
fn agent_pages() -> Router<App> {
    Router::new()
        .route("/console", get(dashboard::show))
        .route("/console/conversations", get(conversations::list))
        .route("/console/conversations/{id}", get(conversations::show))
        .route(
            "/console/conversations/{id}/panel",
            get(conversations::panel),
        )
        .route(
            "/console/conversations/{id}/events",
            get(conversations::events),
        )
        .route(
            "/console/conversations/{id}/take-over",
            post(conversations::take_over),
        )
        .route(
            "/console/conversations/{id}/hand-back",
            post(conversations::hand_back),
        )
        .route(
            "/console/conversations/{id}/messages",
            post(conversations::send),
        )
        .route("/console/conversations/{id}/viewers", get(inbox::viewers))
        .route("/console/conversations/{id}/assign", post(inbox::assign))
        .route("/console/conversations/{id}/notes", post(inbox::add_note))
        .route("/console/inbox/tabs", get(inbox::tabs))
        .route("/console/inbox/badge", get(inbox::badge))
        .route("/console/inbox/events", get(inbox::events))
}

/// What only owners may open: the operators and the API keys.
fn owner_pages() -> Router<App> {
    Router::new()
        .route("/console/keys", get(keys::list).post(keys::create))
        .route("/console/keys/{id}/revoke", post(keys::revoke))
        .route(
            "/console/operators",
            get(operators::list).post(operators::create),
        )
        .route("/console/operators/{id}", post(operators::update))
        .route("/console/operators/{id}/link", post(operators::new_link))
        .route("/console/operators/{id}/delete", post(operators::delete))
}

/// What admins and owners may open: assistants, tools, knowledge and the audit log.
fn admin_pages() -> Router<App> {
    Router::new()
        .route("/console/audit", get(audit::list))
        .route(
            "/console/assistants",
            get(assistants::list).post(assistants::create),
        )
        .route("/console/assistants/new", get(assistants::new_form))
        .route(
            "/console/assistants/{id}",
            get(assistants::edit_form).post(assistants::update),
        )
        .route("/console/tools", get(tools::list).post(tools::create))
        .route("/console/tools/new", get(tools::new_form))
        .route(
            "/console/tools/{id}",
            get(tools::edit_form).post(tools::update),
        )
        .route(
            "/console/knowledge",
            get(knowledge::list).post(knowledge::create),
        )
        .route("/console/knowledge/{id}", get(knowledge::show))
        .route("/console/knowledge/{id}/delete", post(knowledge::delete))
        .route(
            "/console/knowledge/{id}/documents",
            post(knowledge::upload).layer(
                // A file of 20 MB, and the form around it, as the API takes it.
                DefaultBodyLimit::max(MAX_DOCUMENT_BYTES + 64 * 1024),
            ),
        )
        .route(
            "/console/knowledge/{id}/websites",
            post(knowledge::add_website),
        )
        .route(
            "/console/knowledge/{id}/documents/{document_id}/delete",
            post(knowledge::delete_document),
        )
}

/// Only the console's own scripts, styles and connections; no framing, no inline code.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// What every page's frame shows: the navigation, the account, the assets, the CSRF token.
#[derive(Debug, Clone)]
struct Layout {
    signed_in: bool,
    /// The signed-in person's name and role, for the header and the navigation they may use.
    who: String,
    role: Option<OperatorRole>,
    csrf: String,
    htmx_path: &'static str,
    htmx_integrity: &'static str,
    script_path: &'static str,
    script_integrity: &'static str,
    style_path: &'static str,
    style_integrity: &'static str,
    icon_path: &'static str,
    /// Which navigation entry is the current page's.
    section: &'static str,
}

impl Layout {
    fn new(signed_in: bool, csrf: String, section: &'static str) -> Self {
        let assets = &*ASSETS;
        Self {
            signed_in,
            who: String::new(),
            role: None,
            csrf,
            htmx_path: &assets.htmx.path,
            htmx_integrity: &assets.htmx.integrity,
            script_path: &assets.script.path,
            script_integrity: &assets.script.integrity,
            style_path: &assets.style.path,
            style_integrity: &assets.style.integrity,
            icon_path: &assets.icon.path,
            section,
        }
    }

    fn signed_out(csrf: String) -> Self {
        Self::new(false, csrf, "")
    }

    fn signed_in(operator: &session::Operator, section: &'static str) -> Self {
        Self {
            who: operator.name.clone(),
            role: Some(operator.role),
            ..Self::new(true, operator.csrf.clone(), section)
        }
    }

    /// Whether the signed-in person may open the admins' pages.
    fn admin(&self) -> bool {
        self.role >= Some(OperatorRole::Admin)
    }

    /// Whether the signed-in person may open the owners' pages.
    fn owner(&self) -> bool {
        self.role == Some(OperatorRole::Owner)
    }

    fn role_name(&self) -> &'static str {
        self.role.map_or("", OperatorRole::as_str)
    }
}

/// Why a page could not be shown.
#[derive(Debug)]
enum ConsoleError {
    /// No live session: to the sign-in page.
    SignedOut,
    /// A form without its CSRF token.
    Forbidden,
    /// A form that is not one.
    BadForm,
    /// The page or action needs a role the signed-in person does not have.
    NotAllowed {
        needed: OperatorRole,
        has: OperatorRole,
    },
    /// What the API would have answered.
    Api(ApiError),
}

impl From<ApiError> for ConsoleError {
    fn from(error: ApiError) -> Self {
        ConsoleError::Api(error)
    }
}

impl From<diesel::result::Error> for ConsoleError {
    fn from(error: diesel::result::Error) -> Self {
        ConsoleError::Api(error.into())
    }
}

impl From<crate::db::PoolError> for ConsoleError {
    fn from(error: crate::db::PoolError) -> Self {
        ConsoleError::Api(error.into())
    }
}

#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "console/error.html")]
struct ErrorPage {
    layout: Layout,
    title: String,
    message: String,
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            ConsoleError::SignedOut => {
                // htmx follows `HX-Redirect`; a plain browser, the 303.
                let mut response = Redirect::to("/console/sign-in").into_response();
                response
                    .headers_mut()
                    .insert("hx-redirect", HeaderValue::from_static("/console/sign-in"));
                return response;
            }
            ConsoleError::Forbidden => (
                StatusCode::FORBIDDEN,
                "Forbidden".to_owned(),
                "The form was not sent by a page of this console (its security token is missing or old). Go back, reload the page and try again.".to_owned(),
            ),
            ConsoleError::NotAllowed { needed, has } => (
                StatusCode::FORBIDDEN,
                "Not allowed".to_owned(),
                format!(
                    "This needs the role {}{}; you are signed in as {}. Ask your account's owner if you need it.",
                    needed.as_str(),
                    if needed == OperatorRole::Owner { "" } else { " or higher" },
                    has.with_article(),
                ),
            ),
            ConsoleError::BadForm => (
                StatusCode::BAD_REQUEST,
                "Bad form".to_owned(),
                "The form could not be read.".to_owned(),
            ),
            ConsoleError::Api(error) => {
                let body = error.body();
                (error.status(), title_of(error.code), body.message)
            }
        };
        let page = ErrorPage {
            layout: Layout::signed_out(String::new()),
            title,
            message,
        };
        let mut response = (status, page).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // As the API says it: the database is away for a moment.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(1));
        }
        response
    }
}

fn title_of(code: ErrorCode) -> String {
    match code.http_status() {
        404 => "Not found".to_owned(),
        503 => "Unavailable".to_owned(),
        _ => "Something went wrong".to_owned(),
    }
}

/// What a form is shown again with after the API's checks refused it. A refusal saying that
/// the thing is `missing` (not the account's, or gone) is the not-found page instead, and a
/// fault of the server its error page.
fn form_errors(refusal: ApiError, missing: ErrorCode) -> Result<FormErrors, ConsoleError> {
    if refusal.code == missing || refusal.status().is_server_error() {
        return Err(refusal.into());
    }
    Ok(FormErrors::from_body(refusal.body()))
}

/// The field errors of a refusal, by field (`"headers[0].value"` under `"headers"` too), and
/// its message when no field is named.
#[derive(Debug, Default)]
struct FormErrors {
    fields: BTreeMap<String, Vec<String>>,
    general: Option<String>,
}

impl FormErrors {
    fn from_body(body: ErrorBody) -> Self {
        let mut fields: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (field, messages) in body.errors {
            let top = field.split(['.', '[']).next().unwrap_or(&field).to_owned();
            let shown = if top == field {
                messages
            } else {
                messages
                    .into_iter()
                    .map(|message| format!("{field}: {message}"))
                    .collect()
            };
            fields.entry(top).or_default().extend(shown);
        }
        let general = fields.is_empty().then_some(body.message);
        Self { fields, general }
    }

    /// The messages for `field`, empty when it passed.
    fn of(&self, field: &str) -> &[String] {
        self.fields.get(field).map_or(&[], Vec::as_slice)
    }
}
