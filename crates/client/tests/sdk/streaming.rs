//! `generate_reply_stream`: the reply's text as it is written, then the answer.

use anyreply_client::{Error, ErrorCode, ReplyEvent, RequestOptions, TransportErrorKind};
use futures::StreamExt;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{client, error_body, fast_policy, reply_body, request};

fn events(body: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.to_owned(), "text/event-stream")
}

#[tokio::test]
async fn deltas_then_the_answer_after_a_retried_start_under_one_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/ai/generate-reply"))
        .respond_with(ResponseTemplate::new(503).set_body_json(error_body("SERVICE_UNAVAILABLE")))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    let body = format!(
        ": keep-alive\n\nevent: delta\ndata: {{\"text\":\"Hel\"}}\n\nevent: delta\ndata: {{\"text\":\"lo!\"}}\n\nevent: reply\ndata: {}\n\n",
        reply_body()
    );
    Mock::given(method("POST"))
        .and(path("/api/ai/generate-reply"))
        .and(header("accept", "text/event-stream"))
        .and(header("idempotency-key", "msg-1"))
        .respond_with(events(&body))
        .mount(&server)
        .await;

    let stream = client(&server, fast_policy())
        .generate_reply_stream(&request(), RequestOptions::idempotency_key("msg-1"))
        .await
        .unwrap();
    let items: Vec<ReplyEvent> = stream.map(Result::unwrap).collect().await;
    assert_eq!(items.len(), 3);
    assert_eq!(items[0], ReplyEvent::Delta("Hel".into()));
    assert_eq!(items[1], ReplyEvent::Delta("lo!".into()));
    let ReplyEvent::Reply(reply) = &items[2] else {
        panic!("{items:?}")
    };
    assert_eq!(reply.reply, "Hello!");
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_failure_after_text_is_the_last_item_with_its_code() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(events(&format!(
            "event: delta\ndata: {{\"text\":\"We\"}}\n\nevent: error\ndata: {}\n\n",
            error_body("LLM_UNAVAILABLE")
        )))
        .mount(&server)
        .await;
    let mut stream = client(&server, fast_policy())
        .generate_reply_stream(&request(), RequestOptions::default())
        .await
        .unwrap();
    assert_eq!(
        stream.next().await.unwrap().unwrap(),
        ReplyEvent::Delta("We".into())
    );
    let error = stream.next().await.unwrap().unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::LlmUnavailable));
    assert!(
        matches!(&error, Error::Api(api) if api.status == 503),
        "{error:?}"
    );
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn a_stream_cut_before_the_answer_ends_in_a_transport_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(events("event: delta\ndata: {\"text\":\"We\"}\n\n"))
        .mount(&server)
        .await;
    let items: Vec<_> = client(&server, fast_policy())
        .generate_reply_stream(&request(), RequestOptions::default())
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(items.len(), 2);
    let Err(Error::Transport(transport)) = &items[1] else {
        panic!("{items:?}")
    };
    assert_eq!(transport.kind, TransportErrorKind::Interrupted);
}

#[tokio::test]
async fn a_refusal_before_the_stream_is_an_error_not_a_stream() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(402).set_body_json(error_body("INSUFFICIENT_BALANCE")))
        .mount(&server)
        .await;
    let error = client(&server, fast_policy())
        .generate_reply_stream(&request(), RequestOptions::default())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::InsufficientBalance));
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}
