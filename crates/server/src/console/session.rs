//! Signing in and out, setting a password, the session behind every page, the role each page
//! needs, and the CSRF token of every form.
//!
//! Signing in exchanges an operator's email and password (or, for the account's owner, an
//! API key) for a random session token in an `HttpOnly`,
//! `SameSite=Strict` cookie (`Secure` over HTTPS); only its SHA-256 is stored. Each session has
//! its own CSRF token, which every form sends back; the sign-in form, before any session,
//! sends back the token of a cookie of its own (double submit).

use anyreply_core::ErrorCode;
use anyreply_core::wire::operators::normalize_email;
use anyreply_core::wire::{AuditAction, Author, OperatorRole};
use axum::body::Body;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Multipart, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use rand::RngCore;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::{ConsoleError, Layout};
use crate::app::App;
use crate::client_address;
use crate::controllers::operators::API_KEY_AUTHOR;
use crate::error::ApiError;
use crate::models::api_key::{self, parse_key_prefix, secret_matches};
use crate::models::audit_log::{self, Actor, Target};
use crate::models::console_session::{self, Holder};
use crate::models::operator;
use crate::password;

/// The session cookie.
const SESSION_COOKIE: &str = "anyreply_console";
/// The sign-in form's own CSRF cookie.
const SIGN_IN_COOKIE: &str = "anyreply_console_sign_in";
/// Failed sign-ins a client may make in a window of `FAILURE_WINDOW_SECS`.
pub(super) const MAX_FAILED_SIGN_INS: i32 = 10;

/// A signed-in person of an account: every page but the sign-in page needs one. An
/// operator, or the account's owner signed in with an API key.
#[derive(Debug, Clone)]
pub(super) struct Operator {
    pub(super) account_id: i64,
    /// What they may do, as it is now (a changed role applies from the next request).
    pub(super) role: OperatorRole,
    /// The operator's id; `None` for the owner's API key session.
    pub(super) operator_id: Option<i64>,
    /// The owner's API key, for a session opened with one.
    api_key_id: Option<i64>,
    /// Their name, shown with what they write ("API key" for the owner's key session).
    pub(super) name: String,
    /// The session's CSRF token, for the forms of the page.
    pub(super) csrf: String,
    token_hash: Vec<u8>,
}

impl Operator {
    /// The session's token's hash: what names it in `console_sessions`.
    pub(super) fn session_hash(&self) -> &[u8] {
        &self.token_hash
    }

    /// Who the audit log names for what they do.
    pub(super) fn actor(&self) -> Actor {
        match (self.operator_id, self.api_key_id) {
            (Some(id), _) => Actor::Operator {
                id,
                name: self.name.clone(),
            },
            (None, Some(id)) => Actor::ConsoleApiKey(id),
            (None, None) => Actor::Anonymous,
        }
    }

    /// Who they are on what they write.
    pub(super) fn author(&self) -> Author {
        Author {
            operator_id: self.operator_id,
            name: self.name.clone(),
        }
    }
}

impl<S> FromRequestParts<S> for Operator
where
    App: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // `require_role` found them already.
        if let Some(operator) = parts.extensions.get::<Operator>() {
            return Ok(operator.clone());
        }
        let app = App::from_ref(state);
        Operator::of(&app, &parts.headers)
            .await?
            .ok_or(ConsoleError::SignedOut)
    }
}

impl Operator {
    /// The operator whose live session the request's cookie names, if any.
    async fn of(app: &App, headers: &HeaderMap) -> Result<Option<Self>, ConsoleError> {
        let Some(token) = cookie(headers, SESSION_COOKIE) else {
            return Ok(None);
        };
        let token_hash = Sha256::digest(token.as_bytes()).to_vec();
        let mut conn = app.db().await?;
        let Some(session) = console_session::find_live(&mut conn, &token_hash).await? else {
            return Ok(None);
        };
        tracing::Span::current().record("account_id", session.account_id);
        let (role, name) = match (session.operator_id, session.role, session.name) {
            (None, _, _) => (OperatorRole::Owner, API_KEY_AUTHOR.to_owned()),
            (Some(_), Some(role), Some(name)) => match OperatorRole::parse(&role) {
                Some(role) => (role, name),
                None => return Ok(None),
            },
            // Removed while the session was read.
            (Some(_), _, _) => return Ok(None),
        };
        Ok(Some(Operator {
            account_id: session.account_id,
            role,
            operator_id: session.operator_id,
            api_key_id: session.api_key_id,
            name,
            csrf: session.csrf_token,
            token_hash,
        }))
    }
}

