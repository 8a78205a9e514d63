//! Knowledge search with embeddings: a `wiremock` `/v1/embeddings` whose vectors put words of
//! one meaning ("package", "parcel", "shipping") on one axis, and pgvector where PostgreSQL
//! has it (the tests that need it say so and skip themselves where it has not).

use anyreply_server::models::knowledge;
use anyreply_server::testing::eventually;
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, Request, ResponseTemplate};

use crate::knowledge::{knowledge_base, processed, upload};

use crate::util::{TestAccount, TestApp, body_of};

const MODEL: &str = "test-embed";
const DIMS: usize = 16;

const HANDBOOK: &str = "# Shop handbook

## Shipping

Parcels to Austria arrive within three to five working days.

## Returns

Items may be sent back within 30 days for a full refund.

## Opening hours

The shop in Vienna opens Monday to Saturday, 9 to 18 o'clock.
";

/// Not one of its words is in the handbook (in English, "when", "will", "my", "to" and "me"
/// are stop words; "package" and "get" are in no passage), but "package" means shipping.
const PACKAGE_QUERY: &str = "When will my package get to me?";

/// The axis of a word that carries meaning here.
fn meaning(word: &str) -> Option<usize> {
    match word {
        "ship" | "shipping" | "parcel" | "parcels" | "package" | "packages" | "delivery"
        | "arrive" => Some(0),
        "return" | "returns" | "refund" | "back" => Some(1),
        "open" | "opens" | "opening" | "hours" => Some(2),
        _ => None,
    }
}

/// A bag of words in [`DIMS`] numbers: each meaningful word adds 1 on its axis, any other a
/// little on an axis of its hash, so that similar texts get similar vectors.
fn embed(text: &str) -> Vec<f32> {
    let mut vector = vec![0.0f32; DIMS];
    for word in text
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        match meaning(word) {
            Some(axis) => vector[axis] += 1.0,
            None => {
                let hash = word.bytes().fold(2_166_136_261u32, |h, b| {
                    (h ^ u32::from(b)).wrapping_mul(16_777_619)
                });
                vector[3 + hash as usize % (DIMS - 3)] += 0.1;
            }
        }
    }
    vector
}

/// Answers as OpenAI's `/v1/embeddings` does.
fn embeddings(request: &Request) -> ResponseTemplate {
    let body = body_of(request);
    let data: Vec<Value> = body["input"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(index, input)| {
            json!({"object": "embedding", "index": index, "embedding": embed(input.as_str().unwrap())})
        })
        .collect();
    ResponseTemplate::new(200).set_body_json(json!({
        "object": "list", "data": data, "model": body["model"],
        "usage": {"prompt_tokens": 1, "total_tokens": 1}
    }))
}

async fn mount_embeddings(app: &TestApp) {
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .respond_with(embeddings)
        .with_priority(10)
        .mount(&app.llm)
        .await;
}

async fn spawn() -> TestApp {
    let app =
        TestApp::spawn_with(|settings| settings.embedding_model = Some(MODEL.to_owned())).await;
    mount_embeddings(&app).await;
    app
}

/// Whether the tests' PostgreSQL has pgvector; if not, says that `test` is skipped.
async fn pgvector(app: &TestApp, test: &str) -> bool {
    #[derive(QueryableByName)]
    struct Found {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        found: bool,
    }
    let mut conn = app.db.connect().await;
    let found = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') AS found",
    )
    .get_result::<Found>(&mut conn)
    .await
    .unwrap()
    .found;
    if !found {
        eprintln!(
            "skipping {test}'s vector part: this PostgreSQL has no pgvector (install it with ../shared/vendor/pgvector/install.sh, as .ci/run does)"
        );
    }
    found
}

/// The bodies `/v1/embeddings` received.
async fn embedding_requests(app: &TestApp) -> Vec<Value> {
    app.llm
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v1/embeddings")
        .map(body_of)
        .collect()
}

