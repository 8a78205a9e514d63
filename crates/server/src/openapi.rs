//! The OpenAPI 3.1 document, built from the handlers' `#[utoipa::path]` annotations and
//! `anyreply-core`'s wire types; served at `/openapi.json` and browsable at `/docs` (Swagger
//! UI, its assets inside the binary).
//!
//! Each annotation lists its operation's own answers; [`CommonAnswers`] adds what every
//! operation of a kind shares, so that no operation can forget it.

use std::collections::BTreeSet;

use anyreply_core::limits::MAX_CUSTOMER_IDENTIFIER_CHARS;
use anyreply_core::{ErrorBody, ErrorCode};
use axum::Router;
use serde_json::{Value, json};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{AllOfBuilder, ArrayItems, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Document, RefOr};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_swagger_ui::SwaggerUi;

use crate::app::App;
use crate::controllers::{
    assistants, audit, conversations, events, generate_reply, handoff, health, inbox, knowledge,
    me, metrics, operators, stats, tools, usage, webhooks, widget_chat, widgets,
};

/// Where the document is served.
pub const DOCUMENT_PATH: &str = "/openapi.json";
/// Where Swagger UI is served.
pub const DOCS_PATH: &str = "/docs";

/// The name of the bearer API key scheme in `security(...)`.
pub const API_KEY: &str = "api_key";
/// The name of the bearer publishable (widget) key scheme in `security(...)`.
pub const PUBLISHABLE_KEY: &str = "publishable_key";

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "AnyReply",
        description = "AI replies that remember each customer: a self-hosted, drop-in \
            replacement for Famulor's \"Generate AI Reply\" API.\n\n\
            Every error answer is the error envelope (`ErrorBody`) with a machine-readable \
            `error_code` (`ErrorCode` tabulates them all with their status and retry advice). \
            Every retryable answer carries `Retry-After`."
    ),
    paths(
        generate_reply::generate_reply,
        assistants::list_assistants,
        assistants::create_assistant,
        assistants::update_assistant,
        conversations::list_conversations,
        conversations::get_conversation,
        conversations::disable_ai,
        conversations::enable_ai,
        handoff::create_operator_message,
        inbox::assign_conversation,
        inbox::create_note,
        inbox::list_notes,
        handoff::opt_out_customer,
        handoff::opt_in_customer,
        events::get_events,
        tools::list_tools,
        tools::create_tool,
        tools::get_tool,
        tools::update_tool,
        tools::delete_tool,
        knowledge::list_knowledge_bases,
        knowledge::create_knowledge_base,
        knowledge::update_knowledge_base,
        knowledge::delete_knowledge_base,
        knowledge::list_documents,
        knowledge::create_document,
        knowledge::get_document,
        knowledge::delete_document,
        knowledge::search,
        webhooks::create_webhook,
        webhooks::list_webhooks,
        webhooks::delete_webhook,
        operators::create_operator,
        operators::list_operators,
        operators::update_operator,
        operators::delete_operator,
        audit::list_audit,
        widgets::create_widget,
        widgets::list_widgets,
        widgets::delete_widget,
        widget_chat::post_widget_message,
        widget_chat::get_widget_messages,
        widget_chat::widget_script,
        me::get_me,
        usage::get_usage,
        stats::get_stats,
        health::get_health,
        health::get_ready,
        metrics::get_metrics,
    ),
    components(schemas(
        ErrorBody,
        ErrorCode,
        anyreply_core::wire::WebhookPayload,
        anyreply_core::wire::UsageGroup,
        anyreply_core::wire::StatsGroup
    )),
    modifiers(&CommonAnswers, &RequiredOnCreate, &Links, &Constraints),
    tags(
        (name = "replies", description = "The AI reply to a customer's message"),
        (name = "assistants", description = "Assistants: prompt, model, tools"),
        (name = "conversations", description = "Conversations, their history, and human takeover"),
        (name = "tools", description = "HTTP endpoints of yours the model may call"),
        (name = "knowledge", description = "Knowledge bases: documents and websites your assistants answer from"),
        (name = "events", description = "Every change to a conversation, as it happens"),
        (name = "operators", description = "The people who sign in to the console, and their roles"),
        (name = "audit", description = "Who did what to the account, and when"),
        (name = "webhooks", description = "Your URLs that receive the account's events, signed (Standard Webhooks)"),
        (name = "widgets", description = "Web chat widgets: publishable keys for your sites"),
        (name = "widget", description = "What a web chat widget's page calls, with the widget's publishable key, from the widget's origins"),
        (name = "account", description = "The calling account"),
        (name = "operations", description = "Liveness, readiness and metrics"),
    )
)]
pub struct ApiDoc;