/// Middleware of a group of pages that needs `role` at least: signed out, to the sign-in
/// page; a lesser role, the 403 page saying why, before the handler does anything.
pub(super) async fn require_role(
    State((app, role)): State<(App, OperatorRole)>,
    mut request: Request,
    next: Next,
) -> Response {
    let operator = match Operator::of(&app, request.headers()).await {
        Ok(Some(operator)) => operator,
        Ok(None) => return ConsoleError::SignedOut.into_response(),
        Err(error) => return error.into_response(),
    };
    if operator.role < role {
        return ConsoleError::NotAllowed {
            needed: role,
            has: operator.role,
        }
        .into_response();
    }
    request.extensions_mut().insert(operator);
    next.run(request).await
}

/// A form posted by a signed-in operator, its CSRF token checked: without the session's
/// token, 403 and nothing done.
#[derive(Debug)]
pub(super) struct Submitted<T> {
    pub(super) operator: Operator,
    pub(super) form: T,
}

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

impl<S, T> FromRequest<S> for Submitted<T>
where
    App: FromRef<S>,
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ConsoleError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let operator = Operator::from_request_parts(&mut parts, state).await?;
        let bytes = axum::body::Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|_| ConsoleError::BadForm)?;
        let field: CsrfField =
            serde_urlencoded::from_bytes(&bytes).map_err(|_| ConsoleError::Forbidden)?;
        if !same_secret(&field.csrf, &operator.csrf) {
            return Err(ConsoleError::Forbidden);
        }
        let form = serde_urlencoded::from_bytes(&bytes).map_err(|_| ConsoleError::BadForm)?;
        Ok(Submitted { operator, form })
    }
}

/// A `multipart/form-data` form (an upload) posted by a signed-in operator, its CSRF token
/// checked as [`Submitted`]'s: the token is the form's `csrf` field, and without the session's
/// token the answer is 403 and nothing is done. The body is read whole (within the route's
/// limit) so that the token is checked before any field is used.
pub(super) struct SubmittedUpload {
    pub(super) operator: Operator,
    pub(super) form: Multipart,
    /// The name each file field's file was sent with, by field.
    pub(super) file_names: Vec<(String, String)>,
}

impl<S> FromRequest<S> for SubmittedUpload
where
    App: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ConsoleError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let operator = Operator::from_request_parts(&mut parts, state).await?;
        let bytes =
            axum::body::Bytes::from_request(Request::from_parts(parts.clone(), body), state)
                .await
                .map_err(|rejection| match rejection {
                    BytesRejection::FailedToBufferBody(_) => {
                        ConsoleError::Api(ApiError::new(ErrorCode::PayloadTooLarge))
                    }
                    _ => ConsoleError::BadForm,
                })?;
        // Each pass reads the same bytes; the parts keep the route's body limit.
        let multipart = |bytes: &axum::body::Bytes| {
            let request = Request::from_parts(parts.clone(), Body::from(bytes.clone()));
            Multipart::from_request(request, state)
        };
        let mut first = multipart(&bytes)
            .await
            .map_err(|_| ConsoleError::Forbidden)?;
        let mut csrf = None;
        let mut file_names = Vec::new();
        // A form that cannot be read has no token that could be trusted.
        while let Some(field) = first
            .next_field()
            .await
            .map_err(|_| ConsoleError::Forbidden)?
        {
            let name = field.name().unwrap_or_default().to_owned();
            if let Some(file_name) = field.file_name() {
                file_names.push((name.clone(), file_name.to_owned()));
            }
            if name == "csrf" && csrf.is_none() {
                csrf = Some(field.text().await.map_err(|_| ConsoleError::Forbidden)?);
            }
        }
        if !same_secret(csrf.as_deref().unwrap_or_default(), &operator.csrf) {
            return Err(ConsoleError::Forbidden);
        }
        let form = multipart(&bytes).await.map_err(|_| ConsoleError::BadForm)?;
        Ok(SubmittedUpload {
            operator,
            form,
            file_names,
        })
    }
}

