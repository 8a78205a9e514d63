//! What the server tells its operators: request ids and one log line per request
//! ([`request`]), and the Prometheus metrics ([`metrics`]).

pub mod metrics;
pub mod request;

pub use request::{REQUEST_ID_HEADER, RequestId};
