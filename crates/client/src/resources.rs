//! Endpoints grouped by resource: `client.conversations().get(id)`.

use std::future::Future;

use anyreply_core::wire::{
    AiToggleResponse, AssignInput, AssignResponse, Assistant, AssistantInput, AssistantList,
    AssistantResponse, AuditEntry, AuditPage, AuditQuery, Author, ConversationHistory,
    ConversationPage, ConversationSummary, DeletedResponse, HistoryMessage, ListConversationsQuery,
    Note, NoteInput, NoteList, NoteResponse, OperatorMessageInput, OperatorMessageResponse,
    OptOutInput, OptOutResponse, PageQuery, Tool, ToolInput, ToolList, ToolResponse, Webhook,
    WebhookInput, WebhookList, WebhookResponse,
};
use futures::{Stream, TryStreamExt};
use uuid::Uuid;

use crate::client::{Client, RequestOptions};
use crate::error::Error;

/// `client.conversations()`.
#[derive(Debug, Clone, Copy)]
pub struct Conversations<'a> {
    pub(crate) client: &'a Client,
}

impl Conversations<'_> {
    /// `GET /api/conversations/{id}`: history (oldest first), variables, and the summary of
    /// the messages that no longer fit the prompt (`summary`, `summary_through`).
    pub async fn get(&self, id: Uuid) -> Result<ConversationHistory, Error> {
        self.client
            .get(&format!("api/conversations/{id}"), &[])
            .await
    }

    /// `GET /api/user/conversations`: one page, newest first.
    pub async fn list(&self, query: &ListConversationsQuery) -> Result<ConversationPage, Error> {
        let params: Vec<(&str, String)> = [
            ("type", query.kind.clone()),
            ("assistant_id", query.assistant_id.map(|id| id.to_string())),
            ("external_identifier", query.external_identifier.clone()),
            ("view", query.view.clone()),
            ("assignee_id", query.assignee_id.map(|id| id.to_string())),
            ("per_page", query.per_page.map(|n| n.to_string())),
            ("cursor", query.cursor.clone()),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
        .collect();
        self.client.get("api/user/conversations", &params).await
    }

    /// Every conversation matching `query`, page after page, as a stream.
    pub fn stream(
        &self,
        query: ListConversationsQuery,
    ) -> impl Stream<Item = Result<ConversationSummary, Error>> + '_ {
        let pages = futures::stream::try_unfold(Some(query), move |next| async move {
            let Some(query) = next else {
                return Ok::<_, Error>(None);
            };
            let page = self.list(&query).await?;
            let next = page
                .next_cursor
                .clone()
                .map(|cursor| ListConversationsQuery {
                    cursor: Some(cursor),
                    ..query
                });
            Ok(Some((
                futures::stream::iter(page.data.into_iter().map(Ok)),
                next,
            )))
        });
        futures::TryStreamExt::try_flatten(pages)
    }

    /// `POST /api/automate/conversations/{id}/disable-ai`: a human takes over.
    pub async fn disable_ai(&self, id: Uuid) -> Result<AiToggleResponse, Error> {
        self.disable_ai_with(id, RequestOptions::default()).await
    }

    /// [`Self::disable_ai`] with options, such as your own idempotency key.
    pub async fn disable_ai_with(
        &self,
        id: Uuid,
        options: RequestOptions,
    ) -> Result<AiToggleResponse, Error> {
        let path = format!("api/automate/conversations/{id}/disable-ai");
        self.client.post(&path, None::<&()>, options).await
    }

    /// `POST /api/automate/conversations/{id}/enable-ai`: the AI answers again.
    pub async fn enable_ai(&self, id: Uuid) -> Result<AiToggleResponse, Error> {
        self.enable_ai_with(id, RequestOptions::default()).await
    }

    /// [`Self::enable_ai`] with options, such as your own idempotency key.
    pub async fn enable_ai_with(
        &self,
        id: Uuid,
        options: RequestOptions,
    ) -> Result<AiToggleResponse, Error> {
        let path = format!("api/automate/conversations/{id}/enable-ai");
        self.client.post(&path, None::<&()>, options).await
    }

    /// `POST /api/conversations/{id}/messages`: a person of the business writes to the
    /// customer (1 to 10,000 characters); the bridges deliver it on the customer's channel.
    /// Refused with `CONVERSATION_OPTED_OUT` while the customer has opted out.
    pub async fn send_operator_message(
        &self,
        id: Uuid,
        content: impl Into<String>,
    ) -> Result<HistoryMessage, Error> {
        self.send_operator_message_with(id, content, RequestOptions::default())
            .await
    }

    /// [`Self::send_operator_message`] with options, such as your own idempotency key (so a
    /// message your system retries is stored, and delivered, once).
    pub async fn send_operator_message_with(
        &self,
        id: Uuid,
        content: impl Into<String>,
        options: RequestOptions,
    ) -> Result<HistoryMessage, Error> {
        let input = OperatorMessageInput {
            content: content.into(),
            operator_id: None,
        };
        let path = format!("api/conversations/{id}/messages");
        let sent: OperatorMessageResponse = self.client.post(&path, Some(&input), options).await?;
        Ok(sent.data)
    }

    /// [`Self::send_operator_message`] written by one of the account's operators: their name
    /// goes with the message (in the history, the event and the console).
    pub async fn send_operator_message_as(
        &self,
        id: Uuid,
        operator_id: i64,
        content: impl Into<String>,
        options: RequestOptions,
    ) -> Result<HistoryMessage, Error> {
        let input = OperatorMessageInput {
            content: content.into(),
            operator_id: Some(operator_id),
        };
        let path = format!("api/conversations/{id}/messages");
        let sent: OperatorMessageResponse = self.client.post(&path, Some(&input), options).await?;
        Ok(sent.data)
    }

    /// `POST /api/conversations/{id}/assign`: to one of the account's operators, or to no one
    /// (`None`). Returns who has the conversation now.
    pub async fn assign(
        &self,
        id: Uuid,
        operator_id: Option<i64>,
    ) -> Result<Option<Author>, Error> {
        let input = AssignInput { operator_id };
        let path = format!("api/conversations/{id}/assign");
        let assigned: AssignResponse = self
            .client
            .post(&path, Some(&input), RequestOptions::default())
            .await?;
        Ok(assigned.assignee)
    }

    /// `GET /api/conversations/{id}/notes`: the internal notes, oldest first.
    pub async fn notes(&self, id: Uuid) -> Result<Vec<Note>, Error> {
        let list: NoteList = self
            .client
            .get(&format!("api/conversations/{id}/notes"), &[])
            .await?;
        Ok(list.data)
    }

    /// `POST /api/conversations/{id}/notes`: an internal note (operators see it; the customer
    /// and the model never do), by `input.operator_id` or the API key.
    pub async fn add_note(&self, id: Uuid, input: &NoteInput) -> Result<Note, Error> {
        let path = format!("api/conversations/{id}/notes");
        let added: NoteResponse = self
            .client
            .post(&path, Some(input), RequestOptions::default())
            .await?;
        Ok(added.data)
    }

    /// `POST /api/automate/opt-out`: the customer wants no more messages (an SMS `STOP`): no
    /// AI replies and no operator messages until [`Self::opt_in`]. Creates the conversation if
    /// there is none yet.
    pub async fn opt_out(
        &self,
        assistant_id: i64,
        customer_identifier: impl Into<String>,
    ) -> Result<OptOutResponse, Error> {
        self.opt_out_with(assistant_id, customer_identifier, RequestOptions::default())
            .await
    }

    /// [`Self::opt_out`] with options, such as your own idempotency key.
    pub async fn opt_out_with(
        &self,
        assistant_id: i64,
        customer_identifier: impl Into<String>,
        options: RequestOptions,
    ) -> Result<OptOutResponse, Error> {
        self.consent(
            "api/automate/opt-out",
            assistant_id,
            customer_identifier,
            options,
        )
        .await
    }

    /// `POST /api/automate/opt-in`: the customer takes messages again (an SMS `START`).
    pub async fn opt_in(
        &self,
        assistant_id: i64,
        customer_identifier: impl Into<String>,
    ) -> Result<OptOutResponse, Error> {
        self.opt_in_with(assistant_id, customer_identifier, RequestOptions::default())
            .await
    }

    /// [`Self::opt_in`] with options, such as your own idempotency key.
    pub async fn opt_in_with(
        &self,
        assistant_id: i64,
        customer_identifier: impl Into<String>,
        options: RequestOptions,
    ) -> Result<OptOutResponse, Error> {
        self.consent(
            "api/automate/opt-in",
            assistant_id,
            customer_identifier,
            options,
        )
        .await
    }

    /// Opt-out and opt-in share their body and answer.
    async fn consent(
        &self,
        path: &str,
        assistant_id: i64,
        customer_identifier: impl Into<String>,
        options: RequestOptions,
    ) -> Result<OptOutResponse, Error> {
        let input = OptOutInput {
            assistant_id,
            customer_identifier: customer_identifier.into(),
        };
        self.client.post(path, Some(&input), options).await
    }
}

