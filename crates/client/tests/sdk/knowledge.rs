//! `client.knowledgebases()`: each call's method, path and body, and its typed answer.

use std::collections::BTreeMap;
use std::time::Duration;

use anyreply_client::{
    DocumentStatus, DocumentType, Error, ErrorCode, KnowledgeBaseInput, KnowledgeBaseStatus,
    Upload, Website,
};
use anyreply_core::limits::MAX_DOCUMENT_BYTES;
use serde_json::{Value, json};
use wiremock::matchers::{body_json, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::{client, error_body, fast_policy};

fn knowledge_base(id: i64, name: &str) -> Value {
    json!({
        "id": id, "name": name, "description": null, "status": "empty", "status_label": "Empty",
        "documents_count": 0, "assistants_count": 0, "language": "english",
        "created_at": "2026-12-04T10:00:00Z", "updated_at": "2026-12-04T10:00:00Z"
    })
}

fn document(id: i64, kind: &str, status: &str) -> Value {
    json!({
        "id": id, "knowledgebase_id": 1, "name": "FAQ", "description": null, "type": kind,
        "type_label": kind.to_uppercase(), "status": status, "status_label": status,
        "reason": null, "passages_count": 0,
        "created_at": "2026-12-04T10:00:00Z", "updated_at": "2026-12-04T10:00:00Z"
    })
}

fn answer(status: u16, body: Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(body)
}

#[tokio::test]
async fn knowledge_bases_are_listed_created_updated_and_deleted() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/user/knowledgebases"))
        .respond_with(answer(
            200,
            json!({ "data": [knowledge_base(1, "FAQ"), knowledge_base(2, "Shop")] }),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/user/knowledgebases"))
        .and(body_json(json!({ "name": "FAQ", "language": "english" })))
        .respond_with(answer(
            201,
            json!({ "message": "Knowledge base created", "data": knowledge_base(1, "FAQ") }),
        ))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/api/user/knowledgebases/1"))
        .and(body_json(json!({ "name": "Help" })))
        .respond_with(answer(
            200,
            json!({ "message": "Knowledge base updated", "data": knowledge_base(1, "Help") }),
        ))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/api/user/knowledgebases/1"))
        .respond_with(answer(
            200,
            json!({ "message": "Knowledge base deleted", "data": knowledge_base(1, "Help") }),
        ))
        .mount(&server)
        .await;
    let sdk = client(&server, fast_policy());
    let kbs = sdk.knowledgebases();

    let listed = kbs.list().await.unwrap();
    assert_eq!(listed.iter().map(|kb| kb.id).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(listed[0].status, KnowledgeBaseStatus::Empty);
    let created = kbs
        .create(&KnowledgeBaseInput {
            name: Some("FAQ".into()),
            description: None,
            language: Some("english".into()),
        })
        .await
        .unwrap();
    assert_eq!((created.id, created.language.as_str()), (1, "english"));
    let rename = KnowledgeBaseInput {
        name: Some("Help".into()),
        description: None,
        language: None,
    };
    assert_eq!(kbs.update(1, &rename).await.unwrap().name, "Help");
    assert_eq!(kbs.delete(1).await.unwrap().id, 1);

    let received = server.received_requests().await.unwrap();
    let keyed: Vec<_> = received
        .iter()
        .map(|r| (r.method.as_str(), r.headers.contains_key("idempotency-key")))
        .collect();
    assert_eq!(
        keyed,
        [
            ("GET", false),
            ("POST", true),
            ("PUT", false),
            ("DELETE", false)
        ]
    );
}

#[tokio::test]
async fn documents_are_listed_read_and_deleted() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/user/knowledgebases/1/documents"))
        .respond_with(answer(
            200,
            json!({ "data": [document(3, "txt", "active"), document(4, "website", "failed")] }),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/user/knowledgebases/1/documents/3"))
        .respond_with(answer(200, json!({ "data": document(3, "txt", "active") })))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/api/user/knowledgebases/1/documents/3"))
        .respond_with(answer(
            200,
            json!({ "message": "Document deleted", "data": document(3, "txt", "active") }),
        ))
        .mount(&server)
        .await;
    let sdk = client(&server, fast_policy());
    let kbs = sdk.knowledgebases();

    let documents = kbs.documents(1).await.unwrap();
    let kinds: Vec<_> = documents.iter().map(|d| (d.kind, d.status)).collect();
    assert_eq!(
        kinds,
        [
            (DocumentType::Txt, DocumentStatus::Active),
            (DocumentType::Website, DocumentStatus::Failed)
        ]
    );
    assert_eq!(kbs.document(1, 3).await.unwrap().kind, DocumentType::Txt);
    assert_eq!(kbs.delete_document(1, 3).await.unwrap().id, 3);
}

/// A multipart body's parts by field name: (filename, content-type, bytes).
type Parts = BTreeMap<String, (Option<String>, Option<String>, Vec<u8>)>;

fn multipart_parts(request: &Request) -> Parts {
    let content_type = request.headers["content-type"].to_str().unwrap();
    let boundary = content_type
        .strip_prefix("multipart/form-data; boundary=")
        .unwrap_or_else(|| panic!("not multipart: {content_type}"));
    let delimiter = format!("--{boundary}");
    let body = &request.body;
    let mut parts = Parts::new();
    let starts: Vec<usize> = body
        .windows(delimiter.len())
        .enumerate()
        .filter(|(_, window)| *window == delimiter.as_bytes())
        .map(|(at, _)| at)
        .collect();
    for pair in starts.windows(2) {
        // Each part: delimiter, CRLF, headers, CRLF CRLF, content, CRLF, next delimiter.
        let part = &body[pair[0] + delimiter.len() + 2..pair[1] - 2];
        let split = part.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let headers = String::from_utf8(part[..split].to_vec()).unwrap();
        let content = part[split + 4..].to_vec();
        let attribute = |key: &str| {
            let start = headers.find(&format!("; {key}=\""))? + key.len() + 4;
            let end = start + headers[start..].find('"')?;
            Some(headers[start..end].to_owned())
        };
        let part_type = headers
            .lines()
            .filter_map(|line| line.split_once(": "))
            .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
            .map(|(_, value)| value.to_owned());
        parts.insert(
            attribute("name").unwrap(),
            (attribute("filename"), part_type, content),
        );
    }
    assert!(body.ends_with(format!("{delimiter}--\r\n").as_bytes()));
    parts
}

fn text_part(parts: &Parts, name: &str) -> String {
    let (filename, _, content) = &parts[name];
    assert_eq!(filename, &None, "{name} is a text field");
    String::from_utf8(content.clone()).unwrap()
}

#[tokio::test]
async fn an_upload_is_multipart_with_its_fields_and_file_and_retried_alike() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/user/knowledgebases/1/documents"))
        .respond_with(answer(503, error_body("SERVICE_UNAVAILABLE")))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/user/knowledgebases/1/documents"))
        .respond_with(answer(
            201,
            json!({ "message": "Document added", "data": document(3, "txt", "processing") }),
        ))
        .mount(&server)
        .await;
    let sdk = client(&server, fast_policy());
    let contents = b"Opening hours\r\n\r\nMon-Fri 9-17. --not a boundary\n".to_vec();
    let upload = Upload::new("FAQ", DocumentType::Txt, "faq.txt", contents.clone())
        .description("What customers ask");
    let added = sdk.knowledgebases().upload(1, upload).await.unwrap();
    assert_eq!((added.id, added.status), (3, DocumentStatus::Processing));

    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 2, "the 503 was retried");
    for request in &received {
        let parts = multipart_parts(request);
        assert_eq!(text_part(&parts, "name"), "FAQ");
        assert_eq!(text_part(&parts, "description"), "What customers ask");
        assert_eq!(text_part(&parts, "type"), "txt");
        let (filename, part_type, bytes) = &parts["file"];
        assert_eq!(filename.as_deref(), Some("faq.txt"));
        assert_eq!(part_type.as_deref(), Some("text/plain"));
        assert_eq!(bytes, &contents);
        assert_eq!(parts.len(), 4);
        assert_eq!(
            request.headers["content-length"].to_str().unwrap(),
            request.body.len().to_string()
        );
    }
    assert_eq!(
        received[0].headers["idempotency-key"],
        received[1].headers["idempotency-key"]
    );
}

#[tokio::test]
async fn an_upload_over_20_mb_or_of_a_website_is_refused_without_a_request() {
    let server = MockServer::start().await;
    let sdk = client(&server, fast_policy());
    let too_large = Upload::new(
        "Manual",
        DocumentType::Pdf,
        "manual.pdf",
        vec![0; MAX_DOCUMENT_BYTES + 1],
    );
    let error = sdk.knowledgebases().upload(1, too_large).await.unwrap_err();
    assert!(matches!(&error, Error::Invalid(_)), "{error:?}");
    assert!(error.to_string().contains("manual.pdf"), "{error}");
    assert!(error.to_string().contains("20 MB"), "{error}");

    let website = Upload::new("Site", DocumentType::Website, "site.html", b"<p>".to_vec());
    let error = sdk.knowledgebases().upload(1, website).await.unwrap_err();
    assert!(error.to_string().contains("add_website"), "{error}");

    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_website_is_json_with_each_link_an_object() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/user/knowledgebases/1/documents"))
        .and(body_json(json!({
            "name": "Shop", "type": "website", "url": "https://shop.example.com",
            "links": [{ "link": "https://shop.example.com/faq" }], "relative_links_limit": 10
        })))
        .respond_with(answer(
            201,
            json!({ "message": "Document added", "data": document(4, "website", "processing") }),
        ))
        .mount(&server)
        .await;
    let sdk = client(&server, fast_policy());
    let website = Website {
        name: "Shop".into(),
        url: Some("https://shop.example.com".into()),
        links: vec!["https://shop.example.com/faq".into()],
        relative_links_limit: Some(10),
        ..Default::default()
    };
    let added = sdk.knowledgebases().add_website(1, &website).await.unwrap();
    assert_eq!(added.kind, DocumentType::Website);
    let received = server.received_requests().await.unwrap();
    assert!(received[0].headers.contains_key("idempotency-key"));
}

#[tokio::test]
async fn search_sends_the_query_and_the_limit_if_given() {
    let server = MockServer::start().await;
    let hit = json!({
        "passage_id": 12, "document_id": 3, "document_name": "FAQ", "heading": "Opening hours",
        "text": "Mon-Fri 9-17.", "url": null, "score": 0.8
    });
    Mock::given(method("POST"))
        .and(path("/api/user/knowledgebases/1/search"))
        .and(body_json(
            json!({ "query": "When are you open?", "limit": 3 }),
        ))
        .respond_with(answer(200, json!({ "data": [hit] })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/user/knowledgebases/1/search"))
        .and(body_json(json!({ "query": "Returns?" })))
        .respond_with(answer(200, json!({ "data": [] })))
        .mount(&server)
        .await;
    let sdk = client(&server, fast_policy());
    let hits = sdk
        .knowledgebases()
        .search(1, "When are you open?", Some(3))
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].heading.as_deref(), Some("Opening hours"));
    let none = sdk
        .knowledgebases()
        .search(1, "Returns?", None)
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn a_missing_knowledge_base_or_document_is_its_typed_404_and_not_retried() {
    let server = MockServer::start().await;
    Mock::given(path("/api/user/knowledgebases/9/documents"))
        .respond_with(answer(404, error_body("KNOWLEDGE_BASE_NOT_FOUND")))
        .mount(&server)
        .await;
    Mock::given(path("/api/user/knowledgebases/1/documents/9"))
        .respond_with(answer(404, error_body("DOCUMENT_NOT_FOUND")))
        .mount(&server)
        .await;
    let sdk = client(&server, fast_policy());
    let kbs = sdk.knowledgebases();

    let error = kbs.documents(9).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::KnowledgeBaseNotFound));
    assert_eq!(error.api().unwrap().status, 404);
    let upload = Upload::new("FAQ", DocumentType::Txt, "faq.txt", b"hi".to_vec());
    let error = kbs.upload(9, upload).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::KnowledgeBaseNotFound));
    let error = kbs.delete_document(1, 9).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::DocumentNotFound));
    let error = kbs
        .wait_until_processed(1, 9, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::DocumentNotFound));

    assert_eq!(server.received_requests().await.unwrap().len(), 4);
}

