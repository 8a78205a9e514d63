//! Why a reply was not produced, and the one place that turns it into an API answer.

use anyreply_core::{ErrorCode, FieldErrors};

use crate::error::ApiError;
use crate::llm::LlmError;
use crate::rate_limit::RateLimit;

/// Everything the engine can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    /// Refused for what the caller asked: the code says why.
    #[error("refused: {0}")]
    Refused(ErrorCode),
    /// A field of the request cannot be accepted as it is.
    #[error("invalid request")]
    Invalid(FieldErrors),
    /// The API key's calls this minute are spent.
    #[error("rate limited")]
    RateLimited(RateLimit),
    /// Too many messages of the conversation wait for their reply already.
    #[error("the conversation's queue is full")]
    ConversationBusy,
    /// An idempotency refusal (conflict, reuse) or another answer made elsewhere.
    #[error("{}", .0.code)]
    Api(ApiError),
    /// The model gave no answer.
    #[error(transparent)]
    Model(LlmError),
    /// The reply took longer than `ANYREPLY_REPLY_TIMEOUT_SECS`.
    #[error("the reply timed out")]
    TimedOut,
    /// The turn was given up meanwhile, as its process was presumed dead.
    #[error("the turn was given up by another process")]
    Superseded,
    #[error("database: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("no database connection: {0}")]
    Pool(#[from] crate::db::PoolError),
}

pub type ReplyResult<T> = Result<T, ReplyError>;

impl ReplyError {
    /// The code the caller will be answered with.
    pub fn code(&self) -> ErrorCode {
        match self {
            ReplyError::Refused(code) => *code,
            ReplyError::Invalid(_) => ErrorCode::ValidationError,
            ReplyError::RateLimited(_) => ErrorCode::RateLimited,
            ReplyError::ConversationBusy => ErrorCode::ConversationBusy,
            ReplyError::Api(error) => error.code,
            ReplyError::Model(LlmError::Unavailable(_)) | ReplyError::TimedOut => {
                ErrorCode::LlmUnavailable
            }
            ReplyError::Model(LlmError::Failed(_)) => ErrorCode::LlmError,
            ReplyError::Superseded | ReplyError::Pool(_) => ErrorCode::ServiceUnavailable,
            ReplyError::Database(error) if crate::db::is_unavailable(error) => {
                ErrorCode::ServiceUnavailable
            }
            ReplyError::Database(_) => ErrorCode::InternalError,
        }
    }
}

/// Seconds a client should wait before retrying a busy conversation.
const BUSY_RETRY_AFTER_SECS: u64 = 2;

impl From<ApiError> for ReplyError {
    fn from(error: ApiError) -> Self {
        ReplyError::Api(error)
    }
}

impl From<ErrorCode> for ReplyError {
    fn from(code: ErrorCode) -> Self {
        ReplyError::Refused(code)
    }
}

impl From<ReplyError> for ApiError {
    fn from(error: ReplyError) -> Self {
        match error {
            ReplyError::Refused(code) => ApiError::new(code),
            ReplyError::Invalid(fields) => ApiError::validation(fields),
            ReplyError::RateLimited(limit) => ApiError::new(ErrorCode::RateLimited)
                .with_retry_after(limit.reset)
                .with_headers(limit.headers()),
            ReplyError::ConversationBusy => {
                ApiError::new(ErrorCode::ConversationBusy).with_retry_after(BUSY_RETRY_AFTER_SECS)
            }
            ReplyError::Api(error) => error,
            ReplyError::Model(error) => {
                let code = match error {
                    LlmError::Unavailable(_) => ErrorCode::LlmUnavailable,
                    LlmError::Failed(_) => ErrorCode::LlmError,
                };
                ApiError::internal(code, "the model gave no answer", &error)
            }
            ReplyError::TimedOut => ApiError::new(ErrorCode::LlmUnavailable)
                .with_message("The reply took too long and was given up, retry later"),
            ReplyError::Superseded => ApiError::new(ErrorCode::ServiceUnavailable),
            ReplyError::Database(error) => error.into(),
            ReplyError::Pool(error) => error.into(),
        }
    }
}
