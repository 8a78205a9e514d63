//! Sending text with Meta's Send API: `POST {api}/me/messages?access_token=…` with the page
//! access token, for Messenger and Instagram alike.

use std::time::Duration;

use anyreply_client::RetryPolicy;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use url::Url;

use super::window::Window;
use crate::meta::{Failure, Refusal};

/// Meta's subcode for a message outside the window its type allows.
pub const OUTSIDE_THE_WINDOW: i64 = 2_018_278;

/// A client of one page (and the Instagram account linked to it).
#[derive(Debug, Clone)]
pub struct SendApi {
    http: reqwest::Client,
    messages_url: Url,
    token: SecretString,
    retry: RetryPolicy,
}

impl SendApi {
    pub fn new(api_url: &Url, token: SecretString, retry: RetryPolicy) -> anyhow::Result<Self> {
        // `join` drops the last segment of a root without a trailing slash (the version).
        let mut root = api_url.clone();
        if !root.path().ends_with('/') {
            root.set_path(&format!("{}/", root.path()));
        }
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()?,
            messages_url: root.join("me/messages")?,
            token,
            retry,
        })
    }

    /// The Send API's body: a reply within the window, or a person's message with the
    /// `HUMAN_AGENT` tag after it.
    pub fn body(recipient: &str, text: &str, window: Window) -> Value {
        let mut body = json!({
            "recipient": { "id": recipient },
            "messaging_type": "RESPONSE",
            "message": { "text": text },
        });
        if window == Window::HumanAgent {
            body["messaging_type"] = json!("MESSAGE_TAG");
            body["tag"] = json!("HUMAN_AGENT");
        }
        body
    }

    /// Sends `text` to the page-scoped (or Instagram-scoped) id `recipient`. Network errors,
    /// 429 and 5xx are retried as the policy says; anything else is final.
    pub async fn send(
        &self,
        channel: &'static str,
        recipient: &str,
        text: &str,
        window: Window,
    ) -> anyhow::Result<()> {
        let message = Self::body(recipient, text, window);
        self.retry
            .run(
                |attempt| {
                    if attempt > 1 {
                        crate::metrics::send_retry(channel);
                    }
                    self.post(&message)
                },
                |failure: &Failure| failure.retry,
            )
            .await
            .map_err(|failure| failure.error)
    }

    /// Shows the customer "typing…" (Meta shows it for 20 seconds, or until the reply). Tried
    /// once: a sign of life is not worth a retry.
    pub async fn typing_on(&self, recipient: &str) -> anyhow::Result<()> {
        let action = json!({ "recipient": { "id": recipient }, "sender_action": "typing_on" });
        self.post(&action).await.map_err(|failure| failure.error)
    }

    async fn post(&self, message: &Value) -> Result<(), Failure> {
        let mut url = self.messages_url.clone();
        url.query_pairs_mut()
            .append_pair("access_token", self.token.expose_secret());
        let response = self
            .http
            .post(url)
            .json(message)
            .send()
            .await
            .map_err(|error| Failure::unreachable("Meta's Send API", error))?;
        if response.status().is_success() {
            return Ok(());
        }
        let refusal = Refusal::of(response).await;
        Err(if refusal.subcode == Some(OUTSIDE_THE_WINDOW) {
            refusal.failure_saying(anyhow::anyhow!(
                "Meta refused the message: it is outside the window after the customer's last message (24 hours, 7 days for a person's) (subcode {OUTSIDE_THE_WINDOW})"
            ))
        } else {
            refusal.failure("Meta")
        })
    }
}