#[tokio::test]
async fn waiting_reads_the_document_until_it_is_processed() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/user/knowledgebases/1/documents/3"))
        .respond_with(answer(
            200,
            json!({ "data": document(3, "txt", "processing") }),
        ))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/user/knowledgebases/1/documents/3"))
        .respond_with(answer(200, json!({ "data": document(3, "txt", "failed") })))
        .mount(&server)
        .await;
    let sdk = client(&server, fast_policy());
    let document = sdk
        .knowledgebases()
        .wait_until_processed(1, 3, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(document.status, DocumentStatus::Failed);
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn waiting_stops_at_the_timeout_with_the_document_still_processing() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/user/knowledgebases/1/documents/3"))
        .respond_with(answer(
            200,
            json!({ "data": document(3, "txt", "processing") }),
        ))
        .mount(&server)
        .await;
    let sdk = client(&server, fast_policy());
    let started = std::time::Instant::now();
    let document = sdk
        .knowledgebases()
        .wait_until_processed(1, 3, Duration::from_millis(60))
        .await
        .unwrap();
    assert_eq!(document.status, DocumentStatus::Processing);
    assert!(started.elapsed() < Duration::from_secs(2));
    // The waits grew (1 ms doubling to 5 ms), but it read more than once.
    assert!(server.received_requests().await.unwrap().len() > 2);
}
