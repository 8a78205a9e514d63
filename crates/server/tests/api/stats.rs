//! Support stats (`GET /api/user/stats` and the dashboard): conversations, replies, the share
//! the AI finished, handoffs, their reasons and the wait for a person, per day and assistant,
//! adding up to the events they count.

use std::collections::{BTreeMap, BTreeSet};

use anyreply_server::testing::eventually;
use chrono::{Duration, NaiveDate, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::{Request, ResponseTemplate};

use crate::console::Browser;
use crate::handoff::EventStream;
use crate::util::{
    TestAccount, TestApp, assert_error, body_of, chat_completion, openai_tool_calls,
};

/// The stub model: a customer message `human: <reason>` is handed over with that reason,
/// anything else answered.
fn hand_over_when_asked(request: &Request) -> ResponseTemplate {
    let body = body_of(request);
    let said = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned();
    match said.strip_prefix("human: ") {
        Some(reason) => ResponseTemplate::new(200).set_body_json(openai_tool_calls(&[(
            "call_h",
            "transfer_to_human",
            json!({ "reason": reason }),
        )])),
        None => ResponseTemplate::new(200).set_body_json(chat_completion("Happy to help.")),
    }
}

async fn handing_assistant(app: &TestApp, account: &TestAccount, name: &str) -> i64 {
    app.assistant(
        account,
        &json!({ "name": name, "handoff": { "enabled": true, "message": "One moment." } }),
    )
    .await
}

/// Sends the customer's message; returns the conversation's id.
async fn say(app: &TestApp, key: &str, assistant: i64, customer: &str, text: &str) -> String {
    let (status, reply) = app.reply(key, assistant, customer, text).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["ai_disabled"], text.starts_with("human: "), "{reply}");
    reply["conversation_id"].as_str().unwrap().to_owned()
}

