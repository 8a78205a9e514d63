//! `ApiError`: an [`ErrorCode`] on its way to becoming the error envelope.

use anyreply_core::{ErrorBody, ErrorCode, FieldErrors};
use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use diesel::result::DatabaseErrorKind;

/// An error answer. Build it from a code; add a message, field errors or headers.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    message: Option<String>,
    fields: FieldErrors,
    headers: HeaderMap,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode) -> Self {
        Self {
            code,
            message: None,
            fields: FieldErrors::default(),
            headers: HeaderMap::new(),
        }
    }

    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    pub fn validation(fields: FieldErrors) -> Self {
        Self {
            fields,
            ..Self::new(ErrorCode::ValidationError)
        }
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.headers
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        self
    }

    pub fn with_headers(mut self, headers: HeaderMap) -> Self {
        self.headers.extend(headers);
        self
    }

    /// Logs an unexpected fault and hides it behind `code`.
    pub fn internal(code: ErrorCode, what: &str, error: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %error, "{what}");
        Self::new(code)
    }
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        Self::new(code)
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(error: diesel::result::Error) -> Self {
        let code = match &error {
            diesel::result::Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _)
            | diesel::result::Error::BrokenTransactionManager => ErrorCode::ServiceUnavailable,
            _ => ErrorCode::InternalError,
        };
        Self::internal(code, "database error", &error)
    }
}

impl From<crate::db::PoolError> for ApiError {
    fn from(error: crate::db::PoolError) -> Self {
        Self::internal(
            ErrorCode::ServiceUnavailable,
            "no database connection",
            &error,
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut body = ErrorBody::from(self.code);
        if let Some(message) = self.message {
            body = ErrorBody::new(self.code, message);
        }
        body.errors = self.fields.into_map();
        if self.code.is_retryable() && !self.headers.contains_key(header::RETRY_AFTER) {
            // Every retryable answer says when; one second is a safe hint for faults.
            let mut response = (status, self.headers, Json(body)).into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(1));
            return response;
        }
        (status, self.headers, Json(body)).into_response()
    }
}