/// `per_page` and `cursor` as query parameters.
fn page_params(query: &PageQuery) -> Vec<(&'static str, String)> {
    [
        ("per_page", query.per_page.map(|n| n.to_string())),
        ("cursor", query.cursor.clone()),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name, value?)))
    .collect()
}

/// Every item of a list paged in id order, page after page: `fetch` reads one page as its items
/// and `next_cursor`.
fn stream_pages<'a, T: 'a, Fut>(
    query: PageQuery,
    fetch: impl Fn(PageQuery) -> Fut + Copy + 'a,
) -> impl Stream<Item = Result<T, Error>> + 'a
where
    Fut: Future<Output = Result<(Vec<T>, Option<String>), Error>> + 'a,
{
    let pages = futures::stream::try_unfold(Some(query), move |next| async move {
        let Some(query) = next else {
            return Ok::<_, Error>(None);
        };
        let (items, next_cursor) = fetch(query.clone()).await?;
        // A server answering with the cursor it was sent would loop forever: stop there.
        let next = next_cursor
            .filter(|cursor| query.cursor.as_ref() != Some(cursor))
            .map(|cursor| PageQuery {
                cursor: Some(cursor),
                ..query
            });
        Ok(Some((
            futures::stream::iter(items.into_iter().map(Ok)),
            next,
        )))
    });
    pages.try_flatten()
}

