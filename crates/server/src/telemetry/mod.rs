//! What the server tells its operators: request ids and one log line per request
//! ([`request`]), and the Prometheus metrics ([`metrics`]).

pub mod metrics;
pub mod request;

pub use request::{REQUEST_ID_HEADER, RequestId};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::ParseError;

/// The log filter of `ANYREPLY_LOG` (`None`: `info`). The database driver logs every
/// statement's parameters at `debug` (customers' messages, idempotency keys, hashes of API
/// keys), so it is held at `info` whatever the filter says.
pub fn log_filter(directives: Option<&str>) -> Result<EnvFilter, ParseError> {
    let filter = match directives {
        Some(directives) => EnvFilter::try_new(directives)?,
        None => EnvFilter::new("info"),
    };
    Ok(filter.add_directive("tokio_postgres=info".parse()?))
}