fn same_secret(given: &str, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    !expected.is_empty() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "console/sign_in.html")]
pub(super) struct SignInPage {
    pub(super) layout: Layout,
    pub(super) error: Option<String>,
    /// What was typed in the email field, to show it again.
    pub(super) email: String,
}

/// `GET /console/sign-in`: the form, or for an operator already signed in, the console.
pub(super) async fn sign_in_page(
    State(app): State<App>,
    headers: HeaderMap,
) -> Result<Response, ConsoleError> {
    if Operator::of(&app, &headers).await?.is_some() {
        return Ok(Redirect::to("/console").into_response());
    }
    Ok(sign_in_answer(
        &headers,
        StatusCode::OK,
        None,
        String::new(),
    ))
}

/// The sign-in page.
fn sign_in_answer(
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<String>,
    email: String,
) -> Response {
    signed_out_answer(headers, status, |layout| SignInPage {
        layout,
        error,
        email,
    })
}

/// A page of someone not signed in (its forms' layout made by `page`), with the CSRF cookie
/// those forms send back: the one the browser has, or a new one.
fn signed_out_answer<P: IntoResponse>(
    headers: &HeaderMap,
    status: StatusCode,
    page: impl FnOnce(Layout) -> P,
) -> Response {
    let token = cookie(headers, SIGN_IN_COOKIE).unwrap_or_else(random_token);
    let mut response = (status, page(Layout::signed_out(token.clone()))).into_response();
    set_cookie(&mut response, SIGN_IN_COOKIE, &token, None);
    response
}

/// Refuses a form of a page of someone not signed in that does not send back its CSRF cookie.
fn check_signed_out_form(headers: &HeaderMap, sent: &str) -> Result<(), ConsoleError> {
    let expected = cookie(headers, SIGN_IN_COOKIE).unwrap_or_default();
    if same_secret(sent, &expected) {
        Ok(())
    } else {
        Err(ConsoleError::Forbidden)
    }
}

