//! Knowledge bases: Famulor's API, documents processed in the background, search, and
//! assistants that are given the passages (in the prompt, or by `search_knowledge`).

use std::time::{Duration, Instant};

use anyreply_server::testing::chat_completion;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::{Request, ResponseTemplate};

use crate::util::{TestAccount, TestApp, assert_error, body_of, openai_tool_calls};

const HANDBOOK: &str = "# Shop handbook 🛒

## Returns

You may return any item within 30 days of delivery for a full refund. Use the return label in the parcel.

## Shipping

We ship to Germany, Austria and Switzerland. Shipping to Austria takes three to five working days and costs 4.90 EUR.

## Opening hours

The shop in Vienna is open Monday to Saturday, 9 to 18 o'clock.
";

/// A `multipart/form-data` body with `fields` and the file, and its content type.
fn form(fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> (Vec<u8>, String) {
    let boundary = "anyreply-test-boundary-7f3a";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    if let Some((filename, bytes)) = file {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (body, format!("multipart/form-data; boundary={boundary}"))
}

pub async fn upload(
    app: &TestApp,
    key: &str,
    base: i64,
    fields: &[(&str, &str)],
    file: Option<(&str, &[u8])>,
) -> (StatusCode, Value) {
    let (body, content_type) = form(fields, file);
    let response = app
        .http
        .post(format!(
            "{}/api/user/knowledgebases/{base}/documents",
            app.base
        ))
        .bearer_auth(key)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

pub async fn knowledge_base(app: &TestApp, account: &TestAccount, language: &str) -> i64 {
    let (status, body, _) = app
        .post(
            &account.key,
            "/api/user/knowledgebases",
            &json!({"name": "Handbook", "description": "Returns and shipping", "language": language}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["status"], "empty");
    body["data"]["id"].as_i64().unwrap()
}

/// Waits until the document is no longer `processing`; its answer.
pub async fn processed(app: &TestApp, key: &str, base: i64, document: i64) -> Value {
    let read = || async {
        let (status, body, _) = app
            .get(
                key,
                &format!("/api/user/knowledgebases/{base}/documents/{document}"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["data"].clone()
    };
    anyreply_server::testing::eventually("the document processed", || async {
        read().await["status"] != "processing"
    })
    .await;
    read().await
}

async fn handbook(app: &TestApp, account: &TestAccount) -> (i64, i64) {
    let base = knowledge_base(app, account, "english").await;
    let (status, body) = upload(
        app,
        &account.key,
        base,
        &[("name", "handbook.md"), ("type", "txt")],
        Some(("handbook.md", HANDBOOK.as_bytes())),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["status"], "processing");
    assert_eq!(
        body["message"],
        "Document created successfully. Processing will begin shortly."
    );
    let document = body["data"]["id"].as_i64().unwrap();
    let done = processed(app, &account.key, base, document).await;
    assert_eq!(done["status"], "active", "{done}");
    assert!(done["passages_count"].as_i64().unwrap() >= 1);
    (base, document)
}

#[tokio::test]
async fn a_text_document_is_processed_listed_searched_and_deleted() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let (base, document) = handbook(&app, &account).await;

    let (_, list, _) = app.get(&account.key, "/api/user/knowledgebases").await;
    let listed = &list["data"][0];
    assert_eq!(listed["status"], "active");
    assert_eq!(listed["status_label"], "Active");
    assert_eq!(listed["documents_count"], 1);
    assert_eq!(listed["language"], "english");

    let (status, found, _) = app
        .post(
            &account.key,
            &format!("/api/user/knowledgebases/{base}/search"),
            &json!({"query": "Do you ship to Austria?", "limit": 3}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let best = &found["data"][0];
    assert!(
        best["text"].as_str().unwrap().contains("Austria"),
        "{found}"
    );
    assert_eq!(best["document_id"], document);
    assert_eq!(best["document_name"], "handbook.md");
    assert!(best["score"].as_f64().unwrap() > 0.0);

    assert_eq!(
        stored_counts(&app).await,
        (0, 0),
        "no passage or word is counted twice"
    );

    let (status, deleted, _) = app
        .request(
            &app.base,
            reqwest::Method::DELETE,
            &account.key,
            &format!("/api/user/knowledgebases/{base}/documents/{document}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    let (_, found, _) = app
        .post(
            &account.key,
            &format!("/api/user/knowledgebases/{base}/search"),
            &json!({"query": "Austria"}),
        )
        .await;
    assert_eq!(found["data"], json!([]), "a deleted document is not found");
    // Nor are it and its words counted any longer.
    assert_eq!(stored_counts(&app).await, (0, 0));
    let (_, list, _) = app.get(&account.key, "/api/user/knowledgebases").await;
    assert_eq!(list["data"][0]["status"], "empty");
}

/// How far the counts a search reads (each base's `passages_count`, each word's passages in
/// `knowledge_terms`) are from a count of the passages themselves, summed over all bases:
/// `(0, 0)` when they are right.
async fn stored_counts(app: &TestApp) -> (i64, i64) {
    #[derive(diesel::QueryableByName)]
    struct Off {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        passages: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        words: i64,
    }
    let mut conn = app.db.connect().await;
    let off: Off = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query(
            "SELECT
               (SELECT coalesce(sum(abs(b.passages_count - (SELECT count(*) FROM knowledge_passages p
                                                             WHERE p.knowledge_base_id = b.id))), 0)
                FROM knowledge_bases b)::int8 AS passages,
               (SELECT coalesce(sum(abs(t.passages - coalesce(c.passages, 0))), 0)
                FROM knowledge_terms t
                LEFT JOIN (SELECT p.knowledge_base_id, u.lexeme, count(*) AS passages
                           FROM knowledge_passages p, unnest(p.search) u
                           GROUP BY 1, 2) c USING (knowledge_base_id, lexeme))::int8 AS words",
        ),
        &mut conn,
    )
    .await
    .unwrap();
    (off.passages, off.words)
}

#[tokio::test]
async fn one_long_document_does_not_crowd_out_the_others() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let base = knowledge_base(&app, &account, "english").await;
    // A timetable whose every section is about the ferry, and a page that mentions it once.
    let timetable: String = (1..=6)
        .map(|n| {
            format!(
                "## Ferry timetable, pier {n}\n\nThe ferry leaves pier {n} every hour; the ferry \
                 timetable for pier {n} changes in winter, when the ferry runs less often.\n\n"
            )
        })
        .collect();
    let (status, body) = upload(
        &app,
        &account.key,
        base,
        &[("name", "timetable.md"), ("type", "txt")],
        Some(("timetable.md", timetable.as_bytes())),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let timetable_id = body["data"]["id"].as_i64().unwrap();
    let (status, body) = upload(
        &app,
        &account.key,
        base,
        &[("name", "travel.md"), ("type", "txt")],
        Some((
            "travel.md",
            "## Getting here\n\nCome by train, by bus or by ferry; the station is close."
                .as_bytes(),
        )),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let travel_id = body["data"]["id"].as_i64().unwrap();
    for document in [timetable_id, travel_id] {
        let done = processed(&app, &account.key, base, document).await;
        assert_eq!(done["status"], "active", "{done}");
    }
    let (status, found, _) = app
        .post(
            &account.key,
            &format!("/api/user/knowledgebases/{base}/search"),
            &json!({"query": "ferry timetable", "limit": 10}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let documents: Vec<i64> = found["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| hit["document_id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        documents[..3],
        [timetable_id, timetable_id, travel_id],
        "the timetable's two best passages, then the other page: {found}"
    );
    assert_eq!(
        documents.len(),
        7,
        "the timetable's other passages follow: {found}"
    );
    assert!(documents[3..].iter().all(|id| *id == timetable_id));
    // Ranked by score within each part.
    let scores: Vec<f64> = found["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| hit["score"].as_f64().unwrap())
        .collect();
    assert!(
        scores[2] < scores[3],
        "the other page scores lower than the third timetable passage: {scores:?}"
    );
    assert!(
        scores[3..].windows(2).all(|pair| pair[0] >= pair[1]),
        "{scores:?}"
    );
}

#[tokio::test]
async fn an_html_page_uploaded_as_txt_is_read_as_html() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let base = knowledge_base(&app, &account, "english").await;
    let page = "\u{feff}<!DOCTYPE html>\n<html><head><title>Care guide</title>
        <script>var secretToken = 'zanzibar';</script></head>
        <body><h1>Care guide</h1><h2>Watering</h2>
        <p>Water the <b>orchids</b> once a week with lukewarm rain water.</p></body></html>";
    // Not named `.html`: the bytes tell.
    let (status, body) = upload(
        &app,
        &account.key,
        base,
        &[("name", "care-guide"), ("type", "txt")],
        Some(("care-guide", page.as_bytes())),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let document = body["data"]["id"].as_i64().unwrap();
    let done = processed(&app, &account.key, base, document).await;
    assert_eq!(done["status"], "active", "{done}");

    let search = async |query: &str| {
        let (status, found, _) = app
            .post(
                &account.key,
                &format!("/api/user/knowledgebases/{base}/search"),
                &json!({"query": query, "limit": 5}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{found}");
        found["data"].as_array().unwrap().clone()
    };
    let found = search("how often to water orchids").await;
    let text = found[0]["text"].as_str().unwrap();
    assert!(text.contains("Water the orchids once a week"), "{found:?}");
    assert!(!text.contains("<b>"), "tags are not text: {text}");
    assert_eq!(found[0]["heading"], "Care guide › Watering");
    assert_eq!(
        search("zanzibar").await,
        Vec::<Value>::new(),
        "a script is not text"
    );
}

#[tokio::test]
async fn another_accounts_knowledge_base_is_not_found_anywhere() {
    let app = TestApp::spawn().await;
    let owner = app.db_account("10").await;
    let other = app.db_account("10").await;
    let (base, document) = handbook(&app, &owner).await;
    let key = &other.key;
    let not_found = "KNOWLEDGE_BASE_NOT_FOUND";
    let (s, b, _) = app
        .get(key, &format!("/api/user/knowledgebases/{base}/documents"))
        .await;
    assert_error(s, &b, 404, not_found);
    let (s, b, _) = app
        .post(
            key,
            &format!("/api/user/knowledgebases/{base}/search"),
            &json!({"query": "Austria"}),
        )
        .await;
    assert_error(s, &b, 404, not_found);
    let (s, b, _) = app
        .put(
            key,
            &format!("/api/user/knowledgebases/{base}"),
            &json!({"name": "Mine now"}),
        )
        .await;
    assert_error(s, &b, 404, not_found);
    let (s, b, _) = app
        .get(
            key,
            &format!("/api/user/knowledgebases/{base}/documents/{document}"),
        )
        .await;
    assert_error(s, &b, 404, "DOCUMENT_NOT_FOUND");
    let (s, b) = upload(
        &app,
        key,
        base,
        &[("name", "x"), ("type", "txt")],
        Some(("x.txt", b"x")),
    )
    .await;
    assert_error(s, &b, 404, not_found);
    // Nor through an assistant.
    let (s, b, _) = app
        .post(
            key,
            "/api/user/assistant",
            &json!({"name": "Thief", "knowledgebase_id": base}),
        )
        .await;
    assert_error(s, &b, 404, not_found);
    let (_, list, _) = app.get(key, "/api/user/knowledgebases").await;
    assert_eq!(list["data"], json!([]));
}

#[tokio::test]
async fn bad_documents_are_refused_or_fail_with_a_reason() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let base = knowledge_base(&app, &account, "simple").await;
    // Over 20 MB: 413 and the envelope.
    let big = vec![b'a'; 20 * 1024 * 1024 + 1];
    let (s, b) = upload(
        &app,
        &account.key,
        base,
        &[("name", "big"), ("type", "txt")],
        Some(("big.txt", &big)),
    )
    .await;
    assert_error(s, &b, 413, "PAYLOAD_TOO_LARGE");
    // No type, no file, a bad link.
    let (s, b) = upload(&app, &account.key, base, &[("name", "n")], None).await;
    assert_error(s, &b, 422, "VALIDATION_ERROR");
    let (s, b, _) = app
        .post(
            &account.key,
            &format!("/api/user/knowledgebases/{base}/documents"),
            &json!({"name": "site", "type": "website", "links": [{"link": "ftp://x"}], "relative_links_limit": 51}),
        )
        .await;
    assert_error(s, &b, 422, "VALIDATION_ERROR");
    assert!(b["errors"]["relative_links_limit"].is_array(), "{b}");
    assert!(b["errors"]["links.0.link"].is_array(), "{b}");
    // Not a PDF: it fails, saying why; the knowledge base is `failed`.
    let (s, b) = upload(
        &app,
        &account.key,
        base,
        &[("name", "scan.pdf"), ("type", "pdf")],
        Some(("scan.pdf", b"this is no PDF \x00\x01")),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let done = processed(&app, &account.key, base, b["data"]["id"].as_i64().unwrap()).await;
    assert_eq!(done["status"], "failed");
    assert!(
        done["reason"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("pdf"),
        "{done}"
    );
    let (_, list, _) = app.get(&account.key, "/api/user/knowledgebases").await;
    assert_eq!(list["data"][0]["status"], "failed");
    // An unknown language.
    let (s, b, _) = app
        .post(
            &account.key,
            "/api/user/knowledgebases",
            &json!({"name": "K", "language": "klingon"}),
        )
        .await;
    assert_error(s, &b, 422, "VALIDATION_ERROR");
}

#[tokio::test]
async fn a_prompt_mode_reply_is_given_the_best_passages_and_records_them() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let (base, document) = handbook(&app, &account).await;
    let assistant = app
        .assistant(
            &account,
            &json!({"name": "Shop", "knowledgebase_id": base, "knowledgebase_mode": "prompt"}),
        )
        .await;
    let (status, answer) = app
        .reply(
            &account.key,
            assistant,
            "+43 1",
            "How long does shipping to Austria take?",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // The Famulor answer keeps its shape.
    assert!(answer.get("knowledge").is_none(), "{answer}");
    let requests = app.llm_requests().await;
    let prompt = requests.last().unwrap()["messages"].to_string();
    assert!(prompt.contains("three to five working days"), "{prompt}");

    let conversation = answer["conversation_id"].as_str().unwrap();
    let (_, history, _) = app
        .get(&account.key, &format!("/api/conversations/{conversation}"))
        .await;
    let reply = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "assistant")
        .unwrap()
        .clone();
    let given = reply["knowledge"].as_array().unwrap();
    assert!(!given.is_empty(), "{reply}");
    assert_eq!(given[0]["document_id"], document);
    assert_eq!(given[0]["document_name"], "handbook.md");
    assert!(given[0]["passage_id"].as_i64().is_some());
    // And in the `reply.created` event.
    #[derive(diesel::QueryableByName)]
    struct Stored {
        #[diesel(sql_type = diesel::sql_types::Jsonb)]
        message: Value,
    }
    let mut conn = app.db.connect().await;
    let event: Stored = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query("SELECT message FROM events WHERE kind = 'reply.created'"),
        &mut conn,
    )
    .await
    .unwrap();
    assert_eq!(
        event.message["knowledge"], reply["knowledge"],
        "{}",
        event.message
    );

    // The document deleted, the next reply reads nothing of it.
    app.request(
        &app.base,
        reqwest::Method::DELETE,
        &account.key,
        &format!("/api/user/knowledgebases/{base}/documents/{document}"),
        None,
    )
    .await;
    app.reply(
        &account.key,
        assistant,
        "+43 1",
        "And shipping to Austria again?",
    )
    .await;
    let requests = app.llm_requests().await;
    let prompt = requests.last().unwrap()["messages"].to_string();
    assert!(!prompt.contains("three to five working days"), "{prompt}");
}

#[tokio::test]
async fn a_function_call_mode_model_searches_when_it_decides_to() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let (base, document) = handbook(&app, &account).await;
    let assistant = app
        .assistant(
            &account,
            &json!({"name": "Shop", "knowledgebase_id": base, "knowledgebase_mode": "function_call"}),
        )
        .await;
    app.script_model(|request: &Request| {
        let body = body_of(request);
        let searched = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["role"] == "tool");
        let answer = if searched {
            chat_completion("Returns are free within 30 days.")
        } else {
            assert!(
                body["tools"].to_string().contains("search_knowledge"),
                "{body}"
            );
            openai_tool_calls(&[("s1", "search_knowledge", json!({"query": "return policy"}))])
        };
        ResponseTemplate::new(200).set_body_json(answer)
    })
    .await;
    let (status, answer) = app
        .reply(
            &account.key,
            assistant,
            "web:v1",
            "What is your return policy?",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let call = &answer["function_calls"][0];
    assert_eq!(call["name"], "search_knowledge");
    assert!(call["result"].to_string().contains("30 days"), "{answer}");
    let conversation = answer["conversation_id"].as_str().unwrap();
    let (_, history, _) = app
        .get(&account.key, &format!("/api/conversations/{conversation}"))
        .await;
    let reply = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "assistant")
        .unwrap()
        .clone();
    assert_eq!(reply["knowledge"][0]["document_id"], document, "{reply}");
}

#[tokio::test]
async fn a_document_left_processing_by_a_crash_is_taken_up_again() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let (base, document) = handbook(&app, &account).await;
    // As a process that died holding it would leave it: processing, its lease run out.
    let mut conn = app.db.connect().await;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(format!(
            "UPDATE knowledge_documents SET status = 'processing', passages_count = 0,
                 lease_until = now() - interval '1 second' WHERE id = {document}"
        )),
        &mut conn,
    )
    .await
    .unwrap();
    // Any change wakes the worker; a restarted server looks at start-up.
    app.put(
        &account.key,
        &format!("/api/user/knowledgebases/{base}"),
        &json!({"language": "simple"}),
    )
    .await;
    let done = processed(&app, &account.key, base, document).await;
    assert_eq!(done["status"], "active", "{done}");
}

/// A one-page PDF of `lines` in Helvetica, with a real text layer.
fn pdf_of(lines: &[&str]) -> Vec<u8> {
    use pdf_extract::content::{Content, Operation};
    use pdf_extract::{Document, Object, Stream, dictionary};
    let mut document = Document::with_version("1.5");
    let pages_id = document.new_object_id();
    let font_id = document.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica",
    });
    let resources_id =
        document.add_object(dictionary! { "Font" => dictionary! { "F1" => font_id } });
    let mut operations = vec![
        Operation::new("BT", vec![]),
        Operation::new("Tf", vec!["F1".into(), 12.into()]),
        Operation::new("Td", vec![72.into(), 770.into()]),
    ];
    for line in lines {
        operations.push(Operation::new("Tj", vec![Object::string_literal(*line)]));
        operations.push(Operation::new("Td", vec![0.into(), (-14).into()]));
    }
    operations.push(Operation::new("ET", vec![]));
    let content = Content { operations }.encode().unwrap();
    let content_id = document.add_object(Stream::new(dictionary! {}, content));
    let page_id = document.add_object(dictionary! {
        "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
    });
    document.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages", "Kids" => vec![page_id.into()], "Count" => 1,
            "Resources" => resources_id,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let catalog_id = document.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    document.trailer.set("Root", catalog_id);
    let mut bytes = Vec::new();
    document.save_to(&mut bytes).unwrap();
    bytes
}

/// A DOCX with a heading and a paragraph, written by docx-rs.
fn docx_of(heading: &str, text: &str) -> Vec<u8> {
    use docx_rs::{Docx, Paragraph, Run, Style, StyleType};
    let docx = Docx::new()
        .add_style(Style::new("Heading1", StyleType::Paragraph).name("heading 1"))
        .add_paragraph(
            Paragraph::new()
                .style("Heading1")
                .add_run(Run::new().add_text(heading)),
        )
        .add_paragraph(Paragraph::new().add_run(Run::new().add_text(text)));
    let mut bytes = std::io::Cursor::new(Vec::new());
    docx.build().pack(&mut bytes).unwrap();
    bytes.into_inner()
}

async fn search_texts(app: &TestApp, key: &str, base: i64, query: &str) -> Vec<Value> {
    let (status, found, _) = app
        .post(
            key,
            &format!("/api/user/knowledgebases/{base}/search"),
            &json!({"query": query, "limit": 10}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    found["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_real_pdf_and_docx_are_read_and_searched() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let base = knowledge_base(&app, &account, "english").await;
    let pdf = pdf_of(&[
        "Warranty",
        "Every kettle carries a two year warranty from the date of purchase.",
    ]);
    let (s, b) = upload(
        &app,
        &account.key,
        base,
        &[("name", "warranty.pdf"), ("type", "pdf")],
        Some(("warranty.pdf", &pdf)),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let pdf_id = b["data"]["id"].as_i64().unwrap();
    let docx = docx_of(
        "Gift wrapping",
        "Gift wrapping costs 3 euros and is available for every order 🎁.",
    );
    let (s, b) = upload(
        &app,
        &account.key,
        base,
        &[
            ("name", "extras.docx"),
            ("type", "docx"),
            ("description", "Extras"),
        ],
        Some(("extras.docx", &docx)),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let docx_id = b["data"]["id"].as_i64().unwrap();
    for id in [pdf_id, docx_id] {
        let done = processed(&app, &account.key, base, id).await;
        assert_eq!(done["status"], "active", "{done}");
    }
    let hits = search_texts(
        &app,
        &account.key,
        base,
        "how long is the warranty on a kettle",
    )
    .await;
    assert_eq!(hits[0]["document_id"], pdf_id, "{hits:?}");
    let hits = search_texts(&app, &account.key, base, "gift wrapping price").await;
    assert_eq!(hits[0]["document_id"], docx_id, "{hits:?}");
    assert_eq!(hits[0]["heading"], "Gift wrapping", "{hits:?}");
    assert!(hits[0]["text"].as_str().unwrap().contains('🎁'));
}

#[tokio::test]
async fn a_website_is_read_through_its_links_honouring_robots_txt() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer};
    let app = TestApp::spawn_with(|s| {
        s.outbound_allowed_hosts =
            anyreply_server::tools::guard::AddressPolicy::parse("127.0.0.1").unwrap();
    })
    .await;
    let account = app.db_account("10").await;
    let base = knowledge_base(&app, &account, "english").await;
    let site = MockServer::start().await;
    let html = |body: &str| {
        ResponseTemplate::new(200).set_body_raw(
            format!(
                "<!doctype html><html><head><title>Shop</title></head><body>{body}</body></html>"
            ),
            "text/html; charset=utf-8",
        )
    };
    let pages = [
        (
            "/robots.txt",
            ResponseTemplate::new(200)
                .set_body_raw("User-agent: *\nDisallow: /private\n", "text/plain"),
        ),
        (
            "/",
            html(
                "<h1>Welcome</h1><p>Our shop sells kettles.</p><a href=\"/faq\">FAQ</a> <a href=\"/private\">staff</a> <a href=\"/gone\">old</a> <a href=\"https://example.invalid/x\">elsewhere</a>",
            ),
        ),
        (
            "/faq",
            html("<h1>Shipping</h1><p>We ship to Austria within five working days.</p>"),
        ),
        (
            "/private",
            html("<p>The staff discount code is KETTLE50.</p>"),
        ),
    ];
    for (at, answer) in pages {
        Mock::given(method("GET"))
            .and(path(at))
            .respond_with(answer)
            .mount(&site)
            .await;
    }
    let (s, b, _) = app
        .post(
            &account.key,
            &format!("/api/user/knowledgebases/{base}/documents"),
            &json!({"name": "Website", "type": "website", "url": format!("{}/", site.uri()), "relative_links_limit": 10}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["data"]["type_label"], "Website");
    let done = processed(&app, &account.key, base, b["data"]["id"].as_i64().unwrap()).await;
    assert_eq!(done["status"], "active", "{done}");
    let hits = search_texts(&app, &account.key, base, "Do you ship to Austria?").await;
    assert!(
        hits[0]["url"].as_str().unwrap().ends_with("/faq"),
        "{hits:?}"
    );
    assert!(
        search_texts(&app, &account.key, base, "staff discount code")
            .await
            .iter()
            .all(|h| !h["text"].as_str().unwrap().contains("KETTLE50"))
    );
    let requested: Vec<String> = site
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.path().to_owned())
        .collect();
    assert!(!requested.contains(&"/private".to_owned()), "{requested:?}");

    // A site whose start page is missing fails, saying so.
    let (_, b, _) = app
        .post(
            &account.key,
            &format!("/api/user/knowledgebases/{base}/documents"),
            &json!({"name": "Old site", "type": "website", "url": format!("{}/nothing-here", site.uri())}),
        )
        .await;
    let done = processed(&app, &account.key, base, b["data"]["id"].as_i64().unwrap()).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert!(done["reason"].as_str().unwrap().contains("404"), "{done}");
}

#[tokio::test]
async fn a_document_read_again_is_found_all_the_while() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let (base, document) = handbook(&app, &account).await;
    // A change of language reads every document again; searches meanwhile see the old
    // passages or the new, never none.
    let (s, b, _) = app
        .put(
            &account.key,
            &format!("/api/user/knowledgebases/{base}"),
            &json!({"language": "simple"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let started = Instant::now();
    loop {
        let hits = search_texts(&app, &account.key, base, "Austria").await;
        assert!(
            !hits.is_empty(),
            "a search found nothing while the document was read again"
        );
        let (_, doc, _) = app
            .get(
                &account.key,
                &format!("/api/user/knowledgebases/{base}/documents/{document}"),
            )
            .await;
        if doc["data"]["status"] == "active" && started.elapsed() > Duration::from_millis(200) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20));
    }
    let (_, list, _) = app.get(&account.key, "/api/user/knowledgebases").await;
    assert_eq!(list["data"][0]["language"], "simple");
}
