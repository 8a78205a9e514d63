//! The typed Rust client of [AnyReply](https://github.com/anyreply/anyreply), the self-hosted
//! AI-reply API that is a drop-in for Famulor's.
//!
//! ```no_run
//! use anyreply_client::{Client, GenerateReplyRequest};
//!
//! # async fn run() -> Result<(), anyreply_client::Error> {
//! let client = Client::builder()
//!     .base_url("http://127.0.0.1:8080")
//!     .api_key("ark_...")
//!     .build()?;
//! let reply = client
//!     .generate_reply(&GenerateReplyRequest {
//!         assistant_id: 1,
//!         customer_identifier: "+49155551234".into(),
//!         message: "Is my order on its way?".into(),
//!         variables: None,
//!     })
//!     .await?;
//! println!("{}", reply.reply);
//! # Ok(())
//! # }
//! ```
//!
//! Requests and answers are the wire types of `anyreply-core`, which the server uses too.
//!
//! # Retries
//!
//! Every call is retried by [`RetryPolicy`]: connection failures, timeouts and the statuses
//! 408, 409, 425, 429, 500, 502, 503 and 504; never 400, 401, 402, 403, 404 or 422. Waits grow
//! exponentially with full jitter, honour `Retry-After` (capped), and stop at the policy's
//! deadline; an `IDEMPOTENCY_CONFLICT` is waited out without using up attempts. Every attempt
//! of one POST carries the same `Idempotency-Key`, so a retry never answers or charges twice.
//!
//! There is one retry loop, [`RetryPolicy::run_with`]: one jitter, one clock (tokio's), the
//! deadline, the conflict rule ([`Failure::still_running`]) and the "may have landed" flag
//! ([`Attempt::may_have_landed`]). Every call runs in it, the event stream reconnects in it
//! (without the attempt limit and deadline), and [`RetryPolicy::run`], its shorthand, runs
//! calls of other services (the channel bridges' sends) under the same policy.
//!
//! # Events
//!
//! [`Client::events`] follows `GET /api/events` as a [`futures::Stream`] of [`Event`]s that
//! reconnects by itself and resumes with `Last-Event-ID`, so nothing is lost or repeated; only
//! an error that retrying cannot cure (401, 422, …) ends it.

#![warn(missing_docs)]

mod client;
mod error;
mod events;
mod knowledge_bases;
mod operators;
mod reply_stream;
mod resources;
mod retry;
pub mod webhooks;

pub use anyreply_core::ErrorCode;
pub use anyreply_core::wire::{
    AiToggleResponse, Assistant, AssistantInput, AssistantList, ConversationHistory,
    ConversationPage, ConversationSummary, Event, EventMessage, EventType, FunctionCall,
    GenerateReplyRequest, GenerateReplyResponse, Handoff, HandoffInput, HistoryMessage,
    ListConversationsQuery, LlmProvider, Me, OptOutResponse, PageQuery, Role, Tool, ToolHeader,
    ToolInput, ToolList, ToolParameter, UsageGroup, UsageQuery, UsageResponse, UsageRow, Variables,
};
pub use anyreply_core::wire::{
    AssignResponse, AuditAction, AuditActor, AuditActorType, AuditEntry, AuditPage, AuditQuery,
    AuditTarget, Author, Note, NoteInput, Operator, OperatorInput, OperatorResponse, OperatorRole,
    OperatorUpdate,
};
pub use anyreply_core::wire::{
    Document, DocumentStatus, DocumentType, KnowledgeBase, KnowledgeBaseInput, KnowledgeBaseStatus,
    KnowledgeMode, SearchHit,
};
pub use anyreply_core::wire::{HandoffReason, StatsGroup, StatsQuery, StatsResponse, StatsRow};
pub use anyreply_core::wire::{Webhook, WebhookInput, WebhookPayload};
pub use client::{Client, ClientBuilder, DEFAULT_BASE_URL, RequestOptions};
pub use error::{ApiError, Error, TransportError, TransportErrorKind};
pub use events::{EventStream, Events, EventsQuery};
pub use knowledge_bases::{KnowledgeBases, Upload, Website};
pub use operators::Operators;
pub use reply_stream::{ReplyEvent, ReplyStream};
pub use resources::{Assistants, Audit, Conversations, Tools, Webhooks};
pub use retry::{Attempt, Failure, Retry, RetryPolicy};
pub use uuid::Uuid;