#[derive(Deserialize)]
pub(super) struct SignInForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    /// The owner's other way in: an API key of the account.
    #[serde(default)]
    api_key: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /console/sign-in`: an operator's email and password, or a live API key of the
/// account, opens a session.
pub(super) async fn sign_in(
    State(app): State<App>,
    parts: Parts,
    axum::Form(form): axum::Form<SignInForm>,
) -> Result<Response, ConsoleError> {
    let headers = &parts.headers;
    check_signed_out_form(headers, &form.csrf)?;
    // Who is signing in, for the failure count.
    let client = client_address::of(&app.settings, &parts.headers, &parts.extensions);
    let mut conn = app.db().await?;
    if console_session::failures(&mut conn, &client).await? >= MAX_FAILED_SIGN_INS {
        return Ok(sign_in_answer(
            headers,
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many failed sign-ins. Wait a few minutes, then try again.".to_owned()),
            form.email,
        ));
    }
    let by_key = form.email.trim().is_empty() && !form.api_key.trim().is_empty();
    let checked = if by_key {
        key_holder(&mut conn, &form.api_key).await?
    } else {
        operator_holder(&mut conn, &form.email, form.password).await?
    };
    let (account_id, holder, actor) = match checked {
        Checked::Holds(account_id, holder, actor) => (account_id, holder, actor),
        Checked::Refused(tried) => {
            console_session::count_failure(&mut conn, &client).await?;
            if let Some(tried) = tried {
                log_failure(&mut conn, &tried).await?;
            }
            return Ok(refused(headers, by_key, form.email));
        }
    };
    open_session(&app, &parts, &mut conn, account_id, holder, &actor).await
}

/// What a sign-in's credentials are worth.
enum Checked {
    /// They hold: the account, the session's holder, and who it is for the audit log.
    Holds(i64, Holder, Actor),
    /// They do not. `Some`: the operator whose email was tried.
    Refused(Option<operator::OperatorRow>),
}

/// Logs a failed sign-in with `tried`'s email under their account (another email names no
/// account to log under).
async fn log_failure(
    conn: &mut AsyncPgConnection,
    tried: &operator::OperatorRow,
) -> Result<(), ConsoleError> {
    let details = serde_json::json!({ "email": tried.email });
    let (action, target) = (AuditAction::ConsoleSignInFailed, Target::Operator(tried.id));
    audit_log::record(
        conn,
        tried.account_id,
        &Actor::Anonymous,
        action,
        target,
        details,
    )
    .await?;
    Ok(())
}

/// The sign-in page again, saying why not.
fn refused(headers: &HeaderMap, by_key: bool, email: String) -> Response {
    let error = if by_key {
        "That API key is not valid."
    } else {
        "That email and password do not match."
    };
    sign_in_answer(
        headers,
        StatusCode::UNAUTHORIZED,
        Some(error.to_owned()),
        email,
    )
}

/// The account and session holder of a live API key.
async fn key_holder(conn: &mut AsyncPgConnection, key: &str) -> Result<Checked, ConsoleError> {
    let key = key.trim();
    let found = match parse_key_prefix(key) {
        Some(prefix) => api_key::find_by_prefix(conn, prefix).await?,
        None => None,
    };
    Ok(
        match found.filter(|row| row.revoked_at.is_none() && secret_matches(key, &row.secret_hash))
        {
            Some(row) => Checked::Holds(
                row.account_id,
                Holder::ApiKey(row.id),
                Actor::ConsoleApiKey(row.id),
            ),
            None => Checked::Refused(None),
        },
    )
}

/// The account and session holder of the operator whose email and password these are.
async fn operator_holder(
    conn: &mut AsyncPgConnection,
    email: &str,
    password: String,
) -> Result<Checked, ConsoleError> {
    let found = match normalize_email(email) {
        Some(email) => operator::by_email(conn, &email).await?,
        None => None,
    };
    let stored = found.as_ref().and_then(|row| row.password_hash.clone());
    // Checked even without an operator, so that timing does not tell which emails exist.
    if !password::verify(password, stored).await {
        return Ok(Checked::Refused(found));
    }
    Ok(match found {
        Some(row) => Checked::Holds(
            row.account_id,
            Holder::Operator(row.id),
            Actor::Operator {
                id: row.id,
                name: row.name,
            },
        ),
        None => Checked::Refused(None),
    })
}

/// A new session for `holder`, logged as `actor`'s sign-in in the same transaction, its
/// cookie set, and on to the console.
async fn open_session(
    app: &App,
    parts: &Parts,
    conn: &mut AsyncPgConnection,
    account_id: i64,
    holder: Holder,
    actor: &Actor,
) -> Result<Response, ConsoleError> {
    let token = random_token();
    let token_hash = Sha256::digest(token.as_bytes());
    let method = match holder {
        Holder::Operator(_) => "password",
        Holder::ApiKey(_) => "api_key",
    };
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        console_session::create(conn, &token_hash, account_id, holder, &random_token()).await?;
        let details = serde_json::json!({ "method": method });
        let action = AuditAction::ConsoleSignedIn;
        audit_log::record(conn, account_id, actor, action, Target::None, details).await
    })
    .await?;
    let mut response = Redirect::to("/console").into_response();
    let secure = over_https(app, parts);
    set_cookie(&mut response, SESSION_COOKIE, &token, Some(secure));
    Ok(response)
}

#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "console/set_password.html")]
pub(super) struct SetPasswordPage {
    pub(super) layout: Layout,
    pub(super) token: String,
    /// Whose password it is; `None`: the link is unknown, used or expired.
    pub(super) email: Option<String>,
    pub(super) error: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct LinkQuery {
    #[serde(default)]
    token: String,
}

/// `GET /console/set-password?token=…`: the form of a password link.
pub(super) async fn set_password_page(
    State(app): State<App>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<LinkQuery>,
) -> Result<Response, ConsoleError> {
    let mut conn = app.db().await?;
    let found =
        operator::by_password_link(&mut conn, &password::link_token_hash(&query.token)).await?;
    let status = if found.is_some() {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    Ok(set_password_answer(
        &headers,
        status,
        query.token,
        found.map(|row| row.email),
        None,
    ))
}

fn set_password_answer(
    headers: &HeaderMap,
    status: StatusCode,
    token: String,
    email: Option<String>,
    error: Option<String>,
) -> Response {
    signed_out_answer(headers, status, |layout| SetPasswordPage {
        layout,
        token,
        email,
        error,
    })
}

#[derive(Deserialize)]
pub(super) struct SetPasswordForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirmation: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /console/set-password`: a password that passes the rules is stored, the link is
/// used up, the operator's other sessions end, and they are signed in.
pub(super) async fn set_password(
    State(app): State<App>,
    parts: Parts,
    axum::Form(form): axum::Form<SetPasswordForm>,
) -> Result<Response, ConsoleError> {
    let headers = &parts.headers;
    check_signed_out_form(headers, &form.csrf)?;
    let token_hash = password::link_token_hash(&form.token);
    let mut conn = app.db().await?;
    let Some(found) = operator::by_password_link(&mut conn, &token_hash).await? else {
        return Ok(set_password_answer(
            headers,
            StatusCode::NOT_FOUND,
            form.token,
            None,
            None,
        ));
    };
    let problem = if form.password != form.confirmation {
        Some("The two passwords are not the same.".to_owned())
    } else {
        password::problem(&form.password, &found.email)
    };
    if let Some(problem) = problem {
        return Ok(set_password_answer(
            headers,
            StatusCode::UNPROCESSABLE_ENTITY,
            form.token,
            Some(found.email),
            Some(problem),
        ));
    }
    let hash = password::hash(form.password).await.map_err(|error| {
        ApiError::internal(ErrorCode::InternalError, "hashing a password", &error)
    })?;
    let Some(row) = store_password(&mut conn, &token_hash, &hash).await? else {
        // Used by another request in the meantime.
        return Ok(set_password_answer(
            headers,
            StatusCode::NOT_FOUND,
            form.token,
            None,
            None,
        ));
    };
    let actor = Actor::Operator {
        id: row.id,
        name: row.name,
    };
    let holder = Holder::Operator(row.id);
    open_session(&app, &parts, &mut conn, row.account_id, holder, &actor).await
}

