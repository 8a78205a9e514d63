//! When and how long to wait before trying a call again.

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use anyreply_core::ErrorCode;

use crate::error::Error;

/// How a call is retried: attempts (the first included), exponential backoff with full jitter
/// between `base_delay` and `max_delay`, `Retry-After` honoured up to `max_retry_after`, and an
/// overall `deadline` after which no further attempt starts. [`Self::run_with`] is the loop
/// that applies it, to the SDK's calls, its event stream's reconnects and anything else.
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

    /// The same policy without an attempt limit or a deadline: for what is followed for as long
    /// as it is read (the event stream), whose waits still grow and jitter as this policy's do.
    pub(crate) fn without_limits(&self) -> Self {
        Self {
            max_attempts: u32::MAX,
            deadline: Duration::MAX,
            ..self.clone()
        }
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
        full_jitter(bound)
    }
}

/// The SDK's one jitter: a wait drawn evenly from zero to `bound`, so that clients failing
/// together do not come back together.
fn full_jitter(bound: Duration) -> Duration {
    let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::rng().random_range(0..=nanos))
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

/// One attempt of a call made by [`RetryPolicy::run_with`]: which it is, and what the
/// attempts before it left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attempt {
    /// 1 for the first. Waiting out a call still running ([`Failure::still_running`]) does
    /// not use up a number.
    pub number: u32,
    /// Time left before the policy's deadline: an attempt should not last longer.
    pub time_left: Duration,
    /// Whether an earlier attempt may have reached the other side and failed unanswered
    /// ([`Failure::may_have_landed`]): an answer saying "done before" may then be this
    /// call's own.
    pub may_have_landed: bool,
}

/// A failed attempt of [`RetryPolicy::run_with`]: its error, and what it says about trying
/// again.
#[derive(Debug)]
pub struct Failure<E> {
    error: E,
    retry: Retry,
    uses_an_attempt: bool,
    may_have_landed: bool,
    at_least: Duration,
}

impl<E> Failure<E> {
    /// `error`, retried as `retry` says.
    pub fn new(error: E, retry: Retry) -> Self {
        Self {
            error,
            retry,
            uses_an_attempt: true,
            may_have_landed: false,
            at_least: Duration::ZERO,
        }
    }

    /// The other side is still working on an earlier attempt of this same call (an
    /// `IDEMPOTENCY_CONFLICT`): waiting for it does not use up an attempt; only the deadline
    /// bounds it.
    pub fn still_running(mut self) -> Self {
        self.uses_an_attempt = false;
        self
    }

    /// Whether the attempt may have reached the other side before it failed (a timeout, a
    /// connection cut mid-way); later attempts see it as [`Attempt::may_have_landed`].
    pub fn may_have_landed(mut self, may_have: bool) -> Self {
        self.may_have_landed = may_have;
        self
    }

    /// The least pause the other side asked for between attempts (an event stream's
    /// `retry:`): the backoff's jitter is added on top of it, and a `Retry-After` shorter
    /// than it is lengthened to it.
    pub fn at_least(mut self, wait: Duration) -> Self {
        self.at_least = wait;
        self
    }

    /// The error.
    pub fn error(&self) -> &E {
        &self.error
    }

    /// The error, taken out.
    pub fn into_error(self) -> E {
        self.error
    }
}

impl RetryPolicy {
    /// Runs `attempt` (given its number, 1 for the first) until it succeeds, `judge` calls a
    /// failure final, or the policy runs out of attempts or time; the last failure is returned.
    /// For calls of other services made beside the SDK's, so that one policy governs both.
    /// A shorthand of [`Self::run_with`], the one retry loop of the SDK.
    pub async fn run<T, E, Fut>(
        &self,
        mut attempt: impl FnMut(u32) -> Fut,
        judge: impl FnMut(&E) -> Retry,
    ) -> Result<T, E>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        // Each attempt's future judges its own failure; one at a time, so the lock is never
        // contended (and never held across an await).
        let judge = Mutex::new(judge);
        let judge = &judge;
        self.run_with(|this: Attempt| {
            let attempt = attempt(this.number);
            async move {
                attempt.await.map_err(|error| {
                    let retry = judge.lock().unwrap_or_else(PoisonError::into_inner)(&error);
                    Failure::new(error, retry)
                })
            }
        })
        .await
    }

    /// The SDK's one retry loop, which its calls, its event stream's reconnects and the
    /// channel bridges' sends all run in: makes `attempt` until it succeeds, calls its
    /// [`Failure`] final, or the policy runs out of attempts or time; the last failure's
    /// error is returned.
    ///
    /// Between attempts it waits the backoff (full jitter up to `base_delay` doubled per
    /// retry, at most `max_delay`) or the other side's `Retry-After` (capped at
    /// `max_retry_after`); a wait that would end past the deadline is not begun. Waits are on
    /// tokio's clock, so tests with paused time run them at once.
    pub async fn run_with<T, E, Fut>(&self, mut attempt: impl FnMut(Attempt) -> Fut) -> Result<T, E>
    where
        Fut: Future<Output = Result<T, Failure<E>>>,
    {
        let started = tokio::time::Instant::now();
        let mut number = 1;
        let mut may_have_landed = false;
        loop {
            let this = Attempt {
                number,
                time_left: self.deadline.saturating_sub(started.elapsed()),
                may_have_landed,
            };
            let failure = match attempt(this).await {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            may_have_landed |= failure.may_have_landed;
            let wait = match failure.retry {
                Retry::Never => return Err(failure.error),
                Retry::Backoff => failure.at_least.saturating_add(self.delay(number, None)),
                Retry::After(wait) => self.delay(number, Some(wait)).max(failure.at_least),
            };
            if failure.uses_an_attempt && number >= self.max_attempts {
                return Err(failure.error);
            }
            if wait >= self.deadline.saturating_sub(started.elapsed()) {
                return Err(failure.error);
            }
            tokio::time::sleep(wait).await;
            if failure.uses_an_attempt {
                number = number.saturating_add(1);
            }
        }
    }
}

