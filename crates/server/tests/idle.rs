//! A server with no traffic costs nothing: its background loops sleep until they have work.
//!
//! A test binary of its own: `cargo test` runs each binary alone, so nothing else the tests do
//! shares this process or loads the machine while it counts the server's transactions.

#![allow(clippy::unwrap_used)]

// The API tests' fixtures; this binary uses a few of them.
#[allow(dead_code, unreachable_pub, unused_imports)]
#[path = "api/util.rs"]
mod util;

use std::time::Duration;

use anyreply_server::testing::eventually;
use anyreply_server::tools::guard::AddressPolicy;
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use reqwest::StatusCode;
use serde_json::json;

use util::TestApp;

/// Each new connection's own setup: diesel sends `SET TIME ZONE` and `SET CLIENT_ENCODING`,
/// each a transaction. How many connections a server opens at start depends on how its
/// tasks overlap (more on a loaded machine), which is not what an idle server costs.
const SETUP_TRANSACTIONS_PER_SESSION: i64 = 2;

/// Transactions PostgreSQL counted for this test's database, less the connections' own setup,
/// once every server connection to it has closed (a backend's counts are flushed when it
/// exits, not at each commit). Asked from the cluster's `postgres` database, so that the
/// asking, which waits longer on a loaded machine, is not counted with the server's
/// transactions.
async fn transactions_so_far(app: &TestApp) -> i64 {
    use diesel_async::AsyncConnection;
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::Int8)]
        n: i64,
    }
    let mut url = url::Url::parse(app.db.url()).unwrap();
    let database = url.path().trim_start_matches('/').to_owned();
    url.set_path("/postgres");
    let mut conn = diesel_async::AsyncPgConnection::establish(url.as_str())
        .await
        .unwrap();
    for _ in 0..500 {
        let others: Count =
            diesel::sql_query("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1")
                .bind::<diesel::sql_types::Text, _>(&database)
                .get_result(&mut conn)
                .await
                .unwrap();
        if others.n == 0 {
            break;
        }

        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A backend leaves `pg_stat_activity` a moment before its last counts are flushed: read
    // until two readings agree.
    let mut last = None;
    loop {
        let count: Count = diesel::sql_query(
            "SELECT xact_commit + xact_rollback - $2 * sessions AS n
             FROM pg_stat_database WHERE datname = $1",
        )
        .bind::<diesel::sql_types::Text, _>(&database)
        .bind::<diesel::sql_types::Int8, _>(SETUP_TRANSACTIONS_PER_SESSION)
        .get_result(&mut conn)
        .await
        .unwrap();
        if last == Some(count.n) {
            return count.n;
        }
        last = Some(count.n);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The transactions a server makes from its start to its stop, `idle` after it began serving,
/// with no traffic. It serves once its start-up is over and its loops are started, which takes
/// longer on a loaded machine: timed from its start, a short run could end before its loops'
/// first looks, and a long one then count them as idle cost.
async fn transactions_of_a_server_idle_for(app: &mut TestApp, idle: Duration) -> i64 {
    let before = transactions_so_far(app).await;
    let base = app.start_server(app.settings.clone()).await;
    let http = app.http.clone();
    eventually("the server serving", || async {
        http.get(format!("{base}/health"))
            .send()
            .await
            .is_ok_and(|response| response.status().is_success())
    })
    .await;
    tokio::time::sleep(idle).await;
    app.stop_servers().await;
    transactions_so_far(app).await - before
}

#[tokio::test]
async fn an_idle_server_makes_at_most_two_transactions_a_second() {
    let mut app = TestApp::spawn_with(|settings| {
        settings.outbound_allowed_hosts = AddressPolicy::parse("127.0.0.1").unwrap();
    })
    .await;
    // Something for every loop to look at: a webhook with a delivered event, a conversation.
    let account = app.db_account("10").await;
    let receiver = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(204))
        .mount(&receiver)
        .await;
    let (status, body, _) = app
        .post(
            &account.key,
            "/api/user/webhooks",
            &json!({ "url": format!("{}/hook", receiver.uri()), "events": ["reply.created"] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let assistant = app.assistant(&account, &json!({ "name": "Idle" })).await;
    let (status, body) = app.reply(&account.key, assistant, "c1", "Hello").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for _ in 0..500 {
        if !receiver.received_requests().await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(receiver.received_requests().await.unwrap().len(), 1);
    app.stop_servers().await;

    // What starting and stopping cost, then what six more idle seconds add. The short run
    // lasts long enough for every loop's first look to be over, even on a loaded machine:
    // one that fell after it would count as idle cost.
    let short = transactions_of_a_server_idle_for(&mut app, Duration::from_secs(3)).await;
    let long = transactions_of_a_server_idle_for(&mut app, Duration::from_secs(9)).await;
    let per_second = (long - short) as f64 / 6.0;
    assert!(
        per_second <= 2.0,
        "an idle server made {per_second:.1} transactions a second ({short} in 3 s, {long} in 9 s)"
    );
}
