use futures::future::join_all;
use serde_json::json;
use wiremock::ResponseTemplate;

use crate::util::{TestApp, money};

#[tokio::test]
async fn each_reply_is_priced_recorded_summed_and_deducted() {
    let app = TestApp::spawn_with(|s| s.pricing.per_reply = money("0.05")).await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    // 1000 prompt tokens at 1/M + 500 completion tokens at 2/M + 0.05 flat = 0.052
    let (_, reply) = app.reply(&account.key, assistant, "c", "one").await;
    app.reply(&account.key, assistant, "c", "two").await;
    assert_eq!(app.balance(&account).await, money("9.896"));

    let id = reply["conversation_id"].as_str().unwrap();
    let (_, history, _) = app
        .get(&account.key, &format!("/api/conversations/{id}"))
        .await;
    assert_eq!(history["history"][1]["cost"], 0.052);
    assert_eq!(history["history"][0].get("cost"), None);
    assert_eq!(history["total_cost"], 0.104);
    let (_, list, _) = app.get(&account.key, "/api/user/conversations").await;
    assert_eq!(list["data"][0]["total_cost"], 0.104);
    let (_, me, _) = app.get(&account.key, "/api/user/me").await;
    assert_eq!(me["total_balance"], 9.896);
}

#[tokio::test]
async fn per_model_prices_apply() {
    let app = TestApp::spawn_with(|s| {
        let price = anyreply_server::pricing::ModelPrice {
            input_per_mtok: money("10"),
            output_per_mtok: money("20"),
        };
        s.pricing.per_model.insert("gpt-4o".into(), price);
    })
    .await;
    let account = app.db_account("10").await;
    let assistant = app
        .assistant(&account, &json!({ "name": "A", "llm_model": "gpt-4o" }))
        .await;
    app.reply(&account.key, assistant, "c", "one").await;
    // 1000 * 10/M + 500 * 20/M = 0.02
    assert_eq!(app.balance(&account).await, money("9.98"));
}

#[tokio::test]
async fn an_account_that_cannot_pay_gets_402_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let account = app.db_account("0.005").await; // below the 0.01 reservation
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let (status, body) = app.reply(&account.key, assistant, "c", "hi").await;
    crate::util::assert_error(status, &body, 402, "INSUFFICIENT_BALANCE");
    // A newcomer learns how to fix it.
    assert!(
        body["message"].as_str().unwrap().contains("account top-up"),
        "{body}"
    );
    assert_eq!(app.llm_requests().await.len(), 0);
    let (_, list, _) = app.get(&account.key, "/api/user/conversations").await;
    assert_eq!(list["data"], json!([]));
    assert_eq!(app.balance(&account).await, money("0.005"));
}

#[tokio::test]
async fn fifty_concurrent_calls_on_a_balance_for_ten_get_exactly_ten_replies() {
    let app = TestApp::spawn_with_model_delay(std::time::Duration::from_millis(100), |s| {
        s.pricing = crate::util::test_pricing();
        s.pricing.default_price.input_per_mtok = money("0");
        s.pricing.default_price.output_per_mtok = money("0");
        s.pricing.per_reply = money("1");
    })
    .await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let calls = (0..50).map(|n| {
        let (app, key) = (&app, &account.key);
        async move {
            app.reply(key, assistant, &format!("customer-{}", n % 7), "hi")
                .await
        }
    });
    let results = join_all(calls).await;
    let ok = results
        .iter()
        .filter(|(status, _)| status.as_u16() == 200)
        .count();
    let refused = results
        .iter()
        .filter(|(status, body)| {
            status.as_u16() == 402 && body["error_code"] == "INSUFFICIENT_BALANCE"
        })
        .count();
    assert_eq!((ok, refused), (10, 40));
    assert_eq!(app.balance(&account).await, money("0"));
    assert_eq!(app.llm_requests().await.len(), 10);
}

#[tokio::test]
async fn the_balance_never_goes_below_zero() {
    let app = TestApp::spawn().await;
    let account = app.db_account("0.02").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    // The provider reports far more tokens than the reservation covers (1M + 1M = 3.00).
    let mut answer = crate::util::chat_completion("costly");
    answer["usage"] = json!({ "prompt_tokens": 1_000_000, "completion_tokens": 1_000_000, "total_tokens": 2_000_000 });
    app.model_answers(ResponseTemplate::new(200).set_body_json(answer))
        .await;
    let (status, reply) = app.reply(&account.key, assistant, "c", "hi").await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(app.balance(&account).await, money("0"));
    let id = reply["conversation_id"].as_str().unwrap();
    let (_, history, _) = app
        .get(&account.key, &format!("/api/conversations/{id}"))
        .await;
    assert_eq!(history["history"][1]["cost"], 0.02);
}