/// `/openapi.json` and `/docs`, for the router to merge.
pub fn routes() -> Router<App> {
    SwaggerUi::new(DOCS_PATH)
        .external_url_unchecked(DOCUMENT_PATH, document())
        .into()
}

/// The document, as served: the committed text's.
pub fn document() -> Value {
    serde_json::from_str(&document_text())
        .unwrap_or_else(|error| json!({ "error": error.to_string() }))
}

/// utoipa 5 writes a link's `operationId` and `requestBody` in snake case, which no client
/// reads; no schema has a property of those names (a test makes sure).
const LINK_KEYS: [(&str, &str); 2] = [
    ("\"operation_id\": ", "\"operationId\": "),
    ("\"request_body\": ", "\"requestBody\": "),
];

/// The document as committed in `openapi.json`: pretty-printed, with a final newline.
pub fn document_text() -> String {
    let text = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"));
    text.lines()
        .map(|line| {
            let key = line.trim_start();
            let indent = &line[..line.len() - key.len()];
            let renamed = LINK_KEYS.iter().find_map(|(from, to)| {
                key.strip_prefix(from)
                    .map(|rest| format!("{indent}{to}{rest}\n"))
            });
            renamed.unwrap_or_else(|| format!("{line}\n"))
        })
        .collect()
}

/// What operations share, added to each: the bearer key scheme; `X-Request-Id` on every
/// request and answer; `Idempotent-Replayed` where `Idempotency-Key` is read; `Retry-After`
/// on every status that has a retryable code; and the refusals that every operation (`500`),
/// every authenticated one (`401`, `503`) or every one with a body (`400`, `413`, `422`) may
/// give, where the annotation has not listed that status itself.
#[derive(Debug)]
pub struct CommonAnswers;

impl Modify for CommonAnswers {
    fn modify(&self, document: &mut Document) {
        let components = document.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            API_KEY,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("ark_…")
                    .description(Some("An API key from `anyreply-server account create`."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            PUBLISHABLE_KEY,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("arpk_…")
                    .description(Some(
                        "A chat widget's publishable key (`POST /api/user/widgets`), sent by \
                         pages of the widget's origins.",
                    ))
                    .build(),
            ),
        );
        for item in document.paths.paths.values_mut() {
            for operation in operations(item) {
                add_common_answers(operation);
            }
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

fn add_common_answers(operation: &mut Operation) {
    add_common_refusals(operation);
    let parameters = operation.parameters.get_or_insert_with(Vec::new);
    let idempotent = parameters
        .iter()
        .any(|parameter| parameter.name == "Idempotency-Key");
    parameters.push(
        ParameterBuilder::new()
            .name(REQUEST_ID)
            .parameter_in(ParameterIn::Header)
            .description(Some(
                "Your id for this request, to find its log lines; one is made up when absent.",
            ))
            .schema(Some(string_schema()))
            .build(),
    );
    add_answer_headers(operation, idempotent);
}

/// The refusals any operation of its kind may answer: a fault, the key's, the body's.
fn add_common_refusals(operation: &mut Operation) {
    let authenticated = operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty());
    let mut refusals = vec![ErrorCode::InternalError];
    if authenticated {
        refusals.extend([ErrorCode::Unauthorized, ErrorCode::ServiceUnavailable]);
    }
    // What reading a JSON body may refuse (`extract::JsonBody`).
    if operation.request_body.is_some() {
        refusals.extend([
            ErrorCode::InvalidJson,
            ErrorCode::PayloadTooLarge,
            ErrorCode::ValidationError,
        ]);
    }
    for code in refusals {
        operation
            .responses
            .responses
            .entry(code.http_status().to_string())
            .or_insert_with(|| refusal(&format!("`{code}`")).into());
    }
}

/// Every answer's request id; a replay's mark where the operation takes an
/// `Idempotency-Key`; `Retry-After` on the statuses that may be retried.
fn add_answer_headers(operation: &mut Operation, idempotent: bool) {
    let retryable = retryable_statuses();
    for (status, response) in operation.responses.responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        let mut headers = vec![(
            REQUEST_ID,
            "The request's id: the one sent, or one made up; also in the error envelope.",
            string_schema(),
        )];
        if idempotent {
            headers.push((
                "Idempotent-Replayed",
                "`true` when this is the stored answer to an earlier request with the same \
                 `Idempotency-Key`.",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["true"]))
                    .into(),
            ));
        }
        if retryable.contains(status.as_str()) {
            headers.push((
                "Retry-After",
                "Seconds to wait before retrying.",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .into(),
            ));
        }
        for (name, description, schema) in headers {
            response.headers.entry(name.to_owned()).or_insert_with(|| {
                HeaderBuilder::new()
                    .schema(schema)
                    .description(Some(description))
                    .build()
            });
        }
    }
}

