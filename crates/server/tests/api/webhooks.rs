//! Outgoing webhooks: the endpoints, and deliveries to `wiremock` receivers (signed, retried
//! with the same `webhook-id`, in order per conversation, surviving a restart, disabled when
//! failing too long).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyreply_client::webhooks::verify;
use anyreply_core::wire::EventType;
use anyreply_server::config::Settings;
use anyreply_server::models::event::{self, NewEvent};
use anyreply_server::testing::eventually;
use anyreply_server::tools::guard::AddressPolicy;
use diesel_async::AsyncConnection;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::util::{TestAccount, TestApp, assert_error};

/// Receivers on 127.0.0.1 allowed; retries after 100 ms.
fn fast_webhooks(settings: &mut Settings) {
    settings.outbound_allowed_hosts = AddressPolicy::parse("127.0.0.1").unwrap();
    settings.webhook_retry_schedule = vec![Duration::from_millis(100); 50];
    settings.webhook_timeout = Duration::from_secs(5);
}

async fn spawn() -> TestApp {
    TestApp::spawn_with(fast_webhooks).await
}

/// Creates a webhook for `events` at `url`; returns its id and secret.
async fn create(app: &TestApp, account: &TestAccount, url: &str, events: &[&str]) -> (i64, String) {
    let (status, body, _) = app
        .post(
            &account.key,
            "/api/user/webhooks",
            &json!({ "url": url, "events": events }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let secret = body["data"]["secret"].as_str().unwrap().to_owned();
    (body["data"]["id"].as_i64().unwrap(), secret)
}

/// Records an event of `conversation` (created for the account's first assistant if it does
/// not exist), as the engine would; returns its id.
async fn emit(app: &TestApp, account: &TestAccount, conversation: Uuid, kind: EventType) -> i64 {
    use diesel_async::RunQueryDsl;
    let mut conn = app.db.connect().await;
    let account_id = account.id;
    let has_assistant = diesel::sql_query("SELECT 1 FROM assistants WHERE account_id = $1")
        .bind::<diesel::sql_types::Int8, _>(account_id)
        .execute(&mut conn)
        .await
        .unwrap()
        > 0;
    if !has_assistant {
        app.assistant(account, &json!({ "name": "Webhooks" })).await;
    }
    diesel::sql_query(
        "INSERT INTO conversations (id, account_id, assistant_id, customer_identifier)
         SELECT $1, $2, min(id), $1::text FROM assistants WHERE account_id = $2
         ON CONFLICT DO NOTHING",
    )
    .bind::<diesel::sql_types::Uuid, _>(conversation)
    .bind::<diesel::sql_types::Int8, _>(account_id)
    .execute(&mut conn)
    .await
    .unwrap();
    conn.transaction(async |conn| {
        event::insert(conn, &NewEvent::about(account_id, kind, conversation)).await
    })
    .await
    .unwrap()
}

/// A receiver that fails while `failing` says so for the events it names.
struct Receiver {
    /// Fails these event ids (all: `None`) with this status while `failing` holds.
    failing_events: Option<Vec<i64>>,
    failing: Arc<AtomicBool>,
    status: u16,
}

impl Respond for Receiver {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let event_id = body["data"]["id"].as_i64().unwrap();
        let named = self
            .failing_events
            .as_ref()
            .is_none_or(|ids| ids.contains(&event_id));
        if named && self.failing.load(Ordering::SeqCst) {
            ResponseTemplate::new(self.status)
        } else {
            ResponseTemplate::new(204)
        }
    }
}

/// A receiver at `/hook`; returns it, its URL and the switch that makes it fail.
async fn receiver(
    failing_events: Option<Vec<i64>>,
    status: u16,
    failing: bool,
) -> (MockServer, String, Arc<AtomicBool>) {
    let server = MockServer::start().await;
    let switch = Arc::new(AtomicBool::new(failing));
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(Receiver {
            failing_events,
            failing: switch.clone(),
            status,
        })
        .mount(&server)
        .await;
    let url = format!("{}/hook", server.uri());
    (server, url, switch)
}

/// The event ids of the deliveries received, in arrival order, with their `webhook-id`.
async fn arrivals(server: &MockServer) -> Vec<(i64, String)> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            let id = r
                .headers
                .get("webhook-id")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            (body["data"]["id"].as_i64().unwrap(), id)
        })
        .collect()
}

