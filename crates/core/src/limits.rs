//! Documented input limits, shared by the server (which enforces them) and the SDK.

/// Longest accepted `customer_identifier`, in characters (Famulor's limit).
pub const MAX_CUSTOMER_IDENTIFIER_CHARS: usize = 255;
/// Longest accepted customer `message`, in characters.
pub const MAX_MESSAGE_CHARS: usize = 10_000;
/// Most keys in one `variables` object.
pub const MAX_VARIABLES: usize = 100;
/// Longest variable name, in characters.
pub const MAX_VARIABLE_NAME_CHARS: usize = 64;
/// Longest assistant name, in characters.
pub const MAX_ASSISTANT_NAME_CHARS: usize = 255;
/// Longest system prompt or initial message, in characters.
pub const MAX_PROMPT_CHARS: usize = 100_000;
/// Longest handoff `instructions` (when to call `transfer_to_human`), in characters.
pub const MAX_HANDOFF_INSTRUCTIONS_CHARS: usize = 4_000;
/// Longest handoff `message` (what the customer is told), in characters.
pub const MAX_HANDOFF_MESSAGE_CHARS: usize = 1_000;
/// Longest model name, in characters.
pub const MAX_MODEL_NAME_CHARS: usize = 255;
/// Most bytes a conversation's variables may take, serialized as JSON, all merged.
pub const MAX_CONVERSATION_VARIABLES_BYTES: usize = 64 * 1024;
/// Default of the most messages of one conversation waiting for their reply at once.
pub const DEFAULT_CONVERSATION_QUEUE_LIMIT: u32 = 20;
/// Most tools one assistant may use: every reply offers all of them to the model.
pub const MAX_ASSISTANT_TOOLS: usize = 32;
/// Most assistants of one account.
pub const MAX_ASSISTANTS_PER_ACCOUNT: usize = 1_000;
/// Most tools of one account.
pub const MAX_TOOLS_PER_ACCOUNT: usize = 1_000;
/// Most webhooks of one account: each event is delivered to every one of them.
pub const MAX_WEBHOOKS_PER_ACCOUNT: usize = 20;
/// Most chat widgets of one account.
pub const MAX_WIDGETS_PER_ACCOUNT: usize = 100;
/// Most origins one widget may be embedded in.
pub const MAX_WIDGET_ORIGINS: usize = 20;
/// Most knowledge bases of one account.
pub const MAX_KNOWLEDGE_BASES_PER_ACCOUNT: usize = 50;
/// Most documents of one knowledge base: room for a manual of one page per document (the
/// PostgreSQL documentation has about 1,170).
pub const MAX_DOCUMENTS_PER_KNOWLEDGE_BASE: usize = 2_000;
/// Most passages one document is cut into: a longer one fails with a reason saying so.
pub const MAX_PASSAGES_PER_DOCUMENT: usize = 5_000;
/// Largest uploaded document, in bytes (Famulor's 20 MB).
pub const MAX_DOCUMENT_BYTES: usize = 20 * 1024 * 1024;
/// Bounds of a website document's `relative_links_limit` (Famulor's).
pub const RELATIVE_LINKS_LIMIT: std::ops::RangeInclusive<i64> = 1..=50;
/// Most `links` of one website document.
pub const MAX_WEBSITE_LINKS: usize = 50;
/// Longest knowledge-base search query, in characters.
pub const MAX_SEARCH_QUERY_CHARS: usize = 1_000;
/// Most passages one knowledge-base search answers.
pub const MAX_SEARCH_LIMIT: i64 = 50;
/// Longest webhook URL, in characters.
pub const MAX_WEBHOOK_URL_CHARS: usize = 2048;
/// Largest accepted request body, in bytes.
pub const MAX_BODY_BYTES: usize = 512 * 1024;
/// Page size bounds of list endpoints.
pub const MAX_PER_PAGE: u32 = 100;
/// Default page size of list endpoints.
pub const DEFAULT_PER_PAGE: u32 = 15;
/// Default page size of the assistant and tool lists: the most, so that an account with up to
/// 100 of them still gets all on the first page, as from Famulor's unpaged lists.
pub const DEFAULT_ASSISTANTS_AND_TOOLS_PER_PAGE: u32 = MAX_PER_PAGE;
/// Longest operator email address, in characters (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Longest operator name, in characters.
pub const MAX_OPERATOR_NAME_CHARS: usize = 100;
/// Longest internal note, in characters.
pub const MAX_NOTE_CHARS: usize = 10_000;
/// The most fields of an assistant's `post_call_schema`.
pub const MAX_POST_CALL_FIELDS: usize = 50;
/// The longest description of a `post_call_schema` field.
pub const MAX_POST_CALL_DESCRIPTION_CHARS: usize = 1_000;
/// The longest `conversation_inactivity_timeout`, in minutes: a week.
pub const MAX_INACTIVITY_TIMEOUT_MINUTES: i64 = 10_080;
