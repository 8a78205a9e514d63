//! Human handoff: operator messages, opt-out, the event stream and usage.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use crate::util::{TestAccount, TestApp, assert_error, money};

/// A Server-Sent Events reader over a live response.
pub(crate) struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

/// One event: `id:`, `event:` and `data:` (as JSON).
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) id: i64,
    pub(crate) kind: String,
    pub(crate) data: Value,
}

impl EventStream {
    pub(crate) async fn open(
        app: &TestApp,
        key: &str,
        query: &str,
        last_event_id: Option<i64>,
    ) -> Self {
        let mut request = app
            .http
            .get(format!("{}/api/events{query}", app.base))
            .bearer_auth(key)
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Self::of(response)
    }

    /// Reads `response`, an open stream.
    pub(crate) fn of(response: reqwest::Response) -> Self {
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// Whether the server ends the stream within `wait` (events before its end are skipped).
    pub(crate) async fn ends_within(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, async {
            while let Ok(Some(_)) = self.response.chunk().await {}
        })
        .await
        .is_ok()
    }

    /// The next event (comments skipped), or `None` if none comes within `wait`.
    pub(crate) async fn next_within(&mut self, wait: Duration) -> Option<Frame> {
        tokio::time::timeout(wait, self.next()).await.ok()
    }

    async fn next(&mut self) -> Frame {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut kind, mut data) = (None, None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        kind = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if let (Some(id), Some(kind)) = (id, kind) {
                    return Frame {
                        id,
                        kind,
                        data: serde_json::from_str(&data).unwrap(),
                    };
                }
                continue;
            }
            let chunk = self
                .response
                .chunk()
                .await
                .unwrap()
                .expect("the stream ended");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    pub(crate) async fn take(&mut self, n: usize) -> Vec<Frame> {
        let mut frames = Vec::new();
        for _ in 0..n {
            frames.push(
                self.next_within(Duration::from_secs(10))
                    .await
                    .expect("an event within 10 s"),
            );
        }
        frames
    }
}

async fn setup() -> (TestApp, TestAccount, i64) {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    (app, account, assistant)
}

async fn operator_says(
    app: &TestApp,
    key: &str,
    conversation: &str,
    content: &str,
) -> (StatusCode, Value) {
    let (status, body, _) = app
        .post(
            key,
            &format!("/api/conversations/{conversation}/messages"),
            &json!({ "content": content }),
        )
        .await;
    (status, body)
}

