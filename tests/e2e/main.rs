//! End to end: the real server on a real PostgreSQL, driven through the real SDK.

#![allow(clippy::unwrap_used, unreachable_pub, missing_debug_implementations)]

mod bridges;
mod code_shape;
mod console;
mod docs;
mod endpoints;
mod inbox;
mod proxy;
mod retries;
mod webhooks;
mod widget;

use std::time::Duration;

use anyreply_client::{Client, RetryPolicy};
use anyreply_core::Money;
use anyreply_server::Settings;
use anyreply_server::models::{account, api_key};
use anyreply_server::pricing::{ModelPrice, Pricing};
use anyreply_server::testing::{EchoModel, TestDb, spawn_server, test_settings};
use anyreply_server::tools::guard::AddressPolicy;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer};

/// A server with an echo model (replies `echo: <message>` after `model_delay`), one account
/// with 10.00 and its key.
pub struct Stack {
    pub db: TestDb,
    pub llm: MockServer,
    pub base: String,
    pub account_id: i64,
    pub key: String,
    _server: tokio::task::JoinHandle<()>,
}

impl Stack {
    pub async fn start(model_delay: Duration) -> Self {
        let db = TestDb::new().await;
        let llm = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(EchoModel { delay: model_delay })
            .mount(&llm)
            .await;
        let settings = Settings {
            // Webhook receivers are `wiremock` servers on loopback.
            outbound_allowed_hosts: AddressPolicy::parse("127.0.0.1").unwrap(),
            // A reply costs 0.01, flat.
            pricing: Pricing {
                per_reply: "0.01".parse().unwrap(),
                default_price: ModelPrice {
                    input_per_mtok: Money::ZERO,
                    output_per_mtok: Money::ZERO,
                },
                per_model: Default::default(),
            },
            ..test_settings(db.url(), &format!("{}/v1", llm.uri()))
        };
        let (base, server) = spawn_server(settings).await;
        let mut conn = db.connect().await;
        let account_id = account::create(&mut conn, "Acme", None, "10".parse().unwrap())
            .await
            .unwrap();
        let key = api_key::create(&mut conn, account_id).await.unwrap().key;
        Self {
            db,
            llm,
            base,
            account_id,
            key,
            _server: server,
        }
    }

    /// An SDK client of this server (or of `base`, such as a proxy in front of it).
    pub fn client(&self, base: &str, policy: RetryPolicy) -> Client {
        Client::builder()
            .base_url(base)
            .api_key(&self.key)
            .timeout(Duration::from_secs(10))
            .retry_policy(policy)
            .build()
            .unwrap()
    }

    pub async fn balance(&self) -> Money {
        let mut conn = self.db.connect().await;
        account::find(&mut conn, self.account_id)
            .await
            .unwrap()
            .unwrap()
            .into_me()
            .total_balance
    }

    pub async fn model_calls(&self) -> usize {
        self.llm.received_requests().await.unwrap().len()
    }

    pub async fn messages(&self) -> i64 {
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::Int8)]
            n: i64,
        }
        let mut conn = self.db.connect().await;
        diesel::sql_query("SELECT count(*) AS n FROM messages")
            .get_result::<Count>(&mut conn)
            .await
            .unwrap()
            .n
    }
}

/// Short waits, so retries do not slow the tests down.
pub fn quick_retries() -> RetryPolicy {
    RetryPolicy::default().with_backoff(Duration::from_millis(10), Duration::from_millis(50))
}
