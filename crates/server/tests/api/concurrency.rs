//! One conversation per customer, one reply at a time, in arrival order, across processes;
//! no connection held while the model thinks.

use std::time::Duration;

use futures::future::join_all;
use serde_json::{Value, json};

use crate::util::TestApp;

/// Each prompt must hold every earlier message and its reply: the n-th prompt (in the order
/// the model received them) is n user/assistant pairs followed by the new message.
fn assert_prompts_grow_one_exchange_at_a_time(prompts: &[Value]) {
    for (n, prompt) in prompts.iter().enumerate() {
        let messages = prompt["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 2 * n + 1, "prompt {n}: {messages:?}");
        for pair in messages[..2 * n].chunks(2) {
            assert_eq!(pair[0]["role"], "user");
            assert_eq!(pair[1]["role"], "assistant");
            assert_eq!(
                pair[1]["content"],
                format!("echo: {}", pair[0]["content"].as_str().unwrap())
            );
        }
        if n > 0 {
            let earlier = prompts[n - 1]["messages"].as_array().unwrap();
            assert_eq!(
                &messages[..2 * n - 1],
                &earlier[..],
                "prompt {n} does not extend prompt {}",
                n - 1
            );
        }
    }
}

#[tokio::test]
async fn twenty_concurrent_first_messages_make_one_conversation_answered_in_order() {
    let app = TestApp::spawn_with_model_delay(Duration::from_millis(20), |_| {}).await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let calls = (0..20).map(|n| {
        let (app, key) = (&app, &account.key);
        async move {
            let answer = app
                .reply(key, assistant, "+4915555", &format!("message {n}"))
                .await;
            (n, answer)
        }
    });
    let results = join_all(calls).await;
    let ids: std::collections::HashSet<_> = results
        .iter()
        .map(|(_, (status, body))| {
            assert_eq!(status.as_u16(), 200, "{body}");
            body["conversation_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1);
    let (_, list, _) = app.get(&account.key, "/api/user/conversations").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["message_count"], 40);
    assert_prompts_grow_one_exchange_at_a_time(&app.llm_requests().await);
    // Each caller got the reply to its own message.
    for (n, (status, body)) in &results {
        assert_eq!(status.as_u16(), 200);
        assert_eq!(body["reply"], format!("echo: message {n}"));
    }
}

#[tokio::test]
async fn two_server_processes_on_one_database_keep_the_order() {
    let mut app = TestApp::spawn_with_model_delay(Duration::from_millis(30), |_| {}).await;
    let second = app.start_server(app.settings.clone()).await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let bases = [app.base.clone(), second];
    let calls = (0..12).map(|n| {
        let (app, key, base) = (&app, &account.key, bases[n % 2].clone());
        async move {
            // Stagger slightly so both processes are mid-conversation at once.
            tokio::time::sleep(Duration::from_millis(5 * n as u64)).await;
            let body = json!({ "assistant_id": assistant, "customer_identifier": "shared", "message": format!("m{n}") });
            (n, app.request(&base, reqwest::Method::POST, key, "/api/ai/generate-reply", Some(&body)).await)
        }
    });
    for (n, (status, body, _)) in join_all(calls).await {
        assert_eq!(status.as_u16(), 200, "{body}");
        assert_eq!(body["reply"], format!("echo: m{n}"));
    }
    let prompts = app.llm_requests().await;
    assert_eq!(prompts.len(), 12);
    assert_prompts_grow_one_exchange_at_a_time(&prompts);

    // The stored history alternates message and its reply.
    let (_, list, _) = app.get(&account.key, "/api/user/conversations").await;
    let id = list["data"][0]["id"].as_str().unwrap();
    let history = app.history_contents(&account.key, id).await;
    assert_eq!(history.len(), 24);
    for pair in history.chunks(2) {
        assert_eq!(pair[1], format!("echo: {}", pair[0]));
    }
}

/// A message queued behind another is woken by the other's settlement, from another process:
/// with the fallback check an hour away, only the notification can wake it.
#[tokio::test]
async fn a_waiting_message_is_woken_by_the_reply_before_it_in_another_process() {
    let mut app = TestApp::spawn_with_model_delay(Duration::from_millis(300), |s| {
        s.turn_recheck = Duration::from_secs(3_600);
    })
    .await;
    let second = app.start_server(app.settings.clone()).await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let (_, warm) = app.reply(&account.key, assistant, "c", "hello").await;
    assert_eq!(warm["reply"], "echo: hello");
    let body = |text: &str| json!({ "assistant_id": assistant, "customer_identifier": "c", "message": text });
    let (one, two) = (body("one"), body("two"));
    let first = app.request(
        &app.base,
        reqwest::Method::POST,
        &account.key,
        "/api/ai/generate-reply",
        Some(&one),
    );
    let then_second = async {
        // Sent once the first is with the model, so it queues behind it.
        while app.llm_requests().await.len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        app.request(
            &second,
            reqwest::Method::POST,
            &account.key,
            "/api/ai/generate-reply",
            Some(&two),
        )
        .await
    };
    let both = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(first, then_second)
    });
    let ((s1, b1, _), (s2, b2, _)) = both.await.expect("the queued message was never woken");
    assert_eq!((s1.as_u16(), &b1["reply"]), (200, &json!("echo: one")));
    assert_eq!((s2.as_u16(), &b2["reply"]), (200, &json!("echo: two")));
    assert_prompts_grow_one_exchange_at_a_time(&app.llm_requests().await);
}

/// A reply that takes longer than its lease stays alive: its process renews the leases of all
/// its replies in flight, so a message queued behind it waits instead of taking its turn.
#[tokio::test]
async fn a_reply_longer_than_its_lease_keeps_its_turn() {
    let app = TestApp::spawn_with_model_delay(Duration::from_millis(4_500), |s| {
        s.reply_lease = Duration::from_secs(3);
    })
    .await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let first = app.reply(&account.key, assistant, "c", "slow one");
    let second = async {
        app.until_model_requests(1).await;
        app.reply(&account.key, assistant, "c", "next").await
    };
    let ((s1, b1), (s2, b2)) = tokio::join!(first, second);
    assert_eq!(
        (s1.as_u16(), &b1["reply"]),
        (200, &json!("echo: slow one")),
        "{b1}"
    );
    assert_eq!(
        (s2.as_u16(), &b2["reply"]),
        (200, &json!("echo: next")),
        "{b2}"
    );
    assert_prompts_grow_one_exchange_at_a_time(&app.llm_requests().await);
}

#[tokio::test]
async fn two_hundred_calls_to_a_slow_model_share_ten_connections() {
    let app =
        TestApp::spawn_with_model_delay(Duration::from_secs(2), |s| s.database_pool_size = 10)
            .await;
    let account = app.db_account("100").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let started = std::time::Instant::now();
    let calls = (0..200).map(|n| {
        let (app, key) = (&app, &account.key);
        async move {
            app.reply(key, assistant, &format!("customer-{n}"), "hi")
                .await
        }
    });
    let results = join_all(calls).await;
    for (status, body) in &results {
        assert_eq!(status.as_u16(), 200, "{body}");
    }
    assert_eq!(app.llm_requests().await.len(), 200);
    // Not a timing assertion: just context for a failure report.
    eprintln!("200 calls with a 2 s model took {:?}", started.elapsed());
}

/// A process that died mid-reply leaves a queued message with money reserved. Once its lease
/// runs out, the next message of the conversation goes ahead, the reservation is refunded and
/// the unanswered message removed.
#[tokio::test]
async fn a_reply_abandoned_by_a_dead_process_is_released() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let (_, first) = app.reply(&account.key, assistant, "c", "first").await;
    let conversation: uuid::Uuid = first["conversation_id"].as_str().unwrap().parse().unwrap();
    leave_an_abandoned_reply(&app, conversation, account.id).await;
    assert_eq!(app.balance(&account).await, crate::util::money("8.998"));

    let (status, second) = app.reply(&account.key, assistant, "c", "second").await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(app.balance(&account).await, crate::util::money("9.996"));
    let prompt = app.llm_requests().await.pop().unwrap();
    assert!(!prompt.to_string().contains("orphan"));
    let contents = app.history_contents(&account.key, conversation).await;
    assert_eq!(contents, ["first", "echo: first", "second", "echo: second"]);
    let (_, list, _) = app.get(&account.key, "/api/user/conversations").await;
    assert_eq!(list["data"][0]["message_count"], 4);
}

