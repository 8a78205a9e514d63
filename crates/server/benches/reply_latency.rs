//! How long generate-reply takes for conversations of 10, 1,000 and 10,000 messages.
//!
//! Needs PostgreSQL (as the tests do). Run: `cargo bench -p anyreply-server --bench reply_latency`
//!
//! The model is a local `wiremock` echo with no delay, so the figures are the server's own
//! cost: admission, turn-taking, history loading, settlement.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use anyreply_server::config::Settings;
use anyreply_server::models::{account, api_key, assistant};
use anyreply_server::testing::{EchoModel, TestDb, spawn_server};
use diesel_async::RunQueryDsl;
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer};

const SAMPLES: usize = 50;

#[tokio::main]
async fn main() {
    let db = TestDb::new().await;
    let llm = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(EchoModel {
            delay: Duration::ZERO,
        })
        .mount(&llm)
        .await;
    let settings = Settings {
        database_url: db.url().to_owned(),
        llm_base_url: format!("{}/v1", llm.uri()).parse().unwrap(),
        rate_limit_per_minute: 1_000_000,
        ..Settings::default()
    };
    let budget = settings.context_token_budget;
    let (base, _server) = spawn_server(settings).await;

    let mut conn = db.connect().await;
    let account_id = account::create(&mut conn, "Bench", None, "1000000".parse().unwrap())
        .await
        .unwrap();
    let key = api_key::create(&mut conn, account_id).await.unwrap().key;
    let assistant = assistant::create(&mut conn, account_id, Default::default(), "gpt-4o-mini")
        .await
        .unwrap()
        .id;
    let http = reqwest::Client::new();
    let reply = |customer: &'static str| {
        let (http, base, key) = (http.clone(), base.clone(), key.clone());
        async move {
            let body = json!({ "assistant_id": assistant, "customer_identifier": customer, "message": "How are you?" });
            let started = Instant::now();
            let response = http
                .post(format!("{base}/api/ai/generate-reply"))
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.bytes().await.unwrap();
            started.elapsed()
        }
    };

    // Open the conversations, then grow two of them: 1,000 messages already fill the token
    // budget, so 10,000 must cost the same if history loading reads only what it needs.
    for (customer, earlier) in [("short", 8), ("thousand", 998), ("ten-thousand", 9_998)] {
        reply(customer).await;
        grow(&mut conn, customer, earlier).await;
    }
    for _ in 0..4 {
        reply("short").await; // warm up
    }

    println!("generate-reply latency, {SAMPLES} sequential calls each, token budget {budget}:");
    for (label, customer) in [
        ("conversation of 10 messages", "short"),
        ("conversation of 1,000 messages", "thousand"),
        ("conversation of 10,000 messages", "ten-thousand"),
    ] {
        let mut samples = Vec::with_capacity(SAMPLES);
        for _ in 0..SAMPLES {
            samples.push(reply(customer).await);
        }
        samples.sort();
        println!(
            "  {label:34} median {:>7.2?}  p95 {:>7.2?}",
            samples[SAMPLES / 2],
            samples[SAMPLES * 95 / 100]
        );
    }
}

/// Adds `count` earlier messages (alternating customer and reply) to `customer`'s conversation.
async fn grow(conn: &mut diesel_async::AsyncPgConnection, customer: &str, count: i32) {
    diesel::sql_query(
        "INSERT INTO messages (id, conversation_id, turn_id, role, content)
         SELECT id, (SELECT id FROM conversations WHERE customer_identifier = $1),
                CASE WHEN n % 2 = 1 THEN id ELSE id - 1 END,
                CASE WHEN n % 2 = 1 THEN 'user' ELSE 'assistant' END,
                'A line of earlier conversation, number ' || n
         FROM (SELECT n, nextval('messages_id_seq') AS id FROM generate_series(1, $2) AS n) AS rows",
    )
    .bind::<diesel::sql_types::Text, _>(customer)
    .bind::<diesel::sql_types::Int4, _>(count)
    .execute(conn)
    .await
    .unwrap();
}