async fn arrived(server: &MockServer, event_id: i64) -> usize {
    arrivals(server)
        .await
        .iter()
        .filter(|(id, _)| *id == event_id)
        .count()
}

async fn delivered(app: &TestApp, event_id: i64) -> bool {
    deliveries_where(app, event_id, "delivered_at IS NOT NULL").await
}

async fn failure_recorded(app: &TestApp, event_id: i64) -> bool {
    deliveries_where(app, event_id, "last_status = 500").await
}

/// Whether a delivery of `event_id` matches `condition`.
async fn deliveries_where(app: &TestApp, event_id: i64, condition: &str) -> bool {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::Int8)]
        n: i64,
    }
    let mut conn = app.db.connect().await;
    let count: Count = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM webhook_deliveries WHERE event_id = $1 AND {condition}"
    ))
    .bind::<diesel::sql_types::Int8, _>(event_id)
    .get_result(&mut conn)
    .await
    .unwrap();
    count.n > 0
}

#[tokio::test]
async fn webhooks_are_created_listed_and_deleted_per_account() {
    let app = spawn().await;
    let account = app.db_account("1").await;
    let other = app.db_account("1").await;
    let (id, secret) = create(
        &app,
        &account,
        "https://crm.example.com/hook",
        &["message.received", "ai.disabled"],
    )
    .await;
    let key = secret.strip_prefix("whsec_").unwrap();
    use base64::Engine;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(key)
            .unwrap()
            .len(),
        32
    );

    let (status, list, _) = app.get(&account.key, "/api/user/webhooks").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let listed = &list["data"][0];
    assert_eq!(listed["id"], id);
    assert_eq!(listed["url"], "https://crm.example.com/hook");
    assert_eq!(listed["events"], json!(["message.received", "ai.disabled"]));
    assert_eq!(listed["enabled"], true);
    assert_eq!(listed["disabled_at"], Value::Null);
    assert!(listed.get("secret").is_none(), "{listed}");

    let (_, theirs, _) = app.get(&other.key, "/api/user/webhooks").await;
    assert_eq!(theirs["data"], json!([]));
    let path = format!("/api/user/webhooks/{id}");
    let (status, body, _) = app
        .request(&app.base, reqwest::Method::DELETE, &other.key, &path, None)
        .await;
    assert_error(status, &body, 404, "WEBHOOK_NOT_FOUND");

    let (status, body, _) = app
        .request(
            &app.base,
            reqwest::Method::DELETE,
            &account.key,
            &path,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, list, _) = app.get(&account.key, "/api/user/webhooks").await;
    assert_eq!(list["data"], json!([]));
    for gone in [path.as_str(), "/api/user/webhooks/abc"] {
        let (status, body, _) = app
            .request(&app.base, reqwest::Method::DELETE, &account.key, gone, None)
            .await;
        assert_error(status, &body, 404, "WEBHOOK_NOT_FOUND");
    }
}

