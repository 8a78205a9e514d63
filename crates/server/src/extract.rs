//! Request extractors that answer with our error envelope instead of axum's plain text.

use anyreply_core::limits::{DEFAULT_ASSISTANTS_AND_TOOLS_PER_PAGE, MAX_PER_PAGE};
use anyreply_core::validate::Fields;
use anyreply_core::{ErrorCode, FieldErrors};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde_json::{Map, Value};

use crate::app::App;
pub use crate::caller::Caller;
use crate::error::ApiError;
use crate::known_keys::KnownKey;
use crate::models::api_key::{self, parse_key_prefix, secret_matches};
use crate::models::page::{AfterId, OpaqueCursor};

/// A JSON body, parsed but not yet typed: each endpoint validates it field by field, so one
/// answer lists every bad field. Any content type is accepted, as Famulor clients vary.
#[derive(Debug)]
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection {
                    BytesRejection::FailedToBufferBody(_) => {
                        ApiError::new(ErrorCode::PayloadTooLarge)
                    }
                    other => ApiError::new(ErrorCode::InvalidJson).with_message(other.body_text()),
                })?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|error| {
            ApiError::new(ErrorCode::InvalidJson)
                .with_message(format!("The request body is not valid JSON: {error}"))
        })?;
        // PostgreSQL stores no NUL in text or jsonb, so none may get past here. A NUL can only
        // arrive escaped (a raw one is no valid JSON): the walk is for the bodies that have one.
        if may_hold_nul(&bytes) {
            refuse_nul(&value)?;
        }
        Ok(JsonBody(value))
    }
}

/// Whether a JSON text may hold a NUL character: a raw NUL byte or the escape `\u0000`.
fn may_hold_nul(bytes: &[u8]) -> bool {
    bytes.contains(&0) || bytes.windows(6).any(|window| window == br"\u0000")
}

/// Refuses a value with a NUL character anywhere, naming each place: [`JsonBody`]'s check,
/// for bodies built by other means (the console's forms).
pub fn refuse_nul(value: &Value) -> Result<(), ApiError> {
    let mut errors = FieldErrors::default();
    nul_paths(value, &mut String::new(), &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(errors))
    }
}

/// At most this many NULs are reported; a body full of them needs no longer answer.
const MAX_NUL_PATHS: usize = 20;

/// Adds an error for each string or object key in `value` that holds a NUL, named by its
/// path (`schema[0].description`; a key by the object that holds it, `body` at the top).
fn nul_paths(value: &Value, path: &mut String, errors: &mut FieldErrors) {
    if errors.len() >= MAX_NUL_PATHS {
        return;
    }
    let field = |path: &str| {
        if path.is_empty() {
            "body".to_owned()
        } else if path.starts_with('[') {
            format!("body{path}")
        } else {
            path.to_owned()
        }
    };
    match value {
        Value::String(text) if text.contains('\0') => {
            let field = field(path);
            let message = format!("The {field} field must not contain NUL characters.");
            errors.add(field, message);
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{index}]"));
                nul_paths(item, path, errors);
                path.truncate(len);
            }
        }
        Value::Object(object) => {
            if object.keys().any(|key| key.contains('\0')) {
                let field = field(path);
                let message = format!("The keys of {field} must not contain NUL characters.");
                errors.add(field, message);
            }
            // A key with a NUL is reported above, and names no path below it.
            for (key, item) in object.iter().filter(|(key, _)| !key.contains('\0')) {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                nul_paths(item, path, errors);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

impl JsonBody {
    /// Validates with `parse`, turning field errors into a `VALIDATION_ERROR`.
    pub fn parse<T>(
        &self,
        parse: impl FnOnce(&Value) -> Result<T, FieldErrors>,
    ) -> Result<T, ApiError> {
        parse(&self.0).map_err(ApiError::validation)
    }
}

impl<S> FromRequestParts<S> for Caller
where
    App: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let app = App::from_ref(state);
        let (key, prefix) = presented_key(parts)?;
        let known = read_live_key(&app, prefix).await?;
        Caller::proven_by(key, &known)
    }
}

