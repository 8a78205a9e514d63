//! Every retry rule, status by status.

use std::time::{Duration, Instant, SystemTime};

use anyreply_client::{Error, ErrorCode, RequestOptions, RetryPolicy, TransportErrorKind};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{client, error_body, fast_policy, reply_body, request};

/// A server that answers `first` once, then the reply.
async fn failing_once(first: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/ai/generate-reply"))
        .respond_with(first)
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/ai/generate-reply"))
        .respond_with(ResponseTemplate::new(200).set_body_json(reply_body()))
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn retryable_statuses_are_retried() {
    for status in [408, 409, 425, 429, 500, 502, 503, 504] {
        let server =
            failing_once(ResponseTemplate::new(status).set_body_json(error_body("WHATEVER"))).await;
        let reply = client(&server, fast_policy())
            .generate_reply(&request())
            .await;
        assert_eq!(reply.unwrap().reply, "Hello!", "status {status}");
        assert_eq!(
            server.received_requests().await.unwrap().len(),
            2,
            "status {status}"
        );
    }
}

#[tokio::test]
async fn other_statuses_are_not_retried() {
    for (status, code) in [
        (400, ErrorCode::InvalidJson),
        (401, ErrorCode::Unauthorized),
        (402, ErrorCode::InsufficientBalance),
        (403, ErrorCode::Unauthorized),
        (404, ErrorCode::AssistantNotFound),
        (422, ErrorCode::ValidationError),
    ] {
        let server =
            failing_once(ResponseTemplate::new(status).set_body_json(error_body(code.as_str())))
                .await;
        let error = client(&server, fast_policy())
            .generate_reply(&request())
            .await
            .unwrap_err();
        let api = error.api().unwrap();
        assert_eq!((api.status, api.code), (status, Some(code)));
        assert_eq!(api.message, "nope");
        assert_eq!(
            server.received_requests().await.unwrap().len(),
            1,
            "status {status}"
        );
    }
}

#[tokio::test]
async fn attempts_count_the_first_and_stop_at_the_limit() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_json(error_body("LLM_UNAVAILABLE")))
        .mount(&server)
        .await;
    let error = client(&server, fast_policy().with_max_attempts(4))
        .generate_reply(&request())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::LlmUnavailable));
    assert_eq!(server.received_requests().await.unwrap().len(), 4);
    let none = client(&server, RetryPolicy::none())
        .generate_reply(&request())
        .await;
    assert!(none.is_err());
    assert_eq!(server.received_requests().await.unwrap().len(), 5);
}

#[tokio::test]
async fn every_attempt_carries_the_same_idempotency_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(reply_body()))
        .mount(&server)
        .await;
    let sdk = client(&server, fast_policy());
    sdk.generate_reply(&request()).await.unwrap();
    let keys: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.headers["idempotency-key"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| k == &keys[0]));
    assert!(
        anyreply_client::Uuid::parse_str(&keys[0]).is_ok(),
        "generated keys are UUIDs"
    );

    // A second logical call gets a new key; a caller's own key is used as given.
    sdk.generate_reply(&request()).await.unwrap();
    sdk.generate_reply_with(&request(), RequestOptions::idempotency_key("telegram-42"))
        .await
        .unwrap();
    let received = server.received_requests().await.unwrap();
    assert_ne!(
        received[3].headers["idempotency-key"].to_str().unwrap(),
        keys[0]
    );
    assert_eq!(received[4].headers["idempotency-key"], "telegram-42");
}

#[tokio::test]
async fn retry_after_in_seconds_and_as_a_date_is_honoured_within_the_cap() {
    let in_two_seconds = httpdate_in(Duration::from_secs(2));
    for retry_after in ["1".to_owned(), in_two_seconds] {
        let server = failing_once(
            ResponseTemplate::new(429)
                .insert_header("retry-after", retry_after.as_str())
                .set_body_json(error_body("RATE_LIMITED")),
        )
        .await;
        // The cap (20 ms) cuts the server's wait: the retry comes at once, not seconds later.
        let started = Instant::now();
        client(&server, fast_policy())
            .generate_reply(&request())
            .await
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "{retry_after}: {:?}",
            started.elapsed()
        );
        assert_eq!(server.received_requests().await.unwrap().len(), 2);
    }
}

fn httpdate_in(wait: Duration) -> String {
    // RFC 9110 IMF-fixdate, as servers send it.
    let at = SystemTime::now() + wait;
    let secs = at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let days = secs / 86_400;
    let (h, m, s) = ((secs % 86_400) / 3_600, (secs % 3_600) / 60, secs % 60);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(month - 1) as usize];
    format!("{weekday}, {day:02} {month} {year} {h:02}:{m:02}:{s:02} GMT")
}