#[tokio::test]
async fn the_event_stream_shows_each_change_and_resumes_after_a_dropped_connection() {
    let (app, account, assistant) = setup().await;
    let mut events = EventStream::open(&app, &account.key, "", None).await;

    let (status, reply) = app.reply(&account.key, assistant, "+1555", "hi").await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let conversation = reply["conversation_id"].as_str().unwrap().to_owned();
    let frames = events.take(2).await;
    assert_eq!(
        frames.iter().map(|f| f.kind.as_str()).collect::<Vec<_>>(),
        ["message.received", "reply.created"]
    );
    let (received, created) = (&frames[0], &frames[1]);
    assert!(created.id > received.id);
    assert_eq!(received.data["id"], received.id);
    assert_eq!(received.data["type"], "message.received");
    assert_eq!(received.data["conversation_id"], conversation.as_str());
    assert_eq!(received.data["customer_identifier"], "+1555");
    assert_eq!(received.data["assistant_id"], assistant);
    assert_eq!(received.data["message"]["role"], "user");
    assert_eq!(received.data["message"]["content"], "hi");
    assert_eq!(created.data["message"]["role"], "assistant");
    assert_eq!(created.data["message"]["content"], "echo: hi");
    assert_eq!(created.data["message"]["cost"], 0.002);

    // The connection drops; meanwhile a takeover, an operator message and a hand-back.
    let last_seen = created.id;
    drop(events);
    for action in ["disable-ai", "enable-ai"] {
        let (status, _, _) = app
            .post(
                &account.key,
                &format!("/api/automate/conversations/{conversation}/{action}"),
                &json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        if action == "disable-ai" {
            let (status, body) =
                operator_says(&app, &account.key, &conversation, "A human here.").await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
    }
    // Switching to what it already is changes nothing, so it is no event.
    app.post(
        &account.key,
        &format!("/api/automate/conversations/{conversation}/enable-ai"),
        &json!({}),
    )
    .await;

    let mut resumed = EventStream::open(&app, &account.key, "", Some(last_seen)).await;
    let frames = resumed.take(3).await;
    assert_eq!(
        frames.iter().map(|f| f.kind.as_str()).collect::<Vec<_>>(),
        ["ai.disabled", "operator.message", "ai.enabled"]
    );
    assert_eq!(frames[0].id, last_seen + 1, "nothing lost in between");
    assert!(frames.windows(2).all(|w| w[1].id == w[0].id + 1));
    assert!(frames[0].data.get("message").is_none());
    assert_eq!(frames[1].data["message"]["role"], "operator");
    assert_eq!(frames[1].data["message"]["content"], "A human here.");
    assert!(
        resumed
            .next_within(Duration::from_millis(300))
            .await
            .is_none(),
        "nothing repeated or invented"
    );
}

#[tokio::test]
async fn streams_are_the_accounts_own_and_can_be_filtered() {
    let (app, account, assistant) = setup().await;
    let other = app.db_account("10").await;
    let other_assistant = app.assistant(&other, &json!({ "name": "B" })).await;
    let (_, first) = app.reply(&account.key, assistant, "c1", "one").await;
    let conversation = first["conversation_id"].as_str().unwrap().to_owned();

    let mut mine = EventStream::open(&app, &account.key, "", Some(0)).await;
    let mut filtered = EventStream::open(
        &app,
        &account.key,
        &format!("?conversation_id={conversation}"),
        Some(0),
    )
    .await;
    app.reply(&other.key, other_assistant, "c1", "theirs").await;
    app.reply(&account.key, assistant, "c2", "two").await;
    app.reply(&account.key, assistant, "c1", "three").await;

    let all: Vec<String> = mine
        .take(6)
        .await
        .into_iter()
        .map(|f| f.data["customer_identifier"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(all, ["c1", "c1", "c2", "c2", "c1", "c1"]);
    let only: Vec<String> = filtered
        .take(4)
        .await
        .into_iter()
        .map(|f| f.data["message"]["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(only, ["one", "echo: one", "three", "echo: three"]);

    for (query, header) in [("?conversation_id=nope", None), ("", Some("-1"))] {
        let mut request = app
            .http
            .get(format!("{}/api/events{query}", app.base))
            .bearer_auth(&account.key);
        if let Some(header) = header {
            request = request.header("last-event-id", header);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_error(status, &body, 422, "VALIDATION_ERROR");
    }
}

#[tokio::test]
async fn a_failed_reply_is_an_event_with_its_code() {
    let (app, account, assistant) = setup().await;
    app.model_answers(ResponseTemplate::new(400).set_body_json(json!({
        "error": { "message": "bad", "type": "invalid_request_error" }
    })))
    .await;
    let mut events = EventStream::open(&app, &account.key, "", None).await;
    let (status, _) = app.reply(&account.key, assistant, "c", "hi").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let frames = events.take(2).await;
    assert_eq!(frames[0].kind, "message.received");
    assert_eq!(frames[1].kind, "reply.failed");
    assert_eq!(frames[1].data["message"]["content"], "hi");
    assert_eq!(frames[1].data["message"]["error_code"], "LLM_ERROR");
}

#[tokio::test]
async fn an_operator_message_joins_the_history_and_the_next_prompt() {
    let (app, account, assistant) = setup().await;
    let (_, reply) = app
        .reply(&account.key, assistant, "c", "Where is my parcel?")
        .await;
    let conversation = reply["conversation_id"].as_str().unwrap().to_owned();

    let (status, body) =
        operator_says(&app, &account.key, &conversation, "It left today. Anna").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], true);
    assert_eq!(body["data"]["role"], "operator");
    assert_eq!(body["data"]["content"], "It left today. Anna");

    // The AI stays on; the next prompt shows the operator's words as the business's.
    let (status, _) = app.reply(&account.key, assistant, "c", "Thanks!").await;
    assert_eq!(status, StatusCode::OK);
    let prompt = &app.llm_requests().await[1]["messages"];
    let said: Vec<(String, String)> = prompt
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] != "system")
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        said,
        [
            ("user".into(), "Where is my parcel?".into()),
            ("assistant".into(), "echo: Where is my parcel?".into()),
            ("assistant".into(), "It left today. Anna".into()),
            ("user".into(), "Thanks!".into()),
        ]
    );
    let (_, history, _) = app
        .get(&account.key, &format!("/api/conversations/{conversation}"))
        .await;
    let roles: Vec<&str> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["user", "assistant", "operator", "user", "assistant"]
    );
    assert_eq!(history["ai_enabled"], true);
}

#[tokio::test]
async fn operator_messages_are_validated_scoped_and_idempotent() {
    let (app, account, assistant) = setup().await;
    let (_, reply) = app.reply(&account.key, assistant, "c", "hi").await;
    let conversation = reply["conversation_id"].as_str().unwrap().to_owned();

    for bad in [
        json!({}),
        json!({ "content": "" }),
        json!({ "content": "x".repeat(10_001) }),
    ] {
        let (status, body, _) = app
            .post(
                &account.key,
                &format!("/api/conversations/{conversation}/messages"),
                &bad,
            )
            .await;
        assert_error(status, &body, 422, "VALIDATION_ERROR");
        assert!(body["errors"]["content"].is_array(), "{body}");
    }
    let other = app.db_account("10").await;
    let (status, body) = operator_says(&app, &other.key, &conversation, "sneaky").await;
    assert_error(status, &body, 404, "CONVERSATION_NOT_FOUND");
    let (status, body) = operator_says(&app, &account.key, "not-a-uuid", "x").await;
    assert_error(status, &body, 404, "CONVERSATION_NOT_FOUND");

    let path = format!("/api/conversations/{conversation}/messages");
    let body = json!({ "content": "Once only" });
    let (status, first, _) = app.post_keyed(&account.key, "op-1", &path, &body).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, again, headers) = app.post_keyed(&account.key, "op-1", &path, &body).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(first, again);
    assert_eq!(headers["idempotent-replayed"], "true");
    let (_, history, _) = app
        .get(&account.key, &format!("/api/conversations/{conversation}"))
        .await;
    let once = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["content"] == "Once only")
        .count();
    assert_eq!(once, 1);
}

