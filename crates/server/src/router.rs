//! Every route on one page.

use anyreply_core::ErrorCode;
use anyreply_core::limits::{MAX_BODY_BYTES, MAX_DOCUMENT_BYTES};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use tower_http::catch_panic::CatchPanicLayer;

use crate::app::App;
use crate::controllers::{
    assistants, audit, conversations, events, generate_reply, handoff, health, inbox, knowledge,
    me, metrics, operators, stats, tools, usage, webhooks, widget_chat, widgets,
};
use crate::error::ApiError;
use crate::telemetry;

/// What a chat widget's page calls, with CORS for the widgets' origins.
fn widget_routes(app: App) -> Router<App> {
    Router::new()
        .route(
            "/api/widget/messages",
            get(widget_chat::get_widget_messages)
                .post(widget_chat::post_widget_message)
                // Preflights: the CORS layer answers them.
                .options(|| async { StatusCode::NO_CONTENT }),
        )
        .layer(middleware::from_fn_with_state(app, widget_chat::cors))
}

pub fn router(app: App) -> Router {
    Router::new()
        .merge(conversation_routes())
        .merge(setup_routes())
        .merge(knowledge_routes())
        .merge(account_routes(app.clone()))
        .merge(crate::openapi::routes())
        .merge(crate::console::routes(app.clone()))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound) })
        .method_not_allowed_fallback(|| async { ApiError::new(ErrorCode::MethodNotAllowed) })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(catch_panics())
        .layer(middleware::from_fn(telemetry::request::observe))
        .with_state(app)
}

/// Generate-reply, conversations and what an operator does in them.
fn conversation_routes() -> Router<App> {
    Router::new()
        .route(
            "/api/ai/generate-reply",
            post(generate_reply::generate_reply),
        )
        .route(
            "/api/user/conversations",
            get(conversations::list_conversations),
        )
        .route(
            "/api/conversations/{id}",
            get(conversations::get_conversation),
        )
        .route(
            "/api/conversations/{id}/messages",
            post(handoff::create_operator_message),
        )
        .route(
            "/api/conversations/{id}/assign",
            post(inbox::assign_conversation),
        )
        .route(
            "/api/conversations/{id}/notes",
            get(inbox::list_notes).post(inbox::create_note),
        )
        .route("/api/automate/opt-out", post(handoff::opt_out_customer))
        .route("/api/automate/opt-in", post(handoff::opt_in_customer))
        .route(
            "/api/automate/conversations/{id}/disable-ai",
            post(conversations::disable_ai),
        )
        .route(
            "/api/automate/conversations/{id}/enable-ai",
            post(conversations::enable_ai),
        )
}

/// Assistants and their tools.
fn setup_routes() -> Router<App> {
    Router::new()
        .route("/api/user/assistants/get", get(assistants::list_assistants))
        .route("/api/user/assistant", post(assistants::create_assistant))
        .route(
            "/api/user/assistant/{id}",
            put(assistants::update_assistant),
        )
        .route(
            "/api/user/tools",
            get(tools::list_tools).post(tools::create_tool),
        )
        .route(
            "/api/user/tools/{id}",
            get(tools::get_tool)
                .put(tools::update_tool)
                .delete(tools::delete_tool),
        )
}

/// Knowledge bases, their documents and search.
fn knowledge_routes() -> Router<App> {
    Router::new()
        .route(
            "/api/user/knowledgebases",
            get(knowledge::list_knowledge_bases).post(knowledge::create_knowledge_base),
        )
        .route(
            "/api/user/knowledgebases/{id}",
            put(knowledge::update_knowledge_base).delete(knowledge::delete_knowledge_base),
        )
        .route(
            "/api/user/knowledgebases/{id}/documents",
            get(knowledge::list_documents)
                .post(knowledge::create_document)
                .layer(
                    // A file of 20 MB, and the form around it.
                    DefaultBodyLimit::max(MAX_DOCUMENT_BYTES + 64 * 1024),
                ),
        )
        .route(
            "/api/user/knowledgebases/{id}/documents/{document_id}",
            get(knowledge::get_document).delete(knowledge::delete_document),
        )
        .route(
            "/api/user/knowledgebases/{id}/search",
            post(knowledge::search),
        )
}

/// Webhooks, widgets, the account, events, and the operator's endpoints.
fn account_routes(app: App) -> Router<App> {
    Router::new()
        .route(
            "/api/user/webhooks",
            get(webhooks::list_webhooks).post(webhooks::create_webhook),
        )
        .route("/api/user/webhooks/{id}", delete(webhooks::delete_webhook))
        .route(
            "/api/user/operators",
            get(operators::list_operators).post(operators::create_operator),
        )
        .route(
            "/api/user/operators/{id}",
            put(operators::update_operator).delete(operators::delete_operator),
        )
        .route(
            "/api/user/widgets",
            get(widgets::list_widgets).post(widgets::create_widget),
        )
        .route("/api/user/widgets/{id}", delete(widgets::delete_widget))
        .merge(widget_routes(app.clone()))
        .route("/widget.js", get(widget_chat::widget_script))
        .route("/api/user/me", get(me::get_me))
        .route("/api/user/audit", get(audit::list_audit))
        .route("/api/user/usage", get(usage::get_usage))
        .route("/api/user/stats", get(stats::get_stats))
        .route("/api/events", get(events::get_events))
        .route("/metrics", get(metrics::get_metrics))
        .route("/health", get(health::get_health))
        .route("/ready", get(health::get_ready))
}

/// A handler's panic answers `INTERNAL_ERROR`, its message logged at error level.
pub fn catch_panics() -> CatchPanicLayer<fn(Box<dyn std::any::Any + Send>) -> Response> {
    CatchPanicLayer::custom(|panic| {
        ApiError::internal(
            ErrorCode::InternalError,
            "a handler panicked",
            &PanicMessage(panic),
        )
        .into_response()
    })
}

/// What a panic said, for its log line.
struct PanicMessage(Box<dyn std::any::Any + Send>);

impl std::fmt::Display for PanicMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (
            self.0.downcast_ref::<&str>(),
            self.0.downcast_ref::<String>(),
        ) {
            (Some(text), _) => f.write_str(text),
            (_, Some(text)) => f.write_str(text),
            _ => f.write_str("(no message)"),
        }
    }
}
