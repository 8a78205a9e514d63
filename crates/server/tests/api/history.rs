//! History read in bounded ranges: `GET /api/conversations/{id}` a page at a time, and the
//! prompt's page query reading no more rows than a page holds, whatever the statistics say.

use anyreply_server::models::message::{PAGE_SQL, PROMPT_PAGE_SQL};
use anyreply_server::reply::prompt::MAX_SPAN;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};

use crate::util::{TestApp, assert_error};

#[tokio::test]
async fn a_long_history_comes_newest_first_in_pages_of_100() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let (_, first) = app.reply(&account.key, assistant, "c", "start").await;
    let id = first["conversation_id"].as_str().unwrap().to_owned();
    app.db_seed_history(id.parse().unwrap(), 248).await;

    let mut pages = Vec::new();
    let mut path = format!("/api/conversations/{id}");
    loop {
        let (status, page, _) = app.get(&account.key, &path).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["status"], true);
        let texts: Vec<String> = page["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap().to_owned())
            .collect();
        pages.push(texts);
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/conversations/{id}?cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [100, 100, 50]
    );
    // Pages go back in time; each is oldest first; together they are the whole history.
    let whole: Vec<String> = pages.into_iter().rev().flatten().collect();
    let mut expected = vec!["start".to_owned(), "echo: start".to_owned()];
    expected.extend((1..=248).map(|n| format!("history line {n}")));
    assert_eq!(whole, expected);

    let (status, page, _) = app
        .get(&account.key, &format!("/api/conversations/{id}?per_page=3"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["history"].as_array().unwrap().len(), 3);
    for bad in ["per_page=0", "per_page=101", "cursor=nonsense"] {
        let (status, body, _) = app
            .get(&account.key, &format!("/api/conversations/{id}?{bad}"))
            .await;
        assert_error(status, &body, 422, "VALIDATION_ERROR");
    }
}

/// Rows a plan's scans read from the table: what they returned and what they threw away,
/// summed. (A bitmap index scan finds row addresses; its heap scan reads the rows.)
fn rows_read(plan: &Value) -> f64 {
    let node = plan["Node Type"].as_str().unwrap_or("");
    let own = if node.contains("Scan") && node != "Bitmap Index Scan" {
        [
            "Actual Rows",
            "Rows Removed by Filter",
            "Rows Removed by Index Recheck",
        ]
        .iter()
        .filter_map(|field| plan[field].as_f64())
        .sum::<f64>()
            * plan["Actual Loops"].as_f64().unwrap_or(1.0)
    } else {
        0.0
    };
    own + plan["Plans"]
        .as_array()
        .map(|children| children.iter().map(rows_read).sum())
        .unwrap_or(0.0)
}

async fn rows_read_by_a_page(
    app: &TestApp,
    page_sql: &str,
    conversation: uuid::Uuid,
    before: i64,
    span: i64,
) -> f64 {
    #[derive(diesel::QueryableByName)]
    struct Plan {
        #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
        plan: String,
    }
    let mut conn = app.db.connect().await;
    let plan: Plan = diesel::sql_query(format!("EXPLAIN (ANALYZE, FORMAT JSON) {page_sql}"))
        .bind::<diesel::sql_types::Uuid, _>(conversation)
        .bind::<diesel::sql_types::Int8, _>(before)
        .bind::<diesel::sql_types::Int8, _>(span)
        .get_result(&mut conn)
        .await
        .unwrap();
    let plan: Value = serde_json::from_str(&plan.plan).unwrap();
    rows_read(&plan[0]["Plan"])
}

#[tokio::test]
async fn a_history_page_reads_no_more_rows_than_it_holds_with_fresh_or_stale_statistics() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    // Many small conversations make the average one short, as in production.
    for n in 0..30 {
        app.reply(&account.key, assistant, &format!("other-{n}"), "hi")
            .await;
    }
    let (_, first) = app.reply(&account.key, assistant, "long", "start").await;
    let long: uuid::Uuid = first["conversation_id"].as_str().unwrap().parse().unwrap();
    let mut conn = app.db.connect().await;
    // Stale: statistics taken while the conversation was two messages long.
    diesel::sql_query("ANALYZE messages")
        .execute(&mut conn)
        .await
        .unwrap();
    app.db_seed_history(long, 10_000).await;
    for (before, span) in [(10_003, 64), (5_000, 64), (65, 64), (10_003, MAX_SPAN)] {
        for sql in [PAGE_SQL, PROMPT_PAGE_SQL] {
            let read = rows_read_by_a_page(&app, sql, long, before, span).await;
            assert!(
                read <= span as f64,
                "stale statistics: a page of {span} places read {read} rows: {sql}"
            );
        }
    }
    // Fresh.
    diesel::sql_query("ANALYZE messages")
        .execute(&mut conn)
        .await
        .unwrap();
    for (before, span) in [(10_003, 64), (5_000, 64), (65, 64), (10_003, MAX_SPAN)] {
        for sql in [PAGE_SQL, PROMPT_PAGE_SQL] {
            let read = rows_read_by_a_page(&app, sql, long, before, span).await;
            assert!(
                read <= span as f64,
                "fresh statistics: a page of {span} places read {read} rows: {sql}"
            );
        }
    }
}