/// The caller of generate-reply, by an API key in `Authorization: Bearer` that this process
/// has seen before or reads now; that it is still live is left to the reply's admission, which
/// checks it in its own transaction (a read saved on the hottest call). Only for handlers that
/// check it so.
#[derive(Debug, Clone, Copy)]
pub struct ReplyCaller(pub Caller);

impl<S> FromRequestParts<S> for ReplyCaller
where
    App: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let app = App::from_ref(state);
        let (key, prefix) = presented_key(parts)?;
        let known = match app.known_keys.get(prefix) {
            Some(known) => known,
            None => {
                let known = read_live_key(&app, prefix).await?;
                app.known_keys.remember(prefix, known.clone());
                known
            }
        };
        Caller::proven_by(key, &known).map(ReplyCaller)
    }
}

impl Caller {
    /// The caller if `key` is the one `known` describes (its secret matches).
    fn proven_by(key: &str, known: &KnownKey) -> Result<Self, ApiError> {
        if !secret_matches(key, &known.secret_hash) {
            return Err(ErrorCode::Unauthorized.into());
        }
        tracing::Span::current().record("account_id", known.account_id);
        Ok(Caller {
            account_id: known.account_id,
            api_key_id: known.id,
            tools: true,
        })
    }
}

/// The API key of `Authorization: Bearer`, and its lookup prefix.
fn presented_key(parts: &Parts) -> Result<(&str, &str), ApiError> {
    let key = bearer_token(&parts.headers).ok_or(ErrorCode::Unauthorized)?;
    let prefix = parse_key_prefix(key).ok_or(ErrorCode::Unauthorized)?;
    Ok((key, prefix))
}

/// The live key whose lookup prefix is `prefix`, read now.
async fn read_live_key(app: &App, prefix: &str) -> Result<KnownKey, ApiError> {
    let mut conn = app.db().await?;
    let row = api_key::find_by_prefix(&mut conn, prefix)
        .await?
        .filter(|row| row.revoked_at.is_none())
        .ok_or(ErrorCode::Unauthorized)?;
    Ok(KnownKey {
        id: row.id,
        account_id: row.account_id,
        secret_hash: row.secret_hash,
    })
}

/// The token of `Authorization: Bearer <token>`.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The one path parameter, as text. A malformed one (invalid UTF-8, say) is "not found", in
/// our envelope rather than axum's plain text.
#[derive(Debug)]
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(param)| PathParam(param))
            .map_err(|_| ApiError::new(ErrorCode::NotFound))
    }
}

/// A query string as a JSON object of strings, for field-by-field validation.
pub fn query_params(query: Option<&str>) -> Value {
    Value::Object(
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect::<Map<String, Value>>(),
    )
}

/// `per_page` (1..=100, default 100) and `cursor` of the lists paged in id order (assistants,
/// tools); a bad one is a `VALIDATION_ERROR`.
#[derive(Debug, Clone, Copy)]
pub struct IdPageQuery {
    pub per_page: u32,
    pub after: Option<AfterId>,
}

impl<S: Send + Sync> FromRequestParts<S> for IdPageQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let params = query_params(parts.uri.query());
        let mut fields = Fields::new(&params);
        let per_page = fields
            .optional_integer("per_page", 1..=i64::from(MAX_PER_PAGE))
            .map_or(DEFAULT_ASSISTANTS_AND_TOOLS_PER_PAGE, |n| n as u32);
        let cursor = fields.optional_string("cursor", 1..=512);
        let mut errors = fields.errors;
        let after = cursor.and_then(|text| {
            let decoded = AfterId::decode(&text);
            if decoded.is_none() {
                errors.add("cursor", "The cursor is invalid.");
            }
            decoded
        });
        errors
            .finish(Self { per_page, after })
            .map_err(ApiError::validation)
    }
}
