//! When and how long to wait before trying a call again.

use std::future::Future;
use std::time::{Duration, SystemTime};

use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::error::Error;

/// How a call is retried: attempts (the first included), exponential backoff with full jitter
/// between `base_delay` and `max_delay`, `Retry-After` honoured up to `max_retry_after`, and an
/// overall `deadline` after which no further attempt starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included. 1 disables retries. Default 3.
    pub max_attempts: u32,
    /// Wait bound before the first retry; doubled for each next. Default 200 ms.
    pub base_delay: Duration,
    /// Largest wait bound of the backoff. Default 10 s.
    pub max_delay: Duration,
    /// Longest `Retry-After` obeyed; a longer one is cut to this. Default 60 s.
    pub max_retry_after: Duration,
    /// No attempt starts, and no wait is begun, past this time after the call began. Default 2 min.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
            deadline: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// No retries: one attempt.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Attempts in all, the first included (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The backoff's first wait bound and its largest.
    pub fn with_backoff(mut self, base_delay: Duration, max_delay: Duration) -> Self {
        self.base_delay = base_delay;
        self.max_delay = max_delay.max(base_delay);
        self
    }

    /// The longest `Retry-After` obeyed.
    pub fn with_max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// The time after which no attempt starts.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The wait before retry number `retry` (1 for the first retry): the server's
    /// `Retry-After` if it sent one (capped), otherwise a random wait up to the backoff bound.
    pub(crate) fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(retry_after) = retry_after {
            return retry_after.min(self.max_retry_after);
        }
        let bound = self
            .base_delay
            .saturating_mul(2_u32.saturating_pow(retry.saturating_sub(1)))
            .min(self.max_delay);
        let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }
}

/// What a failed attempt says about trying again (see [`RetryPolicy::run`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The failure is final: trying again would fail the same way.
    Never,
    /// Try again after the policy's backoff.
    Backoff,
    /// Try again after this long (the other side's `Retry-After`), capped by the policy.
    After(Duration),
}

impl RetryPolicy {
    /// Runs `attempt` (given its number, 1 for the first) until it succeeds, `judge` calls a
    /// failure final, or the policy runs out of attempts or time; the last failure is returned.
    /// For calls of other services made beside the SDK's, so that one policy governs both.
    pub async fn run<T, E, Fut>(
        &self,
        mut attempt: impl FnMut(u32) -> Fut,
        mut judge: impl FnMut(&E) -> Retry,
    ) -> Result<T, E>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let started = tokio::time::Instant::now();
        let mut number = 1;
        loop {
            let error = match attempt(number).await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let retry_after = match judge(&error) {
                Retry::Never => return Err(error),
                Retry::Backoff => None,
                Retry::After(wait) => Some(wait),
            };
            if number >= self.max_attempts {
                return Err(error);
            }
            let wait = self.delay(number, retry_after);
            if started.elapsed() + wait >= self.deadline {
                return Err(error);
            }
            tokio::time::sleep(wait).await;
            number += 1;
        }
    }
}

/// Whether a failed attempt may be repeated: for the codes this SDK knows, `ErrorCode`'s one
/// table says; for a code it does not know (from a newer server), the HTTP status does.
pub(crate) fn is_retryable(error: &Error) -> bool {
    match error {
        Error::Transport(_) => true,
        Error::Api(api) => match api.code {
            Some(code) => code.is_retryable(),
            None => matches!(api.status, 408 | 409 | 425 | 429 | 500 | 502 | 503 | 504),
        },
        Error::Decode { .. } | Error::Config(_) | Error::Invalid(_) => false,
    }
}

/// `Retry-After` as a wait: delay-seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Statuses whose answers are errors.
pub(crate) fn is_error(status: StatusCode) -> bool {
    !status.is_success()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;
    use anyreply_core::ErrorCode;
    use reqwest::header::HeaderValue;

    fn api_error(status: u16, code: Option<ErrorCode>) -> Error {
        Error::Api(ApiError {
            status,
            code,
            message: String::new(),
            field_errors: Default::default(),
            retry_after: None,
        })
    }

    /// Every code of the table, each decided by the table: a new code must be placed here on
    /// purpose, retried or not.
    #[test]
    fn every_error_code_is_retried_as_its_row_of_the_table_says() {
        use ErrorCode::*;
        let retried = [
            IdempotencyConflict,
            RateLimited,
            ConversationBusy,
            InternalError,
            LlmError,
            LlmUnavailable,
            ServiceUnavailable,
            TooManyEventStreams,
        ];
        for &code in ErrorCode::ALL {
            let error = api_error(code.http_status(), Some(code));
            assert_eq!(is_retryable(&error), code.is_retryable(), "{code:?}");
            assert_eq!(is_retryable(&error), retried.contains(&code), "{code:?}");
        }
        // A code this SDK does not know: its status decides.
        assert!(is_retryable(&api_error(503, None)));
        assert!(is_retryable(&api_error(409, None)));
        assert!(!is_retryable(&api_error(422, None)));
    }

    #[tokio::test]
    async fn run_retries_what_the_judge_allows_within_the_attempts() {
        let policy = RetryPolicy::default()
            .with_max_attempts(3)
            .with_backoff(Duration::from_millis(1), Duration::from_millis(2));
        let mut calls = Vec::new();
        let result: Result<(), u32> = policy
            .run(
                |number| {
                    calls.push(number);
                    async move { Err(number) }
                },
                |_| Retry::Backoff,
            )
            .await;
        assert_eq!(result, Err(3));
        assert_eq!(calls, [1, 2, 3]);

        let mut calls = 0;
        let result: Result<(), &str> = policy
            .run(
                |_| {
                    calls += 1;
                    async { Err("refused") }
                },
                |_| Retry::Never,
            )
            .await;
        assert_eq!((result, calls), (Err("refused"), 1));

        let result = policy
            .run(
                |number| async move { if number < 2 { Err(()) } else { Ok(number) } },
                |_| Retry::After(Duration::from_millis(1)),
            )
            .await;
        assert_eq!(result, Ok(2));
    }

    #[test]
    fn backoff_grows_with_full_jitter_up_to_the_cap() {
        let policy = RetryPolicy::default()
            .with_backoff(Duration::from_millis(100), Duration::from_millis(350));
        for _ in 0..200 {
            assert!(policy.delay(1, None) <= Duration::from_millis(100));
            assert!(policy.delay(2, None) <= Duration::from_millis(200));
            assert!(policy.delay(3, None) <= Duration::from_millis(350));
            assert!(policy.delay(30, None) <= Duration::from_millis(350));
        }
        // Full jitter: the waits spread over the whole range.
        let waits: Vec<_> = (0..200).map(|_| policy.delay(3, None)).collect();
        assert!(waits.iter().any(|w| *w < Duration::from_millis(100)));
        assert!(waits.iter().any(|w| *w > Duration::from_millis(250)));
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let policy = RetryPolicy::default().with_max_retry_after(Duration::from_secs(5));
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(600))),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        let in_a_minute = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(61));
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&in_a_minute).unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(
            wait > Duration::from_secs(55) && wait <= Duration::from_secs(61),
            "{wait:?}"
        );
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }
}