/// `client.assistants()`.
#[derive(Debug, Clone, Copy)]
pub struct Assistants<'a> {
    pub(crate) client: &'a Client,
}

impl Assistants<'_> {
    /// `GET /api/user/assistants/get`, every page: all the account's assistants, in id order.
    pub async fn list(&self) -> Result<Vec<Assistant>, Error> {
        self.stream(PageQuery::default()).try_collect().await
    }

    /// `GET /api/user/assistants/get`: one page, in id order, and its `next_cursor`.
    pub async fn page(&self, query: &PageQuery) -> Result<AssistantList, Error> {
        self.client
            .get("api/user/assistants/get", &page_params(query))
            .await
    }

    /// Every assistant from the page `query` names on, page after page, as a stream.
    pub fn stream(&self, query: PageQuery) -> impl Stream<Item = Result<Assistant, Error>> + '_ {
        stream_pages(query, move |query| async move {
            let page = self.page(&query).await?;
            Ok((page.data, page.next_cursor))
        })
    }

    /// `POST /api/user/assistant` (`name` is required).
    pub async fn create(&self, input: &AssistantInput) -> Result<Assistant, Error> {
        self.create_with(input, RequestOptions::default()).await
    }

    /// [`Self::create`] with options, such as your own idempotency key.
    pub async fn create_with(
        &self,
        input: &AssistantInput,
        options: RequestOptions,
    ) -> Result<Assistant, Error> {
        let created: AssistantResponse = self
            .client
            .post("api/user/assistant", Some(input), options)
            .await?;
        Ok(created.data)
    }

    /// `PUT /api/user/assistant/{id}`: the given fields only.
    pub async fn update(&self, id: i64, input: &AssistantInput) -> Result<Assistant, Error> {
        let updated: AssistantResponse = self
            .client
            .put(&format!("api/user/assistant/{id}"), input)
            .await?;
        Ok(updated.data)
    }
}

/// `client.tools()`.
#[derive(Debug, Clone, Copy)]
pub struct Tools<'a> {
    pub(crate) client: &'a Client,
}

