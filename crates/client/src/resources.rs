//! Endpoints grouped by resource: `client.conversations().get(id)`.

use anyreply_core::wire::{
    AiToggleResponse, Assistant, AssistantInput, AssistantList, AssistantResponse,
    ConversationHistory, ConversationPage, ConversationSummary, DeletedResponse,
    ListConversationsQuery, Tool, ToolInput, ToolList, ToolResponse,
};
use futures::Stream;
use reqwest::Method;
use uuid::Uuid;

use crate::client::{Client, RequestOptions};
use crate::error::Error;

/// `client.conversations()`.
#[derive(Debug, Clone, Copy)]
pub struct Conversations<'a> {
    pub(crate) client: &'a Client,
}

impl Conversations<'_> {
    /// `GET /api/conversations/{id}`: history (oldest first) and variables.
    pub async fn get(&self, id: Uuid) -> Result<ConversationHistory, Error> {
        let path = format!("api/conversations/{id}");
        self.client
            .send(
                Method::GET,
                &path,
                &[],
                None::<&()>,
                RequestOptions::default(),
            )
            .await
    }

    /// `GET /api/user/conversations`: one page, newest first.
    pub async fn list(&self, query: &ListConversationsQuery) -> Result<ConversationPage, Error> {
        let mut params = Vec::new();
        if let Some(kind) = &query.kind {
            params.push(("type", kind.clone()));
        }
        if let Some(assistant_id) = query.assistant_id {
            params.push(("assistant_id", assistant_id.to_string()));
        }
        if let Some(customer) = &query.external_identifier {
            params.push(("external_identifier", customer.clone()));
        }
        if let Some(per_page) = query.per_page {
            params.push(("per_page", per_page.to_string()));
        }
        if let Some(cursor) = &query.cursor {
            params.push(("cursor", cursor.clone()));
        }
        self.client
            .send(
                Method::GET,
                "api/user/conversations",
                &params,
                None::<&()>,
                RequestOptions::default(),
            )
            .await
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
        self.client
            .send(Method::POST, &path, &[], None::<&()>, options)
            .await
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
        self.client
            .send(Method::POST, &path, &[], None::<&()>, options)
            .await
    }
}

/// `client.assistants()`.
#[derive(Debug, Clone, Copy)]
pub struct Assistants<'a> {
    pub(crate) client: &'a Client,
}

impl Assistants<'_> {
    /// `GET /api/user/assistants/get`.
    pub async fn list(&self) -> Result<Vec<Assistant>, Error> {
        let list: AssistantList = self
            .client
            .send(
                Method::GET,
                "api/user/assistants/get",
                &[],
                None::<&()>,
                RequestOptions::default(),
            )
            .await?;
        Ok(list.data)
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
            .send(
                Method::POST,
                "api/user/assistant",
                &[],
                Some(input),
                options,
            )
            .await?;
        Ok(created.data)
    }

    /// `PUT /api/user/assistant/{id}`: the given fields only.
    pub async fn update(&self, id: i64, input: &AssistantInput) -> Result<Assistant, Error> {
        let path = format!("api/user/assistant/{id}");
        let updated: AssistantResponse = self
            .client
            .send(
                Method::PUT,
                &path,
                &[],
                Some(input),
                RequestOptions::default(),
            )
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
    /// `GET /api/user/tools` (header values masked).
    pub async fn list(&self) -> Result<Vec<Tool>, Error> {
        let list: ToolList = self
            .client
            .send(
                Method::GET,
                "api/user/tools",
                &[],
                None::<&()>,
                RequestOptions::default(),
            )
            .await?;
        Ok(list.data)
    }

    /// `GET /api/user/tools/{id}`.
    pub async fn get(&self, id: i64) -> Result<Tool, Error> {
        let path = format!("api/user/tools/{id}");
        let tool: ToolResponse = self
            .client
            .send(
                Method::GET,
                &path,
                &[],
                None::<&()>,
                RequestOptions::default(),
            )
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
            .send(Method::POST, "api/user/tools", &[], Some(input), options)
            .await?;
        Ok(created.data)
    }

    /// `PUT /api/user/tools/{id}`: the given fields only.
    pub async fn update(&self, id: i64, input: &ToolInput) -> Result<Tool, Error> {
        let path = format!("api/user/tools/{id}");
        let updated: ToolResponse = self
            .client
            .send(
                Method::PUT,
                &path,
                &[],
                Some(input),
                RequestOptions::default(),
            )
            .await?;
        Ok(updated.data)
    }

    /// `DELETE /api/user/tools/{id}`.
    pub async fn delete(&self, id: i64) -> Result<(), Error> {
        let path = format!("api/user/tools/{id}");
        let _: DeletedResponse = self
            .client
            .send(
                Method::DELETE,
                &path,
                &[],
                None::<&()>,
                RequestOptions::default(),
            )
            .await?;
        Ok(())
    }
}