/// Sets the password of the operator a live link is for, logged as theirs in the same
/// transaction; `None`: the link is unknown, used or expired.
async fn store_password(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
    hash: &str,
) -> Result<Option<operator::OperatorRow>, ConsoleError> {
    Ok(conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            let Some(row) = operator::set_password_by_link(conn, token_hash, hash).await? else {
                return Ok(None);
            };
            let actor = Actor::Operator {
                id: row.id,
                name: row.name.clone(),
            };
            let (action, target) = (AuditAction::OperatorPasswordSet, Target::Operator(row.id));
            audit_log::record(
                conn,
                row.account_id,
                &actor,
                action,
                target,
                serde_json::json!({}),
            )
            .await?;
            Ok(Some(row))
        })
        .await?)
}

#[derive(Deserialize)]
pub(super) struct NoFields {}

/// `POST /console/sign-out`.
pub(super) async fn sign_out(
    State(app): State<App>,
    submitted: Submitted<NoFields>,
) -> Result<Response, ConsoleError> {
    let mut conn = app.db().await?;
    console_session::delete(&mut conn, &submitted.operator.token_hash).await?;
    let mut response = Redirect::to("/console/sign-in").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "anyreply_console=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict",
        ),
    );
    Ok(response)
}

/// 32 random bytes, base64url.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
        .filter(|value| !value.is_empty())
}

/// Sets a console cookie: `HttpOnly`, `SameSite=Strict`, for `/console`; `Secure` when
/// `secure` says so (`None`: as the request came, which the sign-in cookie does not need).
fn set_cookie(response: &mut Response, name: &str, value: &str, secure: Option<bool>) {
    let secure = if secure == Some(true) { "; Secure" } else { "" };
    let cookie = format!("{name}={value}; Path=/console; HttpOnly; SameSite=Strict{secure}");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// Whether the browser reached us over HTTPS: only a trusted proxy can say so.
fn over_https(app: &App, parts: &Parts) -> bool {
    client_address::from_trusted_proxy(&app.settings, &parts.extensions)
        && parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}
