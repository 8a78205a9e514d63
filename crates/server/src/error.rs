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
    /// Boxed to keep `Result<_, ApiError>` small on the happy path.
    details: Option<Box<Details>>,
}

#[derive(Debug, Default)]
struct Details {
    message: Option<String>,
    fields: FieldErrors,
    headers: HeaderMap,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode) -> Self {
        Self {
            code,
            details: None,
        }
    }

    fn details(&mut self) -> &mut Details {
        self.details.get_or_insert_with(Box::default)
    }

    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.details().message = Some(message.into());
        self
    }

    pub fn validation(fields: FieldErrors) -> Self {
        let mut error = Self::new(ErrorCode::ValidationError);
        error.details().fields = fields;
        error
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.details()
            .headers
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        self
    }

    pub fn with_headers(mut self, headers: HeaderMap) -> Self {
        self.details().headers.extend(headers);
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
            error if crate::db::is_unavailable(error) => {
                crate::pg_cluster::database_seems_gone();
                ErrorCode::ServiceUnavailable
            }
            // Contention (a serialization failure, or a deadlock PostgreSQL broke by aborting
            // this transaction): a retry goes through.
            diesel::result::Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => {
                ErrorCode::ServiceUnavailable
            }
            diesel::result::Error::DatabaseError(DatabaseErrorKind::Unknown, info)
                if info.message().contains("deadlock detected") =>
            {
                ErrorCode::ServiceUnavailable
            }
            _ => ErrorCode::InternalError,
        };
        Self::internal(code, "database error", &error)
    }
}

impl From<crate::db::PoolError> for ApiError {
    fn from(error: crate::db::PoolError) -> Self {
        // A new connection refused (not a pool merely busy).
        if matches!(error, crate::db::PoolError::Backend(_)) {
            crate::pg_cluster::database_seems_gone();
        }
        Self::internal(
            ErrorCode::ServiceUnavailable,
            "no database connection",
            &error,
        )
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The envelope this error answers with, naming the request being served (a stored
    /// refusal keeps naming the request that was refused).
    pub fn body(&self) -> ErrorBody {
        let details = self.details.as_deref();
        let mut body = match details.and_then(|d| d.message.clone()) {
            Some(message) => ErrorBody::new(self.code, message),
            None => ErrorBody::from(self.code),
        };
        body.errors = details
            .map(|d| d.fields.clone().into_map())
            .unwrap_or_default();
        body.request_id = crate::telemetry::RequestId::current();
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = (self.status(), self.body());
        let mut headers = self.details.map(|d| d.headers).unwrap_or_default();
        if self.code.is_retryable() && !headers.contains_key(header::RETRY_AFTER) {
            // Every retryable answer says when; one second is a safe hint for faults.
            headers.insert(header::RETRY_AFTER, HeaderValue::from(1));
        }
        (status, headers, Json(body)).into_response()
    }
}
