//! The database taken away at each step of a reply with a tool: through a TCP proxy that cuts
//! every connection (and refuses new ones until restored), or by `pg_terminate_backend`. The
//! caller gets 503 with `Retry-After`, never 500; the server answers again once the database
//! is back, without a restart; and a retry under the same key never calls the tool twice.

use std::time::Duration;

use anyreply_server::testing::DbProxy;
use anyreply_server::tools::guard::AddressPolicy;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::util::{TestAccount, TestApp, chat_completion, money, openai_tool_calls};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    /// Before the request: the server cannot reach its database at all.
    BeforeTheRequest,
    /// While the model decides to call the tool: the call cannot be journaled.
    WhileTheModelDecides,
    /// While the tool's endpoint is working on the call.
    WhileTheToolRuns,
    /// While the model writes the answer, after the tool's result was recorded.
    WhileTheModelAnswers,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Every connection cut, new ones refused, until restored.
    ProxyCut,
    /// Every backend terminated; new connections accepted at once.
    Terminated,
}

struct Harness {
    app: TestApp,
    proxy: DbProxy,
    /// The server that reaches its database through the proxy.
    base: String,
    account: TestAccount,
    assistant: i64,
    crm: MockServer,
}

/// The model asks for `book` first, then answers with the result it was given.
fn booking_model(request: &Request) -> ResponseTemplate {
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    let result = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap().to_owned());
    match result {
        None => ResponseTemplate::new(200)
            .set_delay(Duration::from_millis(300))
            .set_body_json(openai_tool_calls(&[(
                "call_1",
                "book",
                json!({ "slot": "10:00" }),
            )])),
        // Slow enough for the test to act while the model "writes".
        Some(result) => ResponseTemplate::new(200)
            .set_delay(Duration::from_millis(500))
            .set_body_json(chat_completion(&format!("done: {result}"))),
    }
}

async fn harness() -> Harness {
    let mut app = TestApp::spawn_with(|s| {
        s.outbound_allowed_hosts = AddressPolicy::parse("127.0.0.1").unwrap();
        s.llm_retries = 0;
    })
    .await;
    let proxy = DbProxy::start(app.db.url()).await;
    let mut settings = app.settings.clone();
    settings.database_url = Some(proxy.url.clone());
    let base = app.start_server(settings).await;
    let account = app.db_account("10").await;
    let crm = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_millis(500))
                .set_body_json(json!({ "booked": "10:00" })),
        )
        .mount(&crm)
        .await;
    let assistant = app.booking_assistant(&account, &crm).await;
    app.script_model(booking_model).await;
    Harness {
        app,
        proxy,
        base,
        account,
        assistant,
        crm,
    }
}

impl Harness {
    async fn send(&self) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let body = json!({ "assistant_id": self.assistant, "customer_identifier": "+4915", "message": "book 10:00" });
        let response = self
            .app
            .http
            .post(format!("{}/api/ai/generate-reply", self.base))
            .bearer_auth(&self.account.key)
            .header("idempotency-key", "booking-1")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap(), headers)
    }

    async fn wait_until(&self, step: Step) {
        let reached = async {
            loop {
                let done = match step {
                    Step::BeforeTheRequest => true,
                    Step::WhileTheModelDecides => !self.app.llm_requests().await.is_empty(),
                    Step::WhileTheToolRuns => {
                        !self.crm.received_requests().await.unwrap().is_empty()
                    }
                    Step::WhileTheModelAnswers => self.app.llm_requests().await.len() >= 2,
                };
                if done {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), reached)
            .await
            .expect("the reply never reached the step");
    }

    async fn fault(&self, fault: Fault) {
        match fault {
            Fault::ProxyCut => self.proxy.cut(),
            Fault::Terminated => {
                self.app.db.terminate_backends().await;
            }
        }
    }
}

