//! Why a reply was not produced: the engine's own errors, each with the code (and the error
//! envelope) the caller is answered with. The HTTP answer is made of it in
//! [`crate::controllers::generate_reply`].

use anyreply_core::{ErrorBody, ErrorCode, FieldErrors};

use crate::idempotency::IdempotencyError;
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
    /// An idempotency refusal (conflict, reuse), or the key's store failing.
    #[error(transparent)]
    Idempotency(IdempotencyError),
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
            ReplyError::Idempotency(error) => error.code(),
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

    /// The message the answer gives instead of its code's default, if any.
    pub fn message(&self) -> Option<&'static str> {
        match self {
            ReplyError::TimedOut => Some(TIMED_OUT),
            _ => None,
        }
    }

    /// The error envelope the caller is answered with, naming the request being served: what
    /// is stored under its idempotency key.
    pub fn body(&self) -> ErrorBody {
        let mut body = match self.message() {
            Some(message) => ErrorBody::new(self.code(), message),
            None => ErrorBody::from(self.code()),
        };
        if let ReplyError::Invalid(fields) = self {
            body.errors = fields.clone().into_map();
        }
        body.request_id = crate::telemetry::RequestId::current();
        body
    }
}

/// What a timed-out reply is answered with.
const TIMED_OUT: &str = "The reply took too long and was given up, retry later";

/// Seconds a client should wait before retrying a busy conversation.
pub const BUSY_RETRY_AFTER_SECS: u64 = 2;

impl From<IdempotencyError> for ReplyError {
    fn from(error: IdempotencyError) -> Self {
        ReplyError::Idempotency(error)
    }
}

impl From<ErrorCode> for ReplyError {
    fn from(code: ErrorCode) -> Self {
        ReplyError::Refused(code)
    }
}