impl Tools<'_> {
    /// `GET /api/user/tools`, every page: all the account's tools, in id order (header values
    /// masked).
    pub async fn list(&self) -> Result<Vec<Tool>, Error> {
        self.stream(PageQuery::default()).try_collect().await
    }

    /// `GET /api/user/tools`: one page, in id order, and its `next_cursor`.
    pub async fn page(&self, query: &PageQuery) -> Result<ToolList, Error> {
        self.client.get("api/user/tools", &page_params(query)).await
    }

    /// Every tool from the page `query` names on, page after page, as a stream.
    pub fn stream(&self, query: PageQuery) -> impl Stream<Item = Result<Tool, Error>> + '_ {
        stream_pages(query, move |query| async move {
            let page = self.page(&query).await?;
            Ok((page.data, page.next_cursor))
        })
    }

    /// `GET /api/user/tools/{id}`.
    pub async fn get(&self, id: i64) -> Result<Tool, Error> {
        let tool: ToolResponse = self
            .client
            .get(&format!("api/user/tools/{id}"), &[])
            .await?;
        Ok(tool.data)
    }

    /// `POST /api/user/tools`.
    pub async fn create(&self, input: &ToolInput) -> Result<Tool, Error> {
        self.create_with(input, RequestOptions::default()).await
    }

    /// [`Self::create`] with options, such as your own idempotency key.
    pub async fn create_with(
        &self,
        input: &ToolInput,
        options: RequestOptions,
    ) -> Result<Tool, Error> {
        let created: ToolResponse = self
            .client
            .post("api/user/tools", Some(input), options)
            .await?;
        Ok(created.data)
    }

    /// `PUT /api/user/tools/{id}`: the given fields only.
    pub async fn update(&self, id: i64, input: &ToolInput) -> Result<Tool, Error> {
        let updated: ToolResponse = self
            .client
            .put(&format!("api/user/tools/{id}"), input)
            .await?;
        Ok(updated.data)
    }

    /// `DELETE /api/user/tools/{id}`.
    pub async fn delete(&self, id: i64) -> Result<(), Error> {
        let _: DeletedResponse = self.client.delete(&format!("api/user/tools/{id}")).await?;
        Ok(())
    }
}

/// `client.webhooks()`.
#[derive(Debug, Clone, Copy)]
pub struct Webhooks<'a> {
    pub(crate) client: &'a Client,
}

impl Webhooks<'_> {
    /// `GET /api/user/webhooks`: every webhook of the account, in id order (without secrets).
    pub async fn list(&self) -> Result<Vec<Webhook>, Error> {
        let list: WebhookList = self.client.get("api/user/webhooks", &[]).await?;
        Ok(list.data)
    }

    /// `POST /api/user/webhooks`: the answer holds the webhook's `secret`, shown only now; keep
    /// it for [`crate::webhooks::verify`].
    pub async fn create(&self, input: &WebhookInput) -> Result<Webhook, Error> {
        self.create_with(input, RequestOptions::default()).await
    }

    /// [`Self::create`] with options, such as your own idempotency key.
    pub async fn create_with(
        &self,
        input: &WebhookInput,
        options: RequestOptions,
    ) -> Result<Webhook, Error> {
        let created: WebhookResponse = self
            .client
            .post("api/user/webhooks", Some(input), options)
            .await?;
        Ok(created.data)
    }

    /// `DELETE /api/user/webhooks/{id}`.
    pub async fn delete(&self, id: i64) -> Result<(), Error> {
        let _: DeletedResponse = self
            .client
            .delete(&format!("api/user/webhooks/{id}"))
            .await?;
        Ok(())
    }
}

/// `client.audit()`.
#[derive(Debug, Clone, Copy)]
pub struct Audit<'a> {
    pub(crate) client: &'a Client,
}

impl Audit<'_> {
    /// `GET /api/user/audit`: one page of the audit log, newest first, and its `next_cursor`.
    pub async fn list(&self, query: &AuditQuery) -> Result<AuditPage, Error> {
        let params: Vec<(&str, String)> = [
            ("per_page", query.per_page.map(|n| n.to_string())),
            ("cursor", query.cursor.clone()),
            ("action", query.action.clone()),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
        .collect();
        self.client.get("api/user/audit", &params).await
    }

    /// Every entry from the page `query` names on, newest first, page after page, as a stream.
    pub fn stream(&self, query: AuditQuery) -> impl Stream<Item = Result<AuditEntry, Error>> + '_ {
        let pages = futures::stream::try_unfold(Some(query), move |next| async move {
            let Some(query) = next else {
                return Ok::<_, Error>(None);
            };
            let page = self.list(&query).await?;
            let next = page.next_cursor.clone().map(|cursor| AuditQuery {
                cursor: Some(cursor),
                ..query
            });
            Ok(Some((
                futures::stream::iter(page.data.into_iter().map(Ok)),
                next,
            )))
        });
        pages.try_flatten()
    }
}