#[tokio::test]
async fn an_opted_out_customer_gets_no_reply_no_charge_and_no_operator_message() {
    let (app, account, assistant) = setup().await;
    let optout = json!({ "assistant_id": assistant, "customer_identifier": "+1555" });
    let (status, out, _) = app
        .post(&account.key, "/api/automate/opt-out", &optout)
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["opted_out"], true);
    let conversation = out["conversation_id"].as_str().unwrap().to_owned();

    let (status, reply) = app.reply(&account.key, assistant, "+1555", "hello?").await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["reply"], "");
    assert_eq!(reply["opted_out"], true);
    assert_eq!(reply["conversation_id"], conversation.as_str());
    assert!(app.llm_requests().await.is_empty(), "the model was asked");
    assert_eq!(app.balance(&account).await, money("10"));

    let (status, body) = operator_says(&app, &account.key, &conversation, "Hi!").await;
    assert_error(status, &body, 409, "CONVERSATION_OPTED_OUT");
    let (_, detail, _) = app
        .get(&account.key, &format!("/api/conversations/{conversation}"))
        .await;
    assert_eq!(detail["opted_out"], true);
    assert_eq!(detail["history"].as_array().unwrap().len(), 1, "{detail}");

    let (status, back, _) = app
        .post(&account.key, "/api/automate/opt-in", &optout)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(back["opted_out"], false);
    let (status, reply) = app.reply(&account.key, assistant, "+1555", "again").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reply["reply"], "echo: again");
    assert!(reply.get("opted_out").is_none(), "{reply}");

    let (status, body, _) = app
        .post(
            &account.key,
            "/api/automate/opt-out",
            &json!({ "assistant_id": 999_999, "customer_identifier": "x" }),
        )
        .await;
    assert_error(status, &body, 404, "ASSISTANT_NOT_FOUND");
    let (status, body, _) = app
        .post(
            &account.key,
            "/api/automate/opt-out",
            &json!({ "assistant_id": assistant }),
        )
        .await;
    assert_error(status, &body, 422, "VALIDATION_ERROR");
}

