//! Sending an SMS or a WhatsApp message with Twilio's REST Messages API. (`twilio-async`'s client cannot be used: it
//! hard-codes `api.twilio.com`, so it could be neither tested nor pointed at a proxy.)

use std::time::Duration;

use anyreply_client::{Retry, RetryPolicy};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// A client of the Messages API of one account.
#[derive(Debug, Clone)]
pub struct TwilioRest {
    http: reqwest::Client,
    messages_url: Url,
    account_sid: String,
    auth_token: SecretString,
    /// Sends from this Messaging Service instead of the number that was written to.
    messaging_service_sid: Option<String>,
    /// How a send is retried: network errors, 429 and 5xx.
    retry: RetryPolicy,
}

impl TwilioRest {
    pub fn new(
        api_url: &Url,
        account_sid: String,
        auth_token: SecretString,
        messaging_service_sid: Option<String>,
        retry: RetryPolicy,
    ) -> anyhow::Result<Self> {
        let messages_url =
            api_url.join(&format!("2010-04-01/Accounts/{account_sid}/Messages.json"))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()?;
        Ok(Self {
            http,
            messages_url,
            account_sid,
            auth_token,
            messaging_service_sid,
            retry,
        })
    }

    /// Sends `body` to `to`, from `from` (the number the customer wrote to). Network errors,
    /// 429 and 5xx are retried as the retry policy says.
    pub async fn send(&self, to: &str, from: &str, body: &str) -> anyhow::Result<()> {
        let sender = match &self.messaging_service_sid {
            Some(service) => ("MessagingServiceSid", service.as_str()),
            None => ("From", from),
        };
        let form = [("To", to), sender, ("Body", body)];
        self.retry
            .run(
                |attempt| {
                    if attempt > 1 {
                        crate::metrics::send_retry(super::Channel::of(to).0.as_str());
                    }
                    self.post(&form)
                },
                |failure: &Failure| failure.retry,
            )
            .await
            .map_err(|failure| failure.error)
    }

    async fn post(&self, form: &[(&str, &str)]) -> Result<(), Failure> {
        let response = self
            .http
            .post(self.messages_url.clone())
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .form(form)
            .send()
            .await
            .map_err(|error| Failure {
                retry: Retry::Backoff,
                error: anyhow::anyhow!("Twilio could not be reached: {}", error.without_url()),
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry = if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            retry_after(&response).map_or(Retry::Backoff, Retry::After)
        } else {
            Retry::Never
        };
        Err(Failure {
            retry,
            error: anyhow::anyhow!("Twilio refused the message: HTTP {status}"),
        })
    }
}

/// A failed send, and whether it is worth another.
struct Failure {
    retry: Retry,
    error: anyhow::Error,
}

/// Twilio's `Retry-After`, in seconds, if it sent one.
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let seconds = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}
