//! AnyReply's shared vocabulary: the wire contract of every endpoint, the one table of
//! error codes, money, and input validation.
//!
//! This crate knows no web framework, database or HTTP client, so the server and the SDK can
//! both depend on it and can never drift apart.

#![warn(missing_docs)]

pub mod env;
pub mod error;
pub mod limits;
pub mod money;
#[cfg(feature = "testing")]
pub mod testing;
pub mod validate;
pub mod webhook_signature;
pub mod wire;

pub use error::{ErrorBody, ErrorCode};
pub use money::Money;
pub use validate::FieldErrors;