/// The periodic sweep releases abandoned replies in conversations nobody writes to again.
#[tokio::test]
async fn the_sweep_releases_abandoned_replies_everywhere() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let (_, first) = app.reply(&account.key, assistant, "c", "first").await;
    let conversation: uuid::Uuid = first["conversation_id"].as_str().unwrap().parse().unwrap();
    leave_an_abandoned_reply(&app, conversation, account.id).await;
    let server = anyreply_server::App::new(app.settings.clone()).unwrap();
    let released = anyreply_server::reply::queue::reclaim_expired(&server, None)
        .await
        .unwrap();
    assert_eq!(released, 1);
    assert_eq!(app.balance(&account).await, crate::util::money("9.998"));
    assert_eq!(
        app.history_contents(&account.key, conversation).await.len(),
        2
    );
}

/// What a process that died mid-reply leaves behind: the customer's message, counted in the
/// conversation, a reservation of 1.00 taken from the balance, and a lease, expired.
async fn leave_an_abandoned_reply(app: &TestApp, conversation: uuid::Uuid, account_id: i64) {
    use diesel_async::RunQueryDsl;

    let mut conn = app.db.connect().await;
    diesel::sql_query(
        "WITH place AS (SELECT next_seq FROM conversations WHERE id = $1),
         m AS (
             INSERT INTO messages (id, conversation_id, turn_id, seq, role, content)
             SELECT id, $1, id, place.next_seq, 'user', 'orphan'
             FROM place, (SELECT nextval('messages_id_seq') AS id) AS n
             RETURNING id),
         charged AS (UPDATE accounts SET balance = balance - 100000000 WHERE id = $2),
         counted AS (UPDATE conversations SET message_count = message_count + 1, next_seq = next_seq + 2 WHERE id = $1)
         INSERT INTO pending_replies (message_id, conversation_id, account_id, hold, lease_until)
         SELECT id, $1, $2, 100000000, now() - interval '1 second' FROM m",
    )
    .bind::<diesel::sql_types::Uuid, _>(conversation)
    .bind::<diesel::sql_types::Int8, _>(account_id)
    .execute(&mut conn)
    .await
    .unwrap();
}