async fn the_database_goes_away(step: Step, fault: Fault) {
    let h = harness().await;
    if step == Step::BeforeTheRequest {
        h.fault(fault).await;
    }
    let first = h.send();
    let cut = async {
        if step != Step::BeforeTheRequest {
            h.wait_until(step).await;
            h.fault(fault).await;
        }
    };
    let ((status, body, headers), ()) = tokio::join!(first, cut);
    match (fault, status.as_u16()) {
        (_, 503) => {
            assert_eq!(body["error_code"], "SERVICE_UNAVAILABLE", "{body}");
            assert!(headers.contains_key("retry-after"), "{headers:?}");
        }
        // Terminated backends are replaced at once: the reply may well go through.
        (Fault::Terminated, 200) => {}
        (_, other) => panic!("{step:?}/{fault:?}: answered {other}: {body}"),
    }
    if (step, fault) == (Step::WhileTheModelDecides, Fault::ProxyCut) {
        // A call that could not be journaled was not made.
        assert!(h.crm.received_requests().await.unwrap().is_empty());
    }
    h.proxy.restore();

    // The server answers again without a restart, and the retry under the same key makes the
    // only reply, with the tool called at most once in all.
    h.app.db_expire_leases().await;
    let (status, reply, _) = h.send().await;
    assert_eq!(status, 200, "{step:?}/{fault:?}: {reply}");
    assert!(
        reply["reply"].as_str().unwrap().starts_with("done: "),
        "{reply}"
    );
    let tool_calls = h.crm.received_requests().await.unwrap().len();
    assert_eq!(
        tool_calls, 1,
        "{step:?}/{fault:?}: the tool was called {tool_calls} times"
    );
    let conversation = reply["conversation_id"].as_str().unwrap();
    let history = h.app.history_contents(&h.account.key, conversation).await;
    assert_eq!(history.len(), 2, "one message, one reply: {history:?}");
    assert_eq!(h.app.count("pending_replies").await, 0);
    // One reply of two model calls (1,000 + 500 tokens each at 1 and 2 per million).
    assert_eq!(h.app.balance(&h.account).await, money("9.996"));
}

#[tokio::test]
async fn cut_before_the_request() {
    the_database_goes_away(Step::BeforeTheRequest, Fault::ProxyCut).await;
}

#[tokio::test]
async fn cut_while_the_model_decides_to_call_the_tool() {
    the_database_goes_away(Step::WhileTheModelDecides, Fault::ProxyCut).await;
}

#[tokio::test]
async fn cut_while_the_tool_runs() {
    the_database_goes_away(Step::WhileTheToolRuns, Fault::ProxyCut).await;
}

#[tokio::test]
async fn cut_while_the_model_answers() {
    the_database_goes_away(Step::WhileTheModelAnswers, Fault::ProxyCut).await;
}

#[tokio::test]
async fn terminated_before_the_request() {
    the_database_goes_away(Step::BeforeTheRequest, Fault::Terminated).await;
}

#[tokio::test]
async fn terminated_while_the_model_decides_to_call_the_tool() {
    the_database_goes_away(Step::WhileTheModelDecides, Fault::Terminated).await;
}

#[tokio::test]
async fn terminated_while_the_tool_runs() {
    the_database_goes_away(Step::WhileTheToolRuns, Fault::Terminated).await;
}

#[tokio::test]
async fn terminated_while_the_model_answers() {
    the_database_goes_away(Step::WhileTheModelAnswers, Fault::Terminated).await;
}

/// A call whose result could not be recorded is never made again: the retry tells the model
/// its outcome is unknown.
#[tokio::test]
async fn a_call_cut_off_from_its_result_is_reported_unknown_not_repeated() {
    let h = harness().await;
    let (first, ()) = tokio::join!(h.send(), async {
        h.wait_until(Step::WhileTheToolRuns).await;
        h.proxy.cut();
    });
    assert_eq!(first.0, 503, "{}", first.1);
    h.proxy.restore();
    h.app.db_expire_leases().await;
    let (status, reply, _) = h.send().await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(h.crm.received_requests().await.unwrap().len(), 1);
    assert_eq!(
        reply["function_calls"][0]["result"]["error"],
        "outcome_unknown"
    );
}