#[tokio::test]
async fn bad_webhooks_are_refused_field_by_field() {
    let app = spawn().await;
    let account = app.db_account("1").await;
    for (body, fields) in [
        (json!({}), vec!["events", "url"]),
        (
            json!({ "url": "ftp://crm.example.com", "events": ["ai.enabled"] }),
            vec!["url"],
        ),
        (
            json!({ "url": format!("https://crm.example.com/{}", "a".repeat(2048)), "events": ["ai.enabled"] }),
            vec!["url"],
        ),
        (
            json!({ "url": "https://crm.example.com", "events": [] }),
            vec!["events"],
        ),
        (
            json!({ "url": "https://crm.example.com", "events": ["ai.enabled", "ai.enabled", "order.paid"] }),
            vec!["events.1", "events.2"],
        ),
    ] {
        let (status, answer, _) = app.post(&account.key, "/api/user/webhooks", &body).await;
        assert_error(status, &answer, 422, "VALIDATION_ERROR");
        let named: Vec<&str> = answer["errors"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(named, fields, "{body}: {answer}");
    }
}

#[tokio::test]
async fn an_account_has_at_most_twenty_webhooks_and_a_key_creates_one() {
    let app = spawn().await;
    let account = app.db_account("1").await;
    let body = json!({ "url": "https://crm.example.com/hook", "events": ["reply.created"] });
    let (status, first, headers) = app
        .post_keyed(&account.key, "hook-1", "/api/user/webhooks", &body)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert!(headers.get("idempotent-replayed").is_none());
    let (status, again, headers) = app
        .post_keyed(&account.key, "hook-1", "/api/user/webhooks", &body)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(headers["idempotent-replayed"], "true");
    // The same answer, its secret masked (the secret is shown once: see losses.rs).
    let mut masked = first.clone();
    let secret = first["data"]["secret"].as_str().unwrap();
    masked["data"]["secret"] = format!("****{}", &secret[secret.len() - 4..]).into();
    assert_eq!(again, masked);
    for _ in 1..20 {
        create(
            &app,
            &account,
            "https://crm.example.com/hook",
            &["reply.created"],
        )
        .await;
    }
    let (status, answer, _) = app.post(&account.key, "/api/user/webhooks", &body).await;
    assert_error(status, &answer, 422, "LIMIT_EXCEEDED");
    let (_, list, _) = app.get(&account.key, "/api/user/webhooks").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 20);
}

#[tokio::test]
async fn private_addresses_are_refused_naming_the_setting() {
    // No exceptions: the defaults.
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://10.0.0.5/hook",
        "http://[::1]/hook",
        "http://localhost:9/hook",
    ] {
        let (status, answer, _) = app
            .post(
                &account.key,
                "/api/user/webhooks",
                &json!({ "url": url, "events": ["ai.enabled"] }),
            )
            .await;
        assert_error(status, &answer, 422, "VALIDATION_ERROR");
        let message = answer["errors"]["url"][0].as_str().unwrap();
        assert!(
            message.contains("ANYREPLY_OUTBOUND_ALLOWED_HOSTS"),
            "{url}: {message}"
        );
    }
}

#[tokio::test]
async fn a_delivery_is_signed_and_verifies() {
    let app = spawn().await;
    let account = app.db_account("1").await;
    let (server, url, _) = receiver(None, 500, false).await;
    let (_, secret) = create(&app, &account, &url, &["message.received"]).await;
    let conversation = Uuid::new_v4();
    // Not a type the webhook wants: never sent.
    emit(&app, &account, conversation, EventType::AiDisabled).await;
    let event_id = emit(&app, &account, conversation, EventType::MessageReceived).await;
    eventually("the delivery", || async {
        arrived(&server, event_id).await == 1
    })
    .await;

    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.headers["content-type"], "application/json");
    assert_eq!(
        request.headers["webhook-id"],
        format!("evt_{}_{event_id}", account.id).as_str()
    );
    let timestamp: i64 = request.headers["webhook-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((timestamp - chrono::Utc::now().timestamp()).abs() < 60);
    assert!(
        request.headers["webhook-signature"]
            .to_str()
            .unwrap()
            .starts_with("v1,")
    );
    verify(&secret, &request.headers, &request.body).unwrap();
    assert!(verify(&secret, &request.headers, b"{}").is_err());

    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["type"], "message.received");
    assert_eq!(body["data"]["type"], "message.received");
    assert_eq!(body["data"]["conversation_id"], conversation.to_string());
    assert_eq!(
        body["data"]["customer_identifier"],
        conversation.to_string()
    );
    assert_eq!(body["timestamp"], body["data"]["created_at"]);
    chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap()).unwrap();
}