/// A settled reply whose due could not be paid (here a trigger refuses it, as the database
/// lost just after the settlement's commit would) is answered all the same; the sweep then
/// gives the unused reservation back and records `reply.created`, once however often it runs.
#[tokio::test]
async fn a_due_its_reply_could_not_pay_is_paid_by_the_sweep_once() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    run_sql(
        &app,
        "CREATE FUNCTION refuse_payment() RETURNS trigger LANGUAGE plpgsql
             AS $$ BEGIN RAISE EXCEPTION 'the database went away'; END $$;
         CREATE TRIGGER payment_lost BEFORE DELETE ON settlements_due
             FOR EACH ROW EXECUTE FUNCTION refuse_payment()",
    )
    .await;

    let (status, body) = app.reply(&account.key, assistant, "c", "hello").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reply"], "echo: hello");
    let reserved = app.balance(&account).await;
    assert!(reserved < crate::util::money("9.998"), "{reserved:?}");
    assert_eq!(app.count("settlements_due").await, 1);
    assert_eq!(replies_created(&app).await, 0);

    run_sql(
        &app,
        "DROP TRIGGER payment_lost ON settlements_due;
         UPDATE settlements_due SET created_at = now() - interval '2 minutes'",
    )
    .await;
    let server = anyreply_server::App::new(app.settings.clone()).unwrap();
    for _ in 0..2 {
        anyreply_server::reply::settlement::pay_dues_left_unpaid(&server)
            .await
            .unwrap();
    }
    assert_eq!(app.balance(&account).await, crate::util::money("9.998"));
    assert_eq!(app.count("settlements_due").await, 0);
    assert_eq!(replies_created(&app).await, 1);
}

/// A due paid by its reply is gone at once, and the sweep leaves the books alone.
#[tokio::test]
async fn a_reply_pays_its_own_due_before_answering() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let (status, body) = app.reply(&account.key, assistant, "c", "hello").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.balance(&account).await, crate::util::money("9.998"));
    assert_eq!(app.count("settlements_due").await, 0);
    assert_eq!(replies_created(&app).await, 1);
    let server = anyreply_server::App::new(app.settings.clone()).unwrap();
    anyreply_server::reply::settlement::pay_dues_left_unpaid(&server)
        .await
        .unwrap();
    assert_eq!(app.balance(&account).await, crate::util::money("9.998"));
    assert_eq!(replies_created(&app).await, 1);
}

async fn run_sql(app: &TestApp, sql: &str) {
    use diesel_async::SimpleAsyncConnection;
    app.db.connect().await.batch_execute(sql).await.unwrap();
}

async fn replies_created(app: &TestApp) -> i64 {
    app.count("events WHERE kind = 'reply.created'").await
}