/// A failed call of this SDK, judged: retried by [`is_retryable`] after the server's
/// `Retry-After` (else the backoff); an `IDEMPOTENCY_CONFLICT` waited out without using up an
/// attempt; a timeout or a cut connection noted as having maybe reached the server.
pub(crate) fn failure(error: Error) -> Failure<Error> {
    let retry = if is_retryable(&error) {
        error
            .api()
            .and_then(|api| api.retry_after)
            .map_or(Retry::Backoff, Retry::After)
    } else {
        Retry::Never
    };
    let may_have_landed =
        matches!(&error, Error::Transport(transport) if transport.may_have_reached_server());
    let still_running = error.code() == Some(ErrorCode::IdempotencyConflict);
    let failure = Failure::new(error, retry).may_have_landed(may_have_landed);
    if still_running {
        failure.still_running()
    } else {
        failure
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

    /// A policy whose waits are long on the wall clock: the tests below run in paused time.
    fn slow_policy() -> RetryPolicy {
        RetryPolicy::default()
            .with_max_attempts(3)
            .with_backoff(Duration::from_secs(1), Duration::from_secs(8))
            .with_deadline(Duration::from_secs(60))
    }

    fn conflict() -> Error {
        Error::Api(ApiError {
            status: 409,
            code: Some(ErrorCode::IdempotencyConflict),
            message: String::new(),
            field_errors: Default::default(),
            retry_after: Some(Duration::from_secs(1)),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_still_running_is_waited_out_without_using_up_attempts() {
        let mut numbers = Vec::new();
        let result: Result<u32, Error> = slow_policy()
            .run_with(|attempt: Attempt| {
                numbers.push(attempt.number);
                let calls = numbers.len();
                async move {
                    match calls {
                        1..=5 => Err(failure(conflict())),
                        6 => Err(failure(api_error(503, None))),
                        _ => Ok(attempt.number),
                    }
                }
            })
            .await;
        // Five conflicts leave attempt 1 the first; the 503 uses it up.
        assert_eq!(numbers, [1, 1, 1, 1, 1, 1, 2]);
        assert_eq!(result.unwrap(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_is_told_whether_an_earlier_one_may_have_landed() {
        let timeout = || {
            Error::Transport(crate::error::TransportError {
                kind: crate::error::TransportErrorKind::Timeout,
                message: String::new(),
            })
        };
        let refused = || {
            Error::Transport(crate::error::TransportError {
                kind: crate::error::TransportErrorKind::Connect,
                message: String::new(),
            })
        };
        let mut seen = Vec::new();
        let result: Result<(), Error> = slow_policy()
            .with_max_attempts(4)
            .run_with(|attempt: Attempt| {
                seen.push(attempt.may_have_landed);
                let number = attempt.number;
                async move {
                    match number {
                        1 => Err(failure(refused())),
                        2 => Err(failure(timeout())),
                        3 => Err(failure(refused())),
                        _ => Ok(()),
                    }
                }
            })
            .await;
        assert!(result.is_ok());
        // A refused connection never reached the server; once a timeout did, it stays noted.
        assert_eq!(seen, [false, false, true, true]);
    }

    #[tokio::test(start_paused = true)]
    async fn waits_are_on_tokios_clock_and_end_at_the_deadline() {
        let started = tokio::time::Instant::now();
        let mut attempts = 0;
        let result: Result<(), Error> = slow_policy()
            .with_max_attempts(u32::MAX)
            .run_with(|attempt: Attempt| {
                attempts += 1;
                assert!(attempt.time_left <= Duration::from_secs(60));
                async { Err(failure(api_error(503, None))) }
            })
            .await;
        assert!(result.is_err());
        // Paused time: a minute of backoff passed at once, and no wait ran past the deadline.
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");
        assert!(elapsed > Duration::from_secs(60 - 8), "{elapsed:?}");
        assert!(attempts > 3, "{attempts}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_other_sides_least_pause_comes_before_the_jitter() {
        let policy =
            slow_policy().with_backoff(Duration::from_millis(100), Duration::from_millis(100));
        let started = tokio::time::Instant::now();
        let result: Result<(), ()> = policy
            .run_with(|attempt: Attempt| async move {
                if attempt.number == 1 {
                    Err(Failure::new((), Retry::Backoff).at_least(Duration::from_secs(3)))
                } else {
                    Ok(())
                }
            })
            .await;
        assert!(result.is_ok());
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(3) && waited <= Duration::from_millis(3_100),
            "{waited:?}"
        );
        // A `Retry-After` shorter than the least pause is lengthened to it.
        let started = tokio::time::Instant::now();
        let _: Result<(), ()> = policy
            .run_with(|attempt: Attempt| async move {
                if attempt.number == 1 {
                    Err(Failure::new((), Retry::After(Duration::from_secs(1)))
                        .at_least(Duration::from_secs(2)))
                } else {
                    Ok(())
                }
            })
            .await;
        assert_eq!(started.elapsed(), Duration::from_secs(2));
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