#[tokio::test]
async fn usage_adds_up_to_what_the_balance_lost() {
    let (app, account, assistant) = setup().await;
    let second = app
        .assistant(&account, &json!({ "name": "B", "llm_model": "gpt-4o" }))
        .await;
    for (assistant, customer) in [(assistant, "a"), (assistant, "b"), (second, "c")] {
        let (status, _) = app.reply(&account.key, assistant, customer, "hi").await;
        assert_eq!(status, StatusCode::OK);
    }
    // A takeover's message and a failed reply cost nothing and count no reply.
    let (_, taken) = app.reply(&account.key, assistant, "d", "first").await;
    let taken_over = taken["conversation_id"].as_str().unwrap().to_owned();
    app.post(
        &account.key,
        &format!("/api/automate/conversations/{taken_over}/disable-ai"),
        &json!({}),
    )
    .await;
    let (_, stored) = app.reply(&account.key, assistant, "d", "anyone?").await;
    assert_eq!(stored["ai_disabled"], true);
    app.script_model(|request| {
        if String::from_utf8_lossy(&request.body).contains("fail me") {
            ResponseTemplate::new(400).set_body_json(json!({ "error": { "message": "no" } }))
        } else {
            ResponseTemplate::new(200).set_body_json(crate::util::chat_completion("ok"))
        }
    })
    .await;
    let (status, _) = app.reply(&account.key, assistant, "e", "fail me").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let lost = money("10").subunits() - app.balance(&account).await.subunits();
    let today = chrono::Utc::now().date_naive();
    for group in ["day", "assistant", "model"] {
        let (status, usage, _) = app
            .get(
                &account.key,
                &format!("/api/user/usage?from={today}&to={today}&group_by={group}"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{usage}");
        let rows = usage["data"].as_array().unwrap();
        let replies: i64 = rows.iter().map(|r| r["replies"].as_i64().unwrap()).sum();
        assert_eq!(replies, 4, "{usage}");
        let cost: i64 = rows
            .iter()
            .map(|r| money(&r["cost"].to_string()).subunits())
            .sum();
        assert_eq!(cost, lost, "{usage}");
        let prompt: i64 = rows
            .iter()
            .map(|r| r["prompt_tokens"].as_i64().unwrap())
            .sum();
        assert_eq!(
            prompt,
            4 * i64::from(anyreply_server::testing::PROMPT_TOKENS)
        );
        match group {
            "day" => assert_eq!(rows[0]["period"], today.to_string()),
            "assistant" => {
                let replies: Vec<i64> = rows
                    .iter()
                    .map(|r| r["replies"].as_i64().unwrap())
                    .collect();
                assert_eq!(replies, [3, 1]);
            }
            _ => {
                let models: Vec<&str> = rows.iter().map(|r| r["model"].as_str().unwrap()).collect();
                assert_eq!(models, ["gpt-4o", "gpt-4o-mini"]);
            }
        }
    }
    // Conversations carry their token totals.
    let (_, list, _) = app.get(&account.key, "/api/user/conversations").await;
    let first = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["external_identifier"] == "a")
        .unwrap();
    assert_eq!(
        first["prompt_tokens"],
        i64::from(anyreply_server::testing::PROMPT_TOKENS)
    );
    assert_eq!(
        first["completion_tokens"],
        i64::from(anyreply_server::testing::COMPLETION_TOKENS)
    );

    let (_, other_usage, _) = app
        .get(&app.db_account("1").await.key, "/api/user/usage")
        .await;
    assert_eq!(
        other_usage["data"],
        json!([]),
        "another account's usage leaked"
    );
    for bad in [
        "?from=2026-13-01",
        "?from=2026-12-02&to=2026-12-01",
        "?from=2024-01-01&to=2026-01-01",
        "?group_by=week",
    ] {
        let (status, body, _) = app
            .get(&account.key, &format!("/api/user/usage{bad}"))
            .await;
        assert_error(status, &body, 422, "VALIDATION_ERROR");
    }
}
