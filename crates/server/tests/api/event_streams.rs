//! Event streams at scale: one poller per process feeds every stream; what idle streams cost;
//! the per-key limit; streams end with their key, their console session, and the server.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyreply_server::App;
use anyreply_server::events::Statement;
use anyreply_server::testing::eventually;
use reqwest::StatusCode;
use reqwest::header::SET_COOKIE;
use serde_json::{Value, json};

use crate::handoff::{EventStream, Frame};
use crate::util::{TestAccount, TestApp, assert_error};

/// The stream's end is seen within this of its key's or session's end.
const ENDS_WITHIN: Duration = Duration::from_secs(5);

fn ids(frames: &[Frame]) -> Vec<i64> {
    frames.iter().map(|f| f.id).collect()
}

/// Replies to `customer` of `assistant`, `n` times; each makes two events.
async fn replies(app: &TestApp, account: &TestAccount, assistant: i64, customer: &str, n: usize) {
    for i in 0..n {
        let (status, body) = app
            .reply(&account.key, assistant, customer, &format!("m{i}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

/// Nothing more comes: no event repeated or leaked in.
async fn then_nothing(stream: &mut EventStream) {
    if let Some(frame) = stream.next_within(Duration::from_millis(700)).await {
        panic!("an unexpected event: {frame:?}");
    }
}

#[tokio::test]
async fn every_stream_gets_each_of_its_accounts_events_once_filtered_and_resumed() {
    let app = TestApp::spawn().await;
    let (mine, theirs) = (app.db_account("10").await, app.db_account("10").await);
    let a1 = app.assistant(&mine, &json!({ "name": "One" })).await;
    let a2 = app.assistant(&mine, &json!({ "name": "Two" })).await;
    let b = app.assistant(&theirs, &json!({ "name": "Theirs" })).await;
    // Two events before any stream opens, for the resumed stream to catch up on.
    replies(&app, &mine, a1, "early", 1).await;
    let (_, first) = app.reply(&mine.key, a2, "c2", "hello").await;
    let conversation = first["conversation_id"].as_str().unwrap().to_owned();

    let mut all = [
        EventStream::open(&app, &mine.key, "", None).await,
        EventStream::open(&app, &mine.key, "", None).await,
    ];
    let mut of_a1 = EventStream::open(&app, &mine.key, &format!("?assistant_id={a1}"), None).await;
    let mut of_conversation = EventStream::open(
        &app,
        &mine.key,
        &format!("?conversation_id={conversation}"),
        None,
    )
    .await;
    let mut their_stream = EventStream::open(&app, &theirs.key, "", None).await;

    // Both accounts at once, one account's two assistants interleaved.
    tokio::join!(
        replies(&app, &mine, a1, "c1", 5),
        replies(&app, &mine, a2, "c2", 5),
        replies(&app, &theirs, b, "t1", 5),
    );
    // A stream resumed from before the first stream opened, while events keep coming.
    let mut resumed = EventStream::open(&app, &mine.key, "", Some(2)).await;
    replies(&app, &mine, a1, "c1", 1).await;

    // Four events before the streams (two replies), 22 after (11 replies).
    for stream in &mut all {
        let frames = stream.take(22).await;
        assert_eq!(ids(&frames), (5..=26).collect::<Vec<_>>());
        assert!(frames.iter().all(|f| f.data["assistant_id"] != b));
        then_nothing(stream).await;
    }
    let frames = resumed.take(24).await;
    assert_eq!(
        ids(&frames),
        (3..=26).collect::<Vec<_>>(),
        "caught up, then live"
    );
    then_nothing(&mut resumed).await;

    let frames = of_a1.take(12).await;
    assert!(frames.iter().all(|f| f.data["assistant_id"] == a1));
    assert!(frames.windows(2).all(|w| w[0].id < w[1].id));
    then_nothing(&mut of_a1).await;
    let frames = of_conversation.take(10).await;
    assert!(
        frames
            .iter()
            .all(|f| f.data["conversation_id"] == conversation.as_str())
    );
    then_nothing(&mut of_conversation).await;

    let frames = their_stream.take(10).await;
    assert_eq!(
        ids(&frames),
        (1..=10).collect::<Vec<_>>(),
        "ids count per account"
    );
    assert!(frames.iter().all(|f| f.data["assistant_id"] == b));
    then_nothing(&mut their_stream).await;

    // Resumed with a filter from the start: the catch-up reads the filter's index, then live.
    let mut resumed_a2 =
        EventStream::open(&app, &mine.key, &format!("?assistant_id={a2}"), Some(0)).await;
    replies(&app, &mine, a2, "c2", 1).await;
    let frames = resumed_a2.take(14).await;
    assert!(frames.iter().all(|f| f.data["assistant_id"] == a2));
    let distinct: BTreeSet<i64> = ids(&frames).into_iter().collect();
    assert_eq!(distinct.len(), 14, "nothing repeated");
    assert_eq!(frames.last().unwrap().id, 28);
    then_nothing(&mut resumed_a2).await;
}

/// A server of the test's app whose state the test keeps, to read what its streams cost.
async fn server_with_state(app: &TestApp) -> (String, App) {
    let state = App::new(app.settings.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let serving = state.clone();
    tokio::spawn(async move {
        anyreply_server::serve(serving, listener, std::future::pending())
            .await
            .unwrap();
    });
    (base, state)
}

fn looks(state: &App) -> u64 {
    [
        Statement::Poll,
        Statement::Durable,
        Statement::Liveness,
        Statement::CatchUp,
        Statement::Open,
    ]
    .into_iter()
    .map(|kind| state.event_streams.statements(kind))
    .sum()
}

/// What the streams cost PostgreSQL over `window`.
async fn statements_over(state: &App, window: Duration) -> u64 {
    let before = looks(state);
    tokio::time::sleep(window).await;
    looks(state) - before
}

#[tokio::test]
async fn idle_streams_cost_the_same_few_statements_whatever_their_number() {
    let mut app = TestApp::spawn_with(|s| s.event_streams_per_key = 100).await;
    let (base, state) = server_with_state(&app).await;
    app.base = base;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let window = Duration::from_secs(2);

    assert_eq!(
        statements_over(&state, window).await,
        0,
        "no stream: no look"
    );

    let one = EventStream::open(&app, &account.key, "", None).await;
    let with_one = statements_over(&state, window).await;
    let mut many = Vec::new();
    for _ in 0..60 {
        many.push(EventStream::open(&app, &account.key, "", None).await);
    }
    let with_many = statements_over(&state, window).await;
    // A look every 200 ms and the keys checked every 2 s: about 11 in 2 s, at most 10 a second.
    for cost in [with_one, with_many] {
        assert!((5..=20).contains(&cost), "{cost} statements in {window:?}");
    }

    // A filtered stream passes over the events of other conversations as the poller hands
    // them over: it never reads the table itself.
    let (_, first) = app.reply(&account.key, assistant, "mine", "hi").await;
    let conversation = first["conversation_id"].as_str().unwrap().to_owned();
    let mut filtered = EventStream::open(
        &app,
        &account.key,
        &format!("?conversation_id={conversation}"),
        None,
    )
    .await;
    let catch_ups = state.event_streams.statements(Statement::CatchUp);
    replies(&app, &account, assistant, "other", 10).await;
    app.reply(&account.key, assistant, "mine", "again").await;
    let frames = filtered.take(2).await;
    assert_eq!(frames[0].data["message"]["content"], "again");
    assert_eq!(
        state.event_streams.statements(Statement::CatchUp),
        catch_ups,
        "no stream read the table"
    );

    drop((one, many, filtered));
    // The server sees the streams close (at their next write at the latest), then stops looking.
    eventually("the streams closed", || async {
        state.event_streams.open_streams() == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(statements_over(&state, window).await, 0);
}

async fn open_raw(app: &TestApp, key: &str) -> reqwest::Response {
    app.http
        .get(format!("{}/api/events", app.base))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_key_keeps_at_most_its_limit_of_streams_open() {
    let app = TestApp::spawn_with(|s| s.event_streams_per_key = 3).await;
    let account = app.db_account("10").await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let response = open_raw(&app, &account.key).await;
        assert_eq!(response.status(), StatusCode::OK);
        open.push(response);
    }
    let refused = open_raw(&app, &account.key).await;
    let (status, retry_after) = (refused.status(), refused.headers()["retry-after"].clone());
    let body: Value = refused.json().await.unwrap();
    assert_error(status, &body, 429, "TOO_MANY_EVENT_STREAMS");
    assert_eq!(retry_after, "5");

    // Another key of the same account has a limit of its own.
    let mut conn = app.db.connect().await;
    let other_key = anyreply_server::models::api_key::create(&mut conn, account.id)
        .await
        .unwrap()
        .key;
    assert_eq!(open_raw(&app, &other_key).await.status(), StatusCode::OK);

    // A closed stream makes room again.
    drop(open.pop());
    eventually("room for a stream again", || async {
        open_raw(&app, &account.key).await.status() == StatusCode::OK
    })
    .await;
}

#[tokio::test]
async fn a_revoked_key_ends_its_streams_within_5_s() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let other = app.db_account("10").await;
    let mut revoked = EventStream::open(&app, &account.key, "", None).await;
    let mut kept = EventStream::open(&app, &other.key, "", None).await;
    let mut conn = app.db.connect().await;
    let started = Instant::now();
    assert!(
        anyreply_server::models::api_key::revoke(&mut conn, &account.key[..12])
            .await
            .unwrap()
    );
    assert!(revoked.ends_within(ENDS_WITHIN).await, "still open");
    assert!(started.elapsed() <= ENDS_WITHIN);
    assert!(!kept.ends_within(Duration::from_millis(2500)).await);
    assert_eq!(
        open_raw(&app, &account.key).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// A signed-in console session's cookie header and its CSRF token.
async fn console_session(app: &TestApp, key: &str) -> (String, String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie_of = |response: &reqwest::Response, name: &str| {
        response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|c| c.to_str().ok())
            .find_map(|c| c.strip_prefix(&format!("{name}=")))
            .map(|c| format!("{name}={}", c.split(';').next().unwrap()))
            .unwrap()
    };
    let csrf_of = |html: &str| {
        html.split("name=\"csrf\" value=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned()
    };
    let page = http
        .get(format!("{}/console/sign-in", app.base))
        .send()
        .await
        .unwrap();
    let sign_in_cookie = cookie_of(&page, "anyreply_console_sign_in");
    let csrf = csrf_of(&page.text().await.unwrap());
    let signed_in = http
        .post(format!("{}/console/sign-in", app.base))
        .header("cookie", &sign_in_cookie)
        .form(&[("api_key", key), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let session = cookie_of(&signed_in, "anyreply_console");
    let page = http
        .get(format!("{}/console", app.base))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    let csrf = csrf_of(&page.text().await.unwrap());
    (session, csrf)
}

async fn console_stream(app: &TestApp, session: &str, conversation: &str) -> EventStream {
    let response = app
        .http
        .get(format!(
            "{}/console/conversations/{conversation}/events?after=0",
            app.base
        ))
        .header("cookie", session)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    EventStream::of(response)
}

#[tokio::test]
async fn signing_out_or_an_expired_session_ends_the_consoles_streams_within_5_s() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let (_, reply) = app.reply(&account.key, assistant, "c", "hi").await;
    let conversation = reply["conversation_id"].as_str().unwrap().to_owned();

    let (signing_out, csrf) = console_session(&app, &account.key).await;
    let (expiring, _) = console_session(&app, &account.key).await;
    let mut ended_by_sign_out = console_stream(&app, &signing_out, &conversation).await;
    let mut ended_by_expiry = console_stream(&app, &expiring, &conversation).await;
    let mut kept = console_stream(&app, &expiring, &conversation).await;
    let mut api_stream = EventStream::open(&app, &account.key, "", None).await;

    let signed_out = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/console/sign-out", app.base))
        .header("cookie", &signing_out)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), StatusCode::SEE_OTHER);
    assert!(ended_by_sign_out.ends_within(ENDS_WITHIN).await);
    assert!(
        !kept.ends_within(Duration::from_millis(2500)).await,
        "another session's stream ended"
    );

    let mut conn = app.db.connect().await;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query("UPDATE console_sessions SET last_seen_at = now() - interval '13 hours'"),
        &mut conn,
    )
    .await
    .unwrap();
    assert!(ended_by_expiry.ends_within(ENDS_WITHIN).await);
    assert!(kept.ends_within(ENDS_WITHIN).await);
    assert!(
        !api_stream.ends_within(Duration::from_millis(2500)).await,
        "the key's own stream is not the session's"
    );
}

#[tokio::test]
async fn the_server_stops_within_10_s_of_sigterm_with_streams_open() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_anyreply-server"));
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("ANYREPLY_")) {
        command.env_remove(name);
    }
    let mut child = command
        .args(["serve"])
        .env("ANYREPLY_DATABASE_URL", app.db.url())
        .env("ANYREPLY_LISTEN", format!("127.0.0.1:{port}"))
        .env("ANYREPLY_LLM_BASE_URL", format!("{}/v1", app.llm.uri()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (serving, mut served) = tokio::sync::oneshot::channel();
    // Read to the end, so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut serving = Some(serving);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("serving")
                && let Some(serving) = serving.take()
            {
                let _ = serving.send(());
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(30), &mut served)
        .await
        .expect("the server started")
        .unwrap();

    let base = format!("http://127.0.0.1:{port}");
    let mut streams = Vec::new();
    for query in ["", "?assistant_id=1"] {
        let response = app
            .http
            .get(format!("{base}/api/events{query}"))
            .bearer_auth(&account.key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        streams.push(EventStream::of(response));
    }

    let signalled = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if signalled.elapsed() > Duration::from_secs(10) {
            child.kill().unwrap();
            panic!("still running 10 s after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    for stream in &mut streams {
        assert!(stream.ends_within(Duration::from_secs(1)).await);
    }
}