#[tokio::test]
async fn a_failed_delivery_is_retried_with_the_same_id_until_it_succeeds() {
    let app = spawn().await;
    let account = app.db_account("1").await;
    let (server, url, failing) = receiver(None, 500, true).await;
    let (_, secret) = create(&app, &account, &url, &["reply.created"]).await;
    let conversation = Uuid::new_v4();
    let event_id = emit(&app, &account, conversation, EventType::ReplyCreated).await;
    eventually("three attempts", || async {
        arrived(&server, event_id).await >= 3
    })
    .await;
    failing.store(false, Ordering::SeqCst);
    eventually("the delivery", || async { delivered(&app, event_id).await }).await;

    // The next event of the conversation goes only after the first was delivered: once it has
    // arrived, no attempt of the first can still come.
    let next = emit(&app, &account, conversation, EventType::ReplyCreated).await;
    eventually("the next event", || async {
        arrived(&server, next).await == 1
    })
    .await;
    let requests = server.received_requests().await.unwrap();
    let attempts: Vec<_> = requests
        .iter()
        .filter(|r| r.headers["webhook-id"] == format!("evt_{}_{event_id}", account.id).as_str())
        .collect();
    assert!(attempts.len() >= 4, "{} attempts", attempts.len());
    assert_eq!(attempts.len() + 1, requests.len());
    for attempt in attempts {
        verify(&secret, &attempt.headers, &attempt.body).unwrap();
    }
}

#[tokio::test]
async fn a_failing_conversation_waits_and_holds_up_no_other() {
    let app = spawn().await;
    let account = app.db_account("1").await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let first_of_a = emit(&app, &account, a, EventType::MessageReceived).await;
    let (server, url, failing) = receiver(Some(vec![first_of_a + 1]), 503, true).await;
    // Created after `first_of_a`: only later events are delivered.
    create(&app, &account, &url, &["message.received", "reply.created"]).await;
    let a1 = emit(&app, &account, a, EventType::MessageReceived).await;
    assert_eq!(a1, first_of_a + 1);
    let a2 = emit(&app, &account, a, EventType::ReplyCreated).await;
    let b1 = emit(&app, &account, b, EventType::MessageReceived).await;
    let b2 = emit(&app, &account, b, EventType::ReplyCreated).await;
    eventually("conversation B's events", || async {
        arrived(&server, b2).await == 1 && arrived(&server, a1).await >= 2
    })
    .await;
    assert_eq!(arrived(&server, b1).await, 1);
    assert_eq!(
        arrived(&server, a2).await,
        0,
        "A's second event went before its first"
    );
    assert_eq!(arrived(&server, first_of_a).await, 0);

    failing.store(false, Ordering::SeqCst);
    eventually("conversation A's second event", || async {
        arrived(&server, a2).await == 1
    })
    .await;
    let order: Vec<i64> = arrivals(&server)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let last_a1 = order.iter().rposition(|&id| id == a1).unwrap();
    let a2_at = order.iter().position(|&id| id == a2).unwrap();
    assert!(last_a1 < a2_at, "{order:?}");
    let b1_at = order.iter().position(|&id| id == b1).unwrap();
    let b2_at = order.iter().position(|&id| id == b2).unwrap();
    assert!(b1_at < b2_at, "{order:?}");
}

#[tokio::test]
async fn pending_deliveries_survive_a_restart_and_none_goes_twice() {
    // Retries far enough apart that no attempt is in flight when the server stops (one would
    // hold its delivery for a lease).
    let mut app = TestApp::spawn_with(|settings| {
        fast_webhooks(settings);
        settings.webhook_retry_schedule = vec![Duration::from_millis(500); 50];
    })
    .await;
    let account = app.db_account("1").await;
    let (server, url, failing) = receiver(None, 500, true).await;
    create(&app, &account, &url, &["operator.message"]).await;
    let conversation = Uuid::new_v4();
    let first = emit(&app, &account, conversation, EventType::OperatorMessage).await;
    eventually("a failed attempt recorded", || async {
        failure_recorded(&app, first).await
    })
    .await;
    app.stop_servers().await;
    let attempts_before = arrived(&server, first).await;

    // While no server runs: the receiver recovers, and more events happen.
    failing.store(false, Ordering::SeqCst);
    let second = emit(&app, &account, conversation, EventType::OperatorMessage).await;
    let elsewhere = emit(&app, &account, Uuid::new_v4(), EventType::OperatorMessage).await;
    assert_eq!(arrived(&server, second).await, 0);

    let settings = app.settings.clone();
    app.start_server(settings).await;
    eventually("everything pending", || async {
        arrived(&server, second).await == 1 && arrived(&server, elsewhere).await == 1
    })
    .await;
    assert!(delivered(&app, first).await);
    // The restarted server delivered the first once: the one attempt that succeeded.
    let order = arrivals(&server).await;
    assert_eq!(
        arrived(&server, first).await,
        attempts_before + 1,
        "{order:?}"
    );
    let first_at = order.iter().rposition(|(id, _)| *id == first).unwrap();
    let second_at = order.iter().position(|(id, _)| *id == second).unwrap();
    assert!(first_at < second_at, "{order:?}");
}

