//! Sending text with the WhatsApp Cloud API (Meta's Graph API):
//! `POST {api}/{phone-number-id}/messages` with the access token.

use std::time::Duration;

use anyreply_client::RetryPolicy;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use url::Url;

use crate::meta::{Failure, Refusal};

/// Meta's code for a free-form message outside the 24 hours after the customer's last one:
/// only templates may go then.
pub const OUTSIDE_THE_WINDOW: i64 = 131_047;

/// A client of one business phone number.
#[derive(Debug, Clone)]
pub struct Graph {
    http: reqwest::Client,
    messages_url: Url,
    /// The API root with a trailing slash: media are at `{root}{media-id}`.
    root: Url,
    token: SecretString,
    retry: RetryPolicy,
}

impl Graph {
    pub fn new(
        api_url: &Url,
        phone_number_id: &str,
        token: SecretString,
        retry: RetryPolicy,
    ) -> anyhow::Result<Self> {
        // `join` drops the last segment of a root without a trailing slash (the version).
        let mut root = api_url.clone();
        if !root.path().ends_with('/') {
            root.set_path(&format!("{}/", root.path()));
        }
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()?,
            messages_url: root.join(&format!("{phone_number_id}/messages"))?,
            root,
            token,
            retry,
        })
    }

    /// Sends `body` to the WhatsApp user `wa_id`. Network errors, 429 and 5xx are retried as
    /// the policy says; anything else, a message outside the 24-hour window included, is final.
    pub async fn send(&self, wa_id: &str, body: &str) -> anyhow::Result<()> {
        let message = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": wa_id,
            "type": "text",
            "text": { "body": body, "preview_url": false },
        });
        self.retry
            .run(
                |attempt| {
                    if attempt > 1 {
                        crate::metrics::send_retry(super::CHANNEL);
                    }
                    self.post(&message)
                },
                |failure: &Failure| failure.retry,
            )
            .await
            .map_err(|failure| failure.error)
    }

    /// Marks `message_id` read and shows "typing…" (for up to 25 seconds, or until the reply):
    /// one request, sent once and not retried, as it only decorates the reply.
    pub async fn read_and_typing(&self, message_id: &str) -> anyhow::Result<()> {
        let receipt = json!({
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": message_id,
            "typing_indicator": { "type": "text" },
        });
        self.post(&receipt).await.map_err(|failure| failure.error)
    }

    /// Where a received medium can be downloaded (`GET /{media-id}`'s `url`), and the request
    /// that downloads it, with the token (the URL refuses requests without).
    pub async fn media(
        &self,
        http: reqwest::Client,
        media_id: &str,
    ) -> anyhow::Result<reqwest::RequestBuilder> {
        let response = self
            .http
            .get(self.root.join(media_id)?)
            .bearer_auth(self.token.expose_secret())
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| anyhow::anyhow!("the media URL could not be had: {}", e.without_url()))?;
        let medium: Value = response.json().await?;
        let url = medium["url"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("the Graph API gave no media URL"))?;
        Ok(http.get(url).bearer_auth(self.token.expose_secret()))
    }

    async fn post(&self, message: &Value) -> Result<(), Failure> {
        let response = self
            .http
            .post(self.messages_url.clone())
            .bearer_auth(self.token.expose_secret())
            .json(message)
            .send()
            .await
            .map_err(|error| Failure::unreachable("the WhatsApp Cloud API", error))?;
        if response.status().is_success() {
            return Ok(());
        }
        let refusal = Refusal::of(response).await;
        Err(if refusal.code == Some(OUTSIDE_THE_WINDOW) {
            refusal.failure_saying(anyhow::anyhow!(
                "WhatsApp refused the message: the customer last wrote more than 24 hours ago, and only template messages may be sent then (Meta error {OUTSIDE_THE_WINDOW})"
            ))
        } else {
            refusal.failure("WhatsApp")
        })
    }
}