async fn operator_says(app: &TestApp, key: &str, conversation: &str) {
    let (status, body, _) = app
        .post(
            key,
            &format!("/api/conversations/{conversation}/messages"),
            &json!({ "content": "Hi, Anna here." }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// Runs one SQL statement on the test's database.
async fn db_execute(app: &TestApp, statement: &str) {
    use diesel_async::RunQueryDsl;
    let mut conn = app.db.connect().await;
    diesel::sql_query(statement)
        .execute(&mut conn)
        .await
        .unwrap();
}

/// Moves the conversation's events, from its `skip + 1`th on, to `day` from 10:00 UTC, a second
/// apart in id order.
async fn db_move_events(app: &TestApp, conversation: &str, day: NaiveDate, skip: i64) {
    db_execute(
        app,
        &format!(
            "UPDATE events e SET created_at = ('{day}'::date + time '10:00') AT TIME ZONE 'UTC'
                                              + n.place * interval '1 second'
             FROM (SELECT account_id, id, row_number() OVER (ORDER BY id) AS place
                   FROM events WHERE conversation_id = '{conversation}') AS n
             WHERE e.account_id = n.account_id AND e.id = n.id AND n.place > {skip}"
        ),
    )
    .await;
}

/// Sets the conversation's operator message `seconds` after its handoff.
async fn db_answer_after(app: &TestApp, conversation: &str, seconds: i64) {
    db_execute(
        app,
        &format!(
            "UPDATE events o SET created_at = h.created_at + {seconds} * interval '1 second'
             FROM events h
             WHERE o.conversation_id = '{conversation}' AND o.kind = 'operator.message'
               AND h.conversation_id = o.conversation_id AND h.kind = 'handoff.requested'"
        ),
    )
    .await;
}

async fn stats(app: &TestApp, key: &str, query: &str) -> Value {
    let (status, body, _) = app.get(key, &format!("/api/user/stats{query}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], true);
    body
}

/// Every event of the account, from the stream.
async fn all_events(app: &TestApp, account: &TestAccount) -> Vec<Value> {
    let stored = app
        .count(&format!("events WHERE account_id = {}", account.id))
        .await;
    let mut stream = EventStream::open(app, &account.key, "", Some(0)).await;
    let events: Vec<Value> = stream
        .take(stored as usize)
        .await
        .into_iter()
        .map(|f| f.data)
        .collect();
    let rest = stream
        .next_within(std::time::Duration::from_millis(300))
        .await;
    assert!(rest.is_none(), "more events than stored: {rest:?}");
    events
}

/// What the stats must say of each group, counted from the events themselves: conversations
/// with a customer message, replies, handoffs and their reasons, those without a handoff.
fn count_from_events(events: &[Value], key: impl Fn(&Value) -> String) -> BTreeMap<String, Value> {
    #[derive(Default)]
    struct Group {
        received: BTreeSet<String>,
        handed: BTreeSet<String>,
        replies: i64,
        reasons: BTreeMap<String, i64>,
    }
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for event in events {
        let group = groups.entry(key(event)).or_default();
        let conversation = event["conversation_id"].as_str().unwrap().to_owned();
        match event["type"].as_str().unwrap() {
            "message.received" => drop(group.received.insert(conversation)),
            "reply.created" => group.replies += 1,
            "handoff.requested" => {
                group.handed.insert(conversation);
                *group
                    .reasons
                    .entry(event["reason"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
            _ => {}
        }
    }
    groups
        .into_iter()
        .filter(|(_, g)| !g.received.is_empty() || g.replies > 0 || !g.reasons.is_empty())
        .map(|(name, g)| {
            let resolved = g.received.difference(&g.handed).count();
            let mut reasons: Vec<(String, i64)> = g.reasons.into_iter().collect();
            reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let counted = json!({
                "conversations": g.received.len(),
                "replies": g.replies,
                "handoffs": reasons.iter().map(|r| r.1).sum::<i64>(),
                "ai_resolved_share": (!g.received.is_empty())
                    .then(|| resolved as f64 / g.received.len() as f64),
                "reasons": reasons.iter().take(5)
                    .map(|(reason, count)| json!({ "reason": reason, "count": count }))
                    .collect::<Vec<_>>(),
            });
            (name, counted)
        })
        .collect()
}

/// The fields of a stats row that [`count_from_events`] counts.
fn counted_part(row: &Value) -> Value {
    let mut part = serde_json::Map::new();
    for field in [
        "conversations",
        "replies",
        "handoffs",
        "ai_resolved_share",
        "reasons",
    ] {
        part.insert(field.to_owned(), row[field].clone());
    }
    Value::Object(part)
}

/// The wait figures of a row: unanswered handoffs, median and p90.
fn waits(row: &Value) -> (i64, Value, Value) {
    (
        row["unanswered_handoffs"].as_i64().unwrap(),
        row["time_to_operator_median_seconds"].clone(),
        row["time_to_operator_p90_seconds"].clone(),
    )
}

/// Two assistants, seven conversations over two days, four handoffs of which three were
/// answered after 60, 120 and 300 seconds.
struct Scenario {
    app: TestApp,
    account: TestAccount,
    shoes: i64,
    bags: i64,
    /// The two days, the day before yesterday and yesterday (UTC).
    days: [NaiveDate; 2],
}

async fn scenario() -> Scenario {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let shoes = handing_assistant(&app, &account, "Shoes").await;
    let bags = handing_assistant(&app, &account, "Bags").await;
    app.script_model(hand_over_when_asked).await;
    let key = &account.key;
    let a1 = say(&app, key, shoes, "a1", "hi").await;
    let a2 = say(&app, key, shoes, "a2", "human: refund").await;
    let a3 = say(&app, key, shoes, "a3", "human: refund").await;
    let a4 = say(&app, key, shoes, "a4", "human: broken").await;
    let b1 = say(&app, key, bags, "b1", "hi").await;
    let b2 = say(&app, key, bags, "b2", "hi").await;
    say(&app, key, bags, "b2", "and again").await;
    let b3 = say(&app, key, bags, "b3", "human: angry").await;
    for answered in [&a2, &a4, &b3] {
        operator_says(&app, key, answered).await;
    }
    // A reply's `reply.created` comes a moment after its answer: all of them before moving.
    eventually("every reply.created recorded", || async {
        app.count("events WHERE kind = 'reply.created'").await == 8
    })
    .await;

    let today = Utc::now().date_naive();
    let days = [today - Duration::days(2), today - Duration::days(1)];
    for (conversation, day) in [(&a1, 0), (&a2, 0), (&b1, 0), (&b2, 0)] {
        db_move_events(&app, conversation, days[day], 0).await;
    }
    for conversation in [&a3, &a4, &b3] {
        db_move_events(&app, conversation, days[1], 0).await;
    }
    // b2's second message (its third event on) comes the next day.
    db_move_events(&app, &b2, days[1], 2).await;
    for (conversation, seconds) in [(&a2, 60), (&a4, 120), (&b3, 300)] {
        db_answer_after(&app, conversation, seconds).await;
    }
    Scenario {
        app,
        account,
        shoes,
        bags,
        days,
    }
}

#[tokio::test]
async fn the_stats_add_up_to_the_events_they_count_per_day_and_per_assistant() {
    let Scenario {
        app,
        account,
        shoes,
        bags,
        days,
    } = scenario().await;
    let events = all_events(&app, &account).await;
    let range = format!("?from={}&to={}", days[0], days[1]);

    // Per day: the counts are the events', and the waits as placed (60 s the first day; 120 s
    // and 300 s the second, with one handoff unanswered).
    let by_day = stats(&app, &account.key, &range).await;
    let rows = by_day["data"].as_array().unwrap();
    let day_of = |e: &Value| e["created_at"].as_str().unwrap()[..10].to_owned();
    let expected = count_from_events(&events, day_of);
    assert_eq!(
        rows.iter()
            .map(|r| (r["period"].as_str().unwrap().to_owned(), counted_part(r)))
            .collect::<BTreeMap<_, _>>(),
        expected,
        "{by_day}"
    );
    assert_eq!(
        rows.iter().map(|r| r["period"].clone()).collect::<Vec<_>>(),
        [json!(days[0]), json!(days[1])]
    );
    assert_eq!(
        counted_part(&rows[0]),
        json!({ "conversations": 4, "replies": 4, "handoffs": 1, "ai_resolved_share": 0.75,
                "reasons": [{ "reason": "refund", "count": 1 }] })
    );
    assert_eq!(
        counted_part(&rows[1]),
        json!({ "conversations": 4, "replies": 4, "handoffs": 3, "ai_resolved_share": 0.25,
                "reasons": [{ "reason": "angry", "count": 1 }, { "reason": "broken", "count": 1 },
                            { "reason": "refund", "count": 1 }] })
    );
    assert_eq!(waits(&rows[0]), (0, json!(60.0), json!(60.0)));
    // percentile_cont of 120 and 300: 120 + 0.5 × 180, and 120 + 0.9 × 180.
    assert_eq!(waits(&rows[1]), (1, json!(210.0), json!(282.0)));
    assert!(rows[0].get("assistant_id").is_none(), "{by_day}");

    // The totals: b2, on both days, is one conversation; 60, 120 and 300 s give a median of
    // 120 and a p90 of 120 + 0.8 × 180.
    let totals = &by_day["totals"];
    let whole = count_from_events(&events, |_| String::new());
    assert_eq!(counted_part(totals), whole[""]);
    assert_eq!(
        counted_part(totals),
        json!({ "conversations": 7, "replies": 8, "handoffs": 4, "ai_resolved_share": 3.0 / 7.0,
                "reasons": [{ "reason": "refund", "count": 2 }, { "reason": "angry", "count": 1 },
                            { "reason": "broken", "count": 1 }] })
    );
    assert_eq!(waits(totals), (1, json!(120.0), json!(264.0)));
    assert!(totals.get("period").is_none() && totals.get("assistant_id").is_none());

    // Per assistant: the same events, the same totals.
    let by_assistant = stats(&app, &account.key, &format!("{range}&group_by=assistant")).await;
    let rows = by_assistant["data"].as_array().unwrap();
    let assistant_of = |e: &Value| format!("{:09}", e["assistant_id"].as_i64().unwrap());
    assert_eq!(
        rows.iter()
            .map(|r| (
                format!("{:09}", r["assistant_id"].as_i64().unwrap()),
                counted_part(r)
            ))
            .collect::<BTreeMap<_, _>>(),
        count_from_events(&events, assistant_of),
        "{by_assistant}"
    );
    assert_eq!(
        rows.iter()
            .map(|r| r["assistant_id"].clone())
            .collect::<Vec<_>>(),
        [json!(shoes), json!(bags)]
    );
    assert_eq!(rows[0]["ai_resolved_share"], json!(0.25));
    assert_eq!(rows[1]["ai_resolved_share"], json!(2.0 / 3.0));
    // Shoes: 60 and 120 s (a3 unanswered); Bags: 300 s.
    assert_eq!(waits(&rows[0]), (1, json!(90.0), json!(114.0)));
    assert_eq!(waits(&rows[1]), (0, json!(300.0), json!(300.0)));
    assert_eq!(by_assistant["totals"], by_day["totals"]);

    // The default range (the last 30 days) holds both days.
    assert_eq!(
        stats(&app, &account.key, "").await["totals"],
        by_day["totals"]
    );
    // Each event once: the replies and handoffs are the stored events'.
    assert_eq!(app.count("events WHERE kind = 'reply.created'").await, 8);
    assert_eq!(
        app.count("events WHERE kind = 'handoff.requested'").await,
        4
    );
}

#[tokio::test]
async fn an_empty_range_another_account_and_bad_queries() {
    let Scenario {
        app, account, days, ..
    } = scenario().await;
    let nothing = json!({
        "conversations": 0, "replies": 0, "ai_resolved_share": null, "handoffs": 0,
        "reasons": [], "unanswered_handoffs": 0, "time_to_operator_median_seconds": null,
        "time_to_operator_p90_seconds": null
    });
    // Before the scenario's days, and today (every event was moved away from it).
    let today = Utc::now().date_naive();
    let before = days[0] - Duration::days(1);
    for query in [
        format!("?from={}&to={before}", before - Duration::days(5)),
        format!("?from={today}&to={today}&group_by=assistant"),
    ] {
        let body = stats(&app, &account.key, &query).await;
        assert_eq!(body["totals"], nothing, "{query}: {body}");
        assert_eq!(body["data"], json!([]), "{query}: {body}");
    }

    // Another account sees none of it, and the first none of its handoff.
    let other = app.db_account("10").await;
    let desk = handing_assistant(&app, &other, "Desk").await;
    say(&app, &other.key, desk, "z", "human: other account").await;
    let theirs = stats(&app, &other.key, "?group_by=assistant").await;
    assert_eq!(theirs["totals"]["conversations"], 1, "{theirs}");
    assert_eq!(
        theirs["totals"]["reasons"],
        json!([{ "reason": "other account", "count": 1 }])
    );
    assert_eq!(
        theirs["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["assistant_id"].clone())
            .collect::<Vec<_>>(),
        [json!(desk)]
    );
    let ours = stats(&app, &account.key, "").await;
    assert_eq!(ours["totals"]["handoffs"], 4, "{ours}");
    assert_eq!(ours["totals"]["conversations"], 7, "{ours}");

    // Refused as usage refuses, every bad field named.
    for (bad, field) in [
        ("?from=2026-13-01", "from"),
        ("?to=yesterday", "to"),
        ("?from=2026-12-02&to=2026-12-01", "from"),
        ("?from=2024-01-01&to=2026-01-01", "to"),
        ("?group_by=model", "group_by"),
        ("?group_by=", "group_by"),
    ] {
        let (status, body, _) = app
            .get(&account.key, &format!("/api/user/stats{bad}"))
            .await;
        assert_error(status, &body, 422, "VALIDATION_ERROR");
        assert!(body["errors"][field].is_array(), "{bad}: {body}");
    }
    let (status, body, _) = app
        .get(&account.key, "/api/user/stats?from=x&group_by=week")
        .await;
    assert_error(status, &body, 422, "VALIDATION_ERROR");
    assert_eq!(
        body["errors"],
        json!({
            "from": ["The from must be a date such as 2026-12-01."],
            "group_by": ["The group_by must be day or assistant."]
        })
    );
    let (status, _, _) = app.get("ark_nope", "/api/user/stats").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_dashboard_shows_the_support_figures_a_handoff_chart_and_the_reasons() {
    let Scenario {
        app, account, days, ..
    } = scenario().await;
    let mut browser = Browser::new(&app);
    browser.sign_in(&account.key).await;
    let html = browser.get("/console").await.html;

    // 3 of 7 conversations without a handoff; 4 handoffs, one waiting; 120 s and 264 s.
    for figure in [
        "data-testid=\"ai-resolved\">43%<",
        "data-testid=\"handoffs\">4<",
        "data-testid=\"unanswered\">1 still waiting<",
        "data-testid=\"operator-median\">2 min 0 s<",
        "data-testid=\"operator-p90\">4 min 24 s<",
    ] {
        assert!(html.contains(figure), "{figure}: {html}");
    }
    let svg = html
        .split("<svg class=\"chart support-chart\"")
        .nth(1)
        .and_then(|rest| rest.split("</svg>").next())
        .unwrap();
    // Titled and described, both axes titled, each day's bar labelled.
    assert!(svg.contains("aria-labelledby=\"support-chart-title support-chart-desc\""));
    assert!(svg.contains(">Handoffs</text>") && svg.contains(">AI-resolved</text>"));
    for (day, label) in [
        (days[0], "1 handoff, 75% resolved by the AI"),
        (days[1], "3 handoffs, 25% resolved by the AI"),
    ] {
        assert!(
            svg.contains(&format!("<title>{day}: {label}</title>")),
            "{day}: {svg}"
        );
    }
    assert!(
        svg.contains(">Handoffs per day (left axis)</text>"),
        "{svg}"
    );
    assert!(
        svg.contains(">AI-resolved share (right axis)</text>"),
        "{svg}"
    );
    // The reasons, the most frequent first.
    let reasons = html
        .split("id=\"reasons-title\"")
        .nth(1)
        .and_then(|rest| rest.split("</section>").next())
        .unwrap();
    let refund = reasons.find("refund").unwrap();
    let angry = reasons.find("angry").unwrap();
    assert!(refund < angry, "{reasons}");
    assert!(reasons.contains("<td>2</td>"), "{reasons}");
}