#[tokio::test]
async fn a_retry_after_beyond_the_deadline_ends_the_call() {
    let server = failing_once(
        ResponseTemplate::new(429)
            .insert_header("retry-after", "30")
            .set_body_json(error_body("RATE_LIMITED")),
    )
    .await;
    let policy = fast_policy()
        .with_max_retry_after(Duration::from_secs(60))
        .with_deadline(Duration::from_secs(5));
    let started = Instant::now();
    let error = client(&server, policy)
        .generate_reply(&request())
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "it must not sleep towards a wait it cannot finish"
    );
    let api = error.api().unwrap();
    assert_eq!(api.code, Some(ErrorCode::RateLimited));
    assert_eq!(api.retry_after, Some(Duration::from_secs(30)));
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_deadline_bounds_the_whole_call() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    // Each wait is up to 80 ms; the deadline of 100 ms allows only a few attempts, the last of
    // which may be cut short by it.
    let policy = RetryPolicy::default()
        .with_max_attempts(50)
        .with_backoff(Duration::from_millis(80), Duration::from_millis(80))
        .with_deadline(Duration::from_millis(100));
    let error = client(&server, policy)
        .generate_reply(&request())
        .await
        .unwrap_err();
    let ended_by_deadline = match &error {
        Error::Api(api) => api.status == 503,
        Error::Transport(transport) => transport.kind == TransportErrorKind::Timeout,
        _ => false,
    };
    assert!(ended_by_deadline, "{error:?}");
    let attempts = server.received_requests().await.unwrap().len();
    assert!(attempts < 50, "{attempts} attempts");
}

#[tokio::test]
async fn connection_failures_say_the_request_never_reached_the_server() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sdk = anyreply_client::Client::builder()
        .base_url(format!("http://127.0.0.1:{port}"))
        .api_key("ark_x")
        .retry_policy(fast_policy())
        .build()
        .unwrap();
    match sdk.generate_reply(&request()).await.unwrap_err() {
        Error::Transport(transport) => {
            assert_eq!(transport.kind, TransportErrorKind::Connect);
            assert!(!transport.may_have_reached_server());
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn timeouts_are_retried_and_may_have_reached_the_server() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_secs(2))
                .set_body_json(reply_body()),
        )
        .mount(&server)
        .await;
    let error = client(&server, fast_policy().with_max_attempts(2))
        .generate_reply(&request())
        .await
        .unwrap_err();
    match error {
        Error::Transport(transport) => {
            assert_eq!(transport.kind, TransportErrorKind::Timeout);
            assert!(transport.may_have_reached_server());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn waiting_out_an_idempotency_conflict_uses_no_attempts() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(409)
                .insert_header("retry-after", "1")
                .set_body_json(error_body("IDEMPOTENCY_CONFLICT")),
        )
        .up_to_n_times(4)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(reply_body()))
        .mount(&server)
        .await;
    let reply = client(&server, fast_policy().with_max_attempts(2))
        .generate_reply(&request())
        .await
        .unwrap();
    assert_eq!(reply.reply, "Hello!");
    assert_eq!(server.received_requests().await.unwrap().len(), 5);
}

#[tokio::test]
async fn no_attempt_runs_past_the_deadline() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_secs(3))
                .set_body_json(reply_body()),
        )
        .mount(&server)
        .await;
    let sdk = anyreply_client::Client::builder()
        .base_url(server.uri())
        .api_key("ark_x")
        .timeout(Duration::from_secs(30))
        .retry_policy(fast_policy().with_deadline(Duration::from_millis(300)))
        .build()
        .unwrap();
    let started = Instant::now();
    let error = sdk.generate_reply(&request()).await.unwrap_err();
    assert!(
        matches!(error, Error::Transport(ref t) if t.kind == TransportErrorKind::Timeout),
        "{error:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_malformed_request_is_a_configuration_error_and_never_sent() {
    let server = MockServer::start().await;
    let error = client(&server, fast_policy())
        .generate_reply_with(&request(), RequestOptions::idempotency_key("line\nbreak"))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Config(_)), "{error:?}");
    assert_eq!(server.received_requests().await.unwrap().len(), 0);
}

#[tokio::test]
async fn a_replay_is_told_apart_from_the_answer_to_an_own_lost_attempt() {
    let replayed = || {
        ResponseTemplate::new(200)
            .insert_header("idempotent-replayed", "true")
            .set_body_json(reply_body())
    };
    // The server had answered this key before this call: an earlier delivery's.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(replayed())
        .mount(&server)
        .await;
    let options = || RequestOptions::idempotency_key("telegram:42:10");
    let (_, before) = client(&server, fast_policy())
        .generate_reply_noting_replays(&request(), options())
        .await
        .unwrap();
    assert!(before);

    // This call's first attempt timed out after reaching the server: the replay is its own.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_secs(2))
                .set_body_json(reply_body()),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(replayed())
        .mount(&server)
        .await;
    let (reply, before) = client(&server, fast_policy())
        .generate_reply_noting_replays(&request(), options())
        .await
        .unwrap();
    assert!(!before);
    assert_eq!(reply.reply, "Hello!");
}
