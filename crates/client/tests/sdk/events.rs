//! The event stream against a `wiremock` `GET /api/events` serving real SSE bodies, and the
//! operator-message and opt-out endpoints.
//!
//! wiremock serves a finite body, so every response ends: the stream must come back by itself,
//! with `Last-Event-ID`, which is exactly what a dropped connection asks of it.

use std::time::{Duration, Instant};

use anyreply_client::{Error, ErrorCode, EventType, EventsQuery, RequestOptions, Role, Uuid};
use futures::StreamExt;
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::{client, error_body, fast_policy};

const CONVERSATION: &str = "01a21203-ace5-7678-97e0-1ea8fc865519";

fn event_json(id: i64, kind: &str, content: &str) -> Value {
    json!({
        "id": id, "type": kind, "conversation_id": CONVERSATION,
        "customer_identifier": "telegram:42", "assistant_id": 7,
        "created_at": "2026-01-05T10:00:00Z",
        "message": { "id": 100 + id, "role": "operator", "content": content, "created_at": "2026-01-05T10:00:00Z" }
    })
}

/// One event as the server frames it.
fn frame(id: i64, kind: &str, content: &str) -> String {
    format!(
        "id: {id}\nevent: {kind}\ndata: {}\n\n",
        event_json(id, kind, content)
    )
}

fn sse(body: String) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("cache-control", "no-cache")
        .set_body_raw(body, "text/event-stream")
}

/// Matches a request without `Last-Event-ID`: a stream starting fresh.
fn fresh(request: &Request) -> bool {
    !request.headers.contains_key("last-event-id")
}

async fn event_requests(server: &MockServer) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/api/events")
        .collect()
}

fn unauthorized() -> ResponseTemplate {
    ResponseTemplate::new(401).set_body_json(error_body("UNAUTHORIZED"))
}

#[tokio::test]
async fn events_are_parsed_as_the_server_frames_them() {
    let server = MockServer::start().await;
    // CRLF line ends, a keep-alive comment, JSON split over two `data:` lines, a `retry:` on
    // its own, and a type this SDK does not know.
    let split_json = event_json(2, "reply.created", "two").to_string();
    let (head, tail) = split_json.split_at(split_json.find(",\"type\"").unwrap() + 1);
    let body = [
        ": keep-alive\r\n\r\n".to_owned(),
        "retry: 2\r\n\r\n".to_owned(),
        frame(1, "operator.message", "one").replace('\n', "\r\n"),
        format!("id: 2\nevent: reply.created\ndata: {head}\ndata: {tail}\n\n"),
        "id: 3\nevent: invoice.paid\ndata: {\"anything\": true}\n\n".to_owned(),
        frame(4, "ai.disabled", "four"),
    ]
    .concat();
    Mock::given(method("GET"))
        .and(path("/api/events"))
        .and(header("accept", "text/event-stream"))
        .and(header(
            "authorization",
            "Bearer ark_test_key_that_must_never_be_printed",
        ))
        .and(query_param("assistant_id", "7"))
        .and(query_param("conversation_id", CONVERSATION))
        .and(fresh)
        .respond_with(sse(body))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/events"))
        .respond_with(unauthorized())
        .mount(&server)
        .await;

    let sdk = client(&server, fast_policy());
    let query = EventsQuery {
        assistant_id: Some(7),
        conversation_id: Some(CONVERSATION.parse().unwrap()),
        last_event_id: None,
    };
    let items: Vec<_> = sdk.events().stream(query).collect().await;
    let events: Vec<_> = items.iter().filter_map(|item| item.as_ref().ok()).collect();
    let kinds: Vec<_> = events.iter().map(|e| (e.id, e.kind)).collect();
    assert_eq!(
        kinds,
        [
            (1, EventType::OperatorMessage),
            (2, EventType::ReplyCreated),
            (4, EventType::AiDisabled)
        ]
    );
    let message = events[0].message.as_ref().unwrap();
    assert_eq!(
        (message.role, message.content.as_str()),
        (Role::Operator, "one")
    );
    assert_eq!(events[0].conversation_id.to_string(), CONVERSATION);
    // The unknown event still moved the place: the reconnect resumes after 4.
    let requests = event_requests(&server).await;
    assert_eq!(requests[1].headers["last-event-id"], "4");
}