/// Create and update share a body schema whose fields are all optional (an update keeps what
/// it does not send); on create these are required.
pub const REQUIRED_ON_CREATE: [(&str, &[&str]); 2] = [
    ("/api/user/assistant", &["name"]),
    (
        "/api/user/tools",
        &["name", "description", "endpoint", "method"],
    ),
];

/// Makes a create's body schema "the shared one, with [`REQUIRED_ON_CREATE`]'s fields".
#[derive(Debug)]
pub struct RequiredOnCreate;

impl Modify for RequiredOnCreate {
    fn modify(&self, document: &mut Document) {
        for (path, fields) in REQUIRED_ON_CREATE {
            let content = document
                .paths
                .paths
                .get_mut(path)
                .and_then(|item| item.post.as_mut())
                .and_then(|operation| operation.request_body.as_mut())
                .and_then(|body| body.content.get_mut("application/json"));
            let Some(content) = content else {
                continue;
            };
            let Some(shared) = content.schema.take() else {
                continue;
            };
            let required = fields.iter().fold(ObjectBuilder::new(), |object, field| {
                object.required(*field)
            });
            content.schema = Some(AllOfBuilder::new().item(shared).item(required).into());
        }
    }
}

/// An id in one answer that a later call takes: `(operation, status, link, target operation,
/// where the target takes it, where the answer has it)`. A target of `body.<field>` gets a
/// body with that field set. Clients can follow these; schemathesis's stateful phase does, so
/// that what it creates is then read, changed and deleted.
pub const LINKS: [(&str, &str, &str, &str, &str, &str); 22] = [
    (
        "create_assistant",
        "201",
        "UpdateAssistant",
        "update_assistant",
        "path.id",
        "$response.body#/data/id",
    ),
    (
        "create_assistant",
        "201",
        "GenerateReply",
        "generate_reply",
        "body.assistant_id",
        "$response.body#/data/id",
    ),
    (
        "create_assistant",
        "201",
        "ListConversations",
        "list_conversations",
        "query.assistant_id",
        "$response.body#/data/id",
    ),
    (
        "create_assistant",
        "201",
        "OptOut",
        "opt_out_customer",
        "body.assistant_id",
        "$response.body#/data/id",
    ),
    (
        "create_assistant",
        "201",
        "CreateWidget",
        "create_widget",
        "body.assistant_id",
        "$response.body#/data/id",
    ),
    (
        "update_assistant",
        "200",
        "GenerateReply",
        "generate_reply",
        "body.assistant_id",
        "$response.body#/data/id",
    ),
    (
        "create_tool",
        "201",
        "GetTool",
        "get_tool",
        "path.id",
        "$response.body#/data/id",
    ),
    (
        "create_tool",
        "201",
        "UpdateTool",
        "update_tool",
        "path.id",
        "$response.body#/data/id",
    ),
    (
        "create_tool",
        "201",
        "DeleteTool",
        "delete_tool",
        "path.id",
        "$response.body#/data/id",
    ),
    (
        "update_tool",
        "200",
        "GetTool",
        "get_tool",
        "path.id",
        "$response.body#/data/id",
    ),
    (
        "update_tool",
        "200",
        "DeleteTool",
        "delete_tool",
        "path.id",
        "$response.body#/data/id",
    ),
    (
        "generate_reply",
        "200",
        "GetConversation",
        "get_conversation",
        "path.id",
        "$response.body#/conversation_id",
    ),
    (
        "generate_reply",
        "200",
        "DisableAi",
        "disable_ai",
        "path.id",
        "$response.body#/conversation_id",
    ),
    (
        "generate_reply",
        "200",
        "EnableAi",
        "enable_ai",
        "path.id",
        "$response.body#/conversation_id",
    ),
    (
        "generate_reply",
        "200",
        "CreateOperatorMessage",
        "create_operator_message",
        "path.id",
        "$response.body#/conversation_id",
    ),
    (
        "disable_ai",
        "200",
        "CreateOperatorMessage",
        "create_operator_message",
        "path.id",
        "$request.path.id",
    ),
    (
        "disable_ai",
        "200",
        "EnableAi",
        "enable_ai",
        "path.id",
        "$request.path.id",
    ),
    (
        "create_operator_message",
        "201",
        "GetConversation",
        "get_conversation",
        "path.id",
        "$request.path.id",
    ),
    (
        "opt_out_customer",
        "200",
        "GetConversation",
        "get_conversation",
        "path.id",
        "$response.body#/conversation_id",
    ),
    (
        "opt_in_customer",
        "200",
        "GetConversation",
        "get_conversation",
        "path.id",
        "$response.body#/conversation_id",
    ),
    (
        "create_webhook",
        "201",
        "DeleteWebhook",
        "delete_webhook",
        "path.id",
        "$response.body#/data/id",
    ),
    (
        "create_widget",
        "201",
        "DeleteWidget",
        "delete_widget",
        "path.id",
        "$response.body#/data/id",
    ),
];