async fn handbook(app: &TestApp, account: &TestAccount, text: &str) -> (i64, Value) {
    let base = knowledge_base(app, account, "english").await;
    let (status, body) = upload(
        app,
        &account.key,
        base,
        &[("name", "handbook.md"), ("type", "txt")],
        Some(("handbook.md", text.as_bytes())),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let document = body["data"]["id"].as_i64().unwrap();
    let done = processed(app, &account.key, base, document).await;
    assert_eq!(done["status"], "active", "{done}");
    (base, done)
}

async fn search(app: &TestApp, key: &str, base: i64, query: &str) -> Vec<Value> {
    let (status, found, _) = app
        .post(
            key,
            &format!("/api/user/knowledgebases/{base}/search"),
            &json!({"query": query, "limit": 5}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    found["data"].as_array().unwrap().clone()
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::Int8)]
        n: i64,
    }
    let mut conn = app.db.connect().await;
    diesel::sql_query(sql)
        .get_result::<Count>(&mut conn)
        .await
        .unwrap()
        .n
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[tokio::test]
async fn vectors_find_a_passage_whose_words_the_query_lacks() {
    let app = spawn().await;
    let account = app.db_account("10").await;
    if !pgvector(&app, "vectors_find_a_passage_whose_words_the_query_lacks").await {
        // With the model set but no pgvector: full-text search alone, no embeddings asked.
        let (base, _) = handbook(&app, &account, HANDBOOK).await;
        let found = search(&app, &account.key, base, "Do you ship parcels to Austria?").await;
        assert!(found[0]["text"].as_str().unwrap().contains("Austria"));
        assert!(embedding_requests(&app).await.is_empty());
        return;
    }
    let (base, document) = handbook(&app, &account, HANDBOOK).await;
    let passages = document["passages_count"].as_i64().unwrap();
    assert_eq!(passages, 3, "{document}");
    // Stored with the passages: one vector each, of the model named in the request.
    let requests = embedding_requests(&app).await;
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0]["model"], MODEL);
    assert_eq!(requests[0]["input"].as_array().unwrap().len(), 3);
    assert!(
        requests[0]["input"][0]
            .as_str()
            .unwrap()
            .starts_with("Shop handbook › Shipping\n\nParcels"),
        "the heading path is embedded with the text: {}",
        requests[0]["input"][0]
    );
    assert_eq!(
        count(
            &app,
            &format!("SELECT count(*) AS n FROM knowledge_embeddings WHERE model = '{MODEL}' AND dims = {DIMS}")
        )
        .await,
        3
    );

    // Full-text search alone finds nothing for the words; the fusion finds it by meaning.
    let mut conn = app.db.connect().await;
    let by_words = knowledge::search(&mut conn, base, PACKAGE_QUERY, 5)
        .await
        .unwrap();
    assert!(by_words.is_empty(), "{by_words:?}");
    let found = search(&app, &account.key, base, PACKAGE_QUERY).await;
    assert!(
        found[0]["text"]
            .as_str()
            .unwrap()
            .contains("three to five working days"),
        "{found:?}"
    );
    // Only the vector ranking holds it: 1 / (60 + 1).
    assert!(
        close(found[0]["score"].as_f64().unwrap(), 1.0 / 61.0),
        "{found:?}"
    );
    let query = embedding_requests(&app).await.pop().unwrap();
    assert_eq!(query, json!({"model": MODEL, "input": [PACKAGE_QUERY]}));

    // First in both rankings: 2 / (60 + 1); the others follow by their vector rank.
    let found = search(&app, &account.key, base, "Do you ship parcels to Austria?").await;
    assert!(
        found[0]["text"].as_str().unwrap().contains("Austria"),
        "{found:?}"
    );
    assert!(
        close(found[0]["score"].as_f64().unwrap(), 2.0 / 61.0),
        "{found:?}"
    );
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        close(found[1]["score"].as_f64().unwrap(), 1.0 / 62.0),
        "{found:?}"
    );

    // A prompt-mode reply is given it too.
    let assistant = app
        .assistant(
            &account,
            &json!({"name": "Shop", "knowledgebase_id": base, "knowledgebase_mode": "prompt"}),
        )
        .await;
    let (status, answer) = app
        .reply(&account.key, assistant, "+43 1", PACKAGE_QUERY)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let prompt = app.llm_requests().await.last().unwrap()["messages"].to_string();
    assert!(prompt.contains("three to five working days"), "{prompt}");
}

#[tokio::test]
async fn passages_are_embedded_in_batches_of_64() {
    let app = spawn().await;
    let account = app.db_account("10").await;
    if !pgvector(&app, "passages_are_embedded_in_batches_of_64").await {
        return;
    }
    let mut text = String::from("# Catalogue\n");
    for n in 0..70 {
        text.push_str(&format!(
            "\n## Item {n}\n\nArticle number {n} of the catalogue.\n"
        ));
    }
    let (_, document) = handbook(&app, &account, &text).await;
    assert_eq!(document["passages_count"], 70, "{document}");
    let sizes: Vec<usize> = embedding_requests(&app)
        .await
        .iter()
        .map(|r| r["input"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [64, 6]);
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM knowledge_embeddings").await,
        70
    );
}

#[tokio::test]
async fn a_failing_embedding_model_leaves_full_text_search() {
    let app =
        TestApp::spawn_with(|settings| settings.embedding_model = Some(MODEL.to_owned())).await;
    let account = app.db_account("10").await;
    if !pgvector(&app, "a_failing_embedding_model_leaves_full_text_search").await {
        return;
    }
    // The model down while the document is read: it is active, searched by its words.
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&app.llm)
        .await;
    let (base, document) = handbook(&app, &account, HANDBOOK).await;
    assert_eq!(document["reason"], Value::Null, "{document}");
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM knowledge_embeddings").await,
        0
    );
    // And while a query is embedded: the words still find the passage.
    let found = search(&app, &account.key, base, "Do you ship parcels to Austria?").await;
    assert!(
        found[0]["text"].as_str().unwrap().contains("Austria"),
        "{found:?}"
    );
    assert!(found[0]["score"].as_f64().unwrap() > 0.0);
    assert!(
        embedding_requests(&app).await.last().unwrap()["input"]
            == json!(["Do you ship parcels to Austria?"]),
        "the query's vector was asked for"
    );

    // The model back, a process's worker embeds what is missing.
    app.llm.reset().await;
    mount_embeddings(&app).await;
    let mut app = app;
    let settings = app.settings.clone();
    app.start_server(settings).await;
    eventually("the missing vectors embedded", || async {
        count(&app, "SELECT count(*) AS n FROM knowledge_embeddings").await >= 3
    })
    .await;
    let found = search(&app, &account.key, base, PACKAGE_QUERY).await;
    assert!(
        found[0]["text"]
            .as_str()
            .unwrap()
            .contains("three to five working days"),
        "{found:?}"
    );
}