#[tokio::test]
async fn a_closed_stream_resumes_after_the_last_event_with_nothing_lost_or_repeated() {
    let server = MockServer::start().await;
    // The first connection ends in the middle of event 3: it was never complete, so it was
    // never yielded, and the resume asks for everything after 2.
    let cut_short = [
        "retry: 1\n\n".to_owned(),
        frame(1, "operator.message", "one"),
        frame(2, "operator.message", "two"),
        format!(
            "id: 3\nevent: operator.message\ndata: {}",
            event_json(3, "operator.message", "three")
        ),
    ]
    .concat();
    Mock::given(path("/api/events"))
        .and(fresh)
        .respond_with(sse(cut_short))
        .mount(&server)
        .await;
    // A server that repeats the event the client already has: not yielded twice.
    Mock::given(path("/api/events"))
        .and(header("last-event-id", "2"))
        .respond_with(sse([
            frame(2, "operator.message", "two"),
            frame(3, "operator.message", "three"),
        ]
        .concat()))
        .mount(&server)
        .await;
    Mock::given(path("/api/events"))
        .and(header("last-event-id", "3"))
        .respond_with(sse(frame(4, "operator.message", "four")))
        .mount(&server)
        .await;
    Mock::given(path("/api/events"))
        .and(header("last-event-id", "4"))
        .respond_with(unauthorized())
        .mount(&server)
        .await;

    let sdk = client(&server, fast_policy());
    let items: Vec<_> = sdk.events().stream(EventsQuery::default()).collect().await;
    let contents: Vec<_> = items
        .iter()
        .filter_map(|item| item.as_ref().ok())
        .map(|e| e.message.as_ref().unwrap().content.as_str())
        .collect();
    assert_eq!(contents, ["one", "two", "three", "four"]);
    let last = items.last().unwrap().as_ref().unwrap_err();
    assert_eq!(last.code(), Some(ErrorCode::Unauthorized));
    let resumed_after: Vec<_> = event_requests(&server)
        .await
        .iter()
        .map(|r| {
            r.headers
                .get("last-event-id")
                .map(|v| v.to_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(
        resumed_after,
        [None, Some("2".into()), Some("3".into()), Some("4".into())]
    );
}

#[tokio::test]
async fn a_given_last_event_id_is_where_the_stream_starts() {
    let server = MockServer::start().await;
    Mock::given(path("/api/events"))
        .and(header("last-event-id", "41"))
        .respond_with(sse(frame(42, "operator.message", "hello")))
        .mount(&server)
        .await;
    Mock::given(path("/api/events"))
        .respond_with(unauthorized())
        .mount(&server)
        .await;
    let query = EventsQuery {
        last_event_id: Some(41),
        ..EventsQuery::default()
    };
    let mut stream = client(&server, fast_policy()).events().stream(query);
    assert_eq!(stream.next().await.unwrap().unwrap().id, 42);
}

#[tokio::test]
async fn unauthorized_ends_the_stream_at_once() {
    let server = MockServer::start().await;
    Mock::given(path("/api/events"))
        .respond_with(unauthorized())
        .mount(&server)
        .await;
    let mut stream = client(&server, fast_policy())
        .events()
        .stream(EventsQuery::default());
    let error = stream.next().await.unwrap().unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::Unauthorized));
    assert!(stream.next().await.is_none());
    assert_eq!(event_requests(&server).await.len(), 1, "not retried");
}

#[tokio::test]
async fn retryable_failures_are_waited_out_without_an_item() {
    let server = MockServer::start().await;
    Mock::given(path("/api/events"))
        .respond_with(ResponseTemplate::new(503).set_body_json(error_body("LLM_UNAVAILABLE")))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/api/events"))
        .respond_with(ResponseTemplate::new(200).set_body_string("not an event stream"))
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&server)
        .await;
    let mut stream = client(&server, fast_policy())
        .events()
        .stream(EventsQuery::default());
    // Two 503s pass unseen; a 200 that is not SSE is a server that will not change its mind.
    let error = stream.next().await.unwrap().unwrap_err();
    assert!(
        matches!(&error, Error::Decode { message, .. } if message.contains("text/event-stream")),
        "{error}"
    );
    assert_eq!(event_requests(&server).await.len(), 3);
}

#[tokio::test]
async fn the_servers_retry_sets_the_reconnect_delay() {
    let server = MockServer::start().await;
    Mock::given(path("/api/events"))
        .and(fresh)
        .respond_with(sse(format!(
            "retry: 400\n\n{}",
            frame(1, "operator.message", "one")
        )))
        .mount(&server)
        .await;
    Mock::given(path("/api/events"))
        .respond_with(unauthorized())
        .mount(&server)
        .await;
    let mut stream = client(&server, fast_policy())
        .events()
        .stream(EventsQuery::default());
    stream.next().await.unwrap().unwrap();
    let closed = Instant::now();
    stream.next().await.unwrap().unwrap_err();
    // Half of the delay is fixed, half random: never sooner than 200 ms, though the policy's
    // own backoff is 1 ms.
    assert!(
        closed.elapsed() >= Duration::from_millis(200),
        "{:?}",
        closed.elapsed()
    );
}

#[tokio::test]
async fn operator_messages_are_posted_with_their_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/api/conversations/{CONVERSATION}/messages")))
        .and(header("idempotency-key", "crm-note-9"))
        .and(body_json(json!({ "content": "Your parcel left today." })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "status": true,
            "data": { "role": "operator", "content": "Your parcel left today.", "created_at": "2026-01-05T10:00:00Z" }
        })))
        .mount(&server)
        .await;
    let id: Uuid = CONVERSATION.parse().unwrap();
    let message = client(&server, fast_policy())
        .conversations()
        .send_operator_message_with(
            id,
            "Your parcel left today.",
            RequestOptions::idempotency_key("crm-note-9"),
        )
        .await
        .unwrap();
    assert_eq!(message.role, Role::Operator);
    assert_eq!(message.content, "Your parcel left today.");
}

#[tokio::test]
async fn an_opted_out_conversation_refuses_operator_messages_without_retries() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(409).set_body_json(error_body("CONVERSATION_OPTED_OUT")),
        )
        .mount(&server)
        .await;
    let error = client(&server, fast_policy())
        .conversations()
        .send_operator_message(CONVERSATION.parse().unwrap(), "Hello?")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::ConversationOptedOut));
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn opt_out_and_opt_in_name_the_customer() {
    let server = MockServer::start().await;
    for (route, opted_out) in [("opt-out", true), ("opt-in", false)] {
        Mock::given(method("POST"))
            .and(path(format!("/api/automate/{route}")))
            .and(body_json(
                json!({ "assistant_id": 7, "customer_identifier": "+15550001111" }),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "status": true, "conversation_id": CONVERSATION, "opted_out": opted_out
            })))
            .mount(&server)
            .await;
    }
    let sdk = client(&server, fast_policy());
    let out = sdk
        .conversations()
        .opt_out(7, "+15550001111")
        .await
        .unwrap();
    assert!(out.opted_out);
    let back = sdk.conversations().opt_in(7, "+15550001111").await.unwrap();
    assert!(!back.opted_out);
    assert_eq!(back.conversation_id.to_string(), CONVERSATION);
}