#[tokio::test]
async fn two_processes_send_each_event_once() {
    let mut app = spawn().await;
    let settings = app.settings.clone();
    app.start_server(settings).await;
    let account = app.db_account("1").await;
    let server = MockServer::start().await;
    // Slow enough that both processes are at work at once.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(30)))
        .mount(&server)
        .await;
    create(
        &app,
        &account,
        &format!("{}/hook", server.uri()),
        &["message.received"],
    )
    .await;
    let mut events = Vec::new();
    for _ in 0..5 {
        for _ in 0..8 {
            events.push(emit(&app, &account, Uuid::new_v4(), EventType::MessageReceived).await);
        }
    }
    let last = *events.last().unwrap();
    eventually("every event", || async { delivered(&app, last).await }).await;
    for &event_id in &events {
        eventually("each delivery", || async {
            delivered(&app, event_id).await
        })
        .await;
    }
    let mut arrived_ids: Vec<i64> = arrivals(&server)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    arrived_ids.sort_unstable();
    assert_eq!(arrived_ids, events);
}

#[tokio::test]
async fn a_webhook_failing_past_the_window_is_disabled() {
    let app = TestApp::spawn_with(|settings| {
        fast_webhooks(settings);
        settings.webhook_failure_window = Duration::from_millis(500);
    })
    .await;
    let account = app.db_account("1").await;
    let (server, url, _) = receiver(None, 500, true).await;
    let (id, _) = create(&app, &account, &url, &["ai.enabled"]).await;
    let event_id = emit(&app, &account, Uuid::new_v4(), EventType::AiEnabled).await;
    let disabled = || async {
        let (_, list, _) = app.get(&account.key, "/api/user/webhooks").await;
        list["data"][0]["enabled"] == false
    };
    eventually("the webhook disabled", disabled).await;
    let (_, list, _) = app.get(&account.key, "/api/user/webhooks").await;
    let webhook = &list["data"][0];
    assert_eq!(webhook["id"], id);
    assert!(webhook["disabled_at"].is_string(), "{webhook}");
    let reason = webhook["disabled_reason"].as_str().unwrap();
    assert!(
        reason.contains("failed for") && reason.contains("HTTP 500"),
        "{reason}"
    );
    let attempts = arrived(&server, event_id).await;
    assert!(attempts >= 2, "{attempts}");

    // Disabled, it gets nothing more.
    let later = emit(&app, &account, Uuid::new_v4(), EventType::AiEnabled).await;
    let other = app.db_account("1").await;
    let (probe, probe_url, _) = receiver(None, 500, false).await;
    create(&app, &other, &probe_url, &["ai.enabled"]).await;
    let probe_event = emit(&app, &other, Uuid::new_v4(), EventType::AiEnabled).await;
    eventually("another account's delivery", || async {
        arrived(&probe, probe_event).await == 1
    })
    .await;
    assert_eq!(arrived(&server, later).await, 0);
    assert_eq!(arrived(&server, event_id).await, attempts);
}