/// Adds [`LINKS`] to their operations' answers.
#[derive(Debug)]
pub struct Links;

impl Modify for Links {
    fn modify(&self, document: &mut Document) {
        for (from, status, name, to, parameter, expression) in LINKS {
            let link = match parameter.strip_prefix("body.") {
                Some(field) => LinkBuilder::new()
                    .operation_id(to)
                    .request_body(Some(serde_json::json!({ field: expression }))),
                None => LinkBuilder::new()
                    .operation_id(to)
                    .parameter(parameter, expression),
            };
            let response = document
                .paths
                .paths
                .values_mut()
                .flat_map(operations)
                .find(|operation| operation.operation_id.as_deref() == Some(from))
                .and_then(|operation| operation.responses.responses.get_mut(status));
            if let Some(RefOr::T(response)) = response {
                response.links.insert(name.to_owned(), link.build().into());
            }
        }
    }
}

/// Origins as a widget's `allowed_origins` takes them (the server also takes them in other
/// case, with a trailing `/`, and in brackets an IPv6 address).
const ORIGIN_PATTERN: &str = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$";

/// Constraints the server checks that the wire types' annotations cannot carry (an array's
/// elements, `uniqueItems`) or that sit on types other work is changing: set here.
#[derive(Debug)]
pub struct Constraints;

impl Modify for Constraints {
    fn modify(&self, document: &mut Document) {
        let Some(components) = document.components.as_mut() else {
            return;
        };
        let mut property = |schema: &str, name: &str, change: &dyn Fn(&mut Schema)| {
            if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(schema)
                && let Some(RefOr::T(property)) = object.properties.get_mut(name)
            {
                change(property);
            }
        };
        let positive = |schema: &mut Schema| {
            if let Schema::Object(object) = schema {
                object.minimum = Some(1.into());
            }
        };
        property("WidgetInput", "assistant_id", &positive);
        property("OptOutInput", "assistant_id", &positive);
        property("WidgetInput", "allowed_origins", &|schema| {
            if let Schema::Array(array) = schema
                && let ArrayItems::RefOrSchema(items) = &mut array.items
                && let RefOr::T(Schema::Object(items)) = items.as_mut()
            {
                items.pattern = Some(ORIGIN_PATTERN.to_owned());
            }
        });
        property("WebhookInput", "events", &|schema| {
            if let Schema::Array(array) = schema {
                array.unique_items = true;
            }
        });
        property("OptOutInput", "customer_identifier", &|schema| {
            if let Schema::Object(object) = schema {
                object.min_length = Some(1);
                object.max_length = Some(MAX_CUSTOMER_IDENTIFIER_CHARS);
            }
        });
    }
}

const REQUEST_ID: &str = "X-Request-Id";

fn string_schema() -> RefOr<utoipa::openapi::schema::Schema> {
    ObjectBuilder::new().schema_type(Type::String).into()
}

/// Statuses that some retryable code answers with: those answers carry `Retry-After`.
fn retryable_statuses() -> BTreeSet<String> {
    ErrorCode::ALL
        .iter()
        .filter(|code| code.is_retryable())
        .map(|code| code.http_status().to_string())
        .collect()
}

/// An error answer: the envelope, described by the codes it may carry.
fn refusal(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                ErrorBody::name(),
            )))),
        )
        .build()
}