#[tokio::test]
async fn a_receiver_answering_gone_disables_its_webhook_at_once() {
    let app = spawn().await;
    let account = app.db_account("1").await;
    let (server, url, _) = receiver(None, 410, true).await;
    create(&app, &account, &url, &["ai.disabled"]).await;
    let event_id = emit(&app, &account, Uuid::new_v4(), EventType::AiDisabled).await;
    eventually("the webhook disabled", || async {
        let (_, list, _) = app.get(&account.key, "/api/user/webhooks").await;
        list["data"][0]["enabled"] == false
    })
    .await;
    let (_, list, _) = app.get(&account.key, "/api/user/webhooks").await;
    assert_eq!(
        list["data"][0]["disabled_reason"],
        "The receiver answered 410 Gone."
    );
    assert_eq!(arrived(&server, event_id).await, 1);
}

#[tokio::test]
async fn receivers_that_never_answer_hold_up_no_other_accounts_deliveries() {
    // Long enough that no stuck send ends during the test.
    let app = TestApp::spawn_with(|settings| {
        fast_webhooks(settings);
        settings.webhook_timeout = Duration::from_secs(120);
    })
    .await;
    // Accepts every connection and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/hook", silent.local_addr().unwrap());
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counting = accepted.clone();
    let _silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
            counting.fetch_add(1, Ordering::SeqCst);
        }
    });
    let stuck = app.db_account("1").await;
    for _ in 0..20 {
        create(&app, &stuck, &silent_url, &["message.received"]).await;
    }
    for _ in 0..10 {
        emit(&app, &stuck, Uuid::new_v4(), EventType::MessageReceived).await;
    }
    // Every stuck webhook sends all it may at once.
    let in_flight = 20 * anyreply_server::webhooks::worker::IN_FLIGHT_PER_WEBHOOK as usize;
    eventually("the stuck webhooks' sends", || async {
        accepted.load(Ordering::SeqCst) >= in_flight
    })
    .await;

    let other = app.db_account("1").await;
    let (server, url, _) = receiver(None, 204, false).await;
    create(&app, &other, &url, &["message.received"]).await;
    let event_id = emit(&app, &other, Uuid::new_v4(), EventType::MessageReceived).await;
    let arrival = tokio::time::timeout(Duration::from_secs(5), async {
        while arrived(&server, event_id).await == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        arrival.is_ok(),
        "another account's delivery waited for receivers that never answer"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        in_flight,
        "a stuck webhook sent more than its share at once"
    );
}

#[tokio::test]
async fn with_nothing_due_the_worker_is_told_to_sleep() {
    use anyreply_server::models::webhook_delivery;
    let app = spawn().await;
    let account = app.db_account("1").await;
    let mut conn = app.db.connect().await;
    let outlook = webhook_delivery::outlook(&mut conn, &[]).await.unwrap();
    assert_eq!(outlook.behind, Vec::<i64>::new());
    assert_eq!(outlook.next_due_in(), None, "no webhook: nothing is due");

    let (server, url, _) = receiver(None, 204, false).await;
    let (webhook_id, _) = create(&app, &account, &url, &["message.received"]).await;
    let event_id = emit(&app, &account, Uuid::new_v4(), EventType::MessageReceived).await;
    eventually("the delivery", || async { delivered(&app, event_id).await }).await;
    assert_eq!(arrived(&server, event_id).await, 1);
    let outlook = webhook_delivery::outlook(&mut conn, &[]).await.unwrap();
    assert_eq!(outlook.behind, Vec::<i64>::new());
    assert_eq!(outlook.next_due_in(), None, "all delivered: nothing is due");

    // A retry due in a minute is waited for; a webhook sending all it may is not looked at.
    {
        use diesel_async::RunQueryDsl;
        diesel::sql_query(
            "UPDATE webhook_deliveries SET delivered_at = NULL,
                 next_attempt_at = now() + interval '60 seconds'",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let due = webhook_delivery::outlook(&mut conn, &[])
        .await
        .unwrap()
        .next_due_in()
        .unwrap();
    assert!(
        due > Duration::from_secs(50) && due <= Duration::from_secs(60),
        "{due:?}"
    );
    let outlook = webhook_delivery::outlook(&mut conn, &[webhook_id])
        .await
        .unwrap();
    assert_eq!(outlook.next_due_in(), None);
}
