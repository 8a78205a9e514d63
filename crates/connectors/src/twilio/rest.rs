//! Sending an SMS with Twilio's REST Messages API. (`twilio-async`'s client cannot be used: it
//! hard-codes `api.twilio.com`, so it could be neither tested nor pointed at a proxy.)

use std::time::Duration;

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
    retries: u32,
    backoff: Duration,
}

impl TwilioRest {
    pub fn new(
        api_url: &Url,
        account_sid: String,
        auth_token: SecretString,
        messaging_service_sid: Option<String>,
        backoff: Duration,
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
            retries: 3,
            backoff,
        })
    }

    /// Sends `body` to `to`, from `from` (the number the customer wrote to). Network errors,
    /// 429 and 5xx are retried a bounded number of times.
    pub async fn send(&self, to: &str, from: &str, body: &str) -> anyhow::Result<()> {
        let sender = match &self.messaging_service_sid {
            Some(service) => ("MessagingServiceSid", service.as_str()),
            None => ("From", from),
        };
        let form = [("To", to), sender, ("Body", body)];
        let mut pause = self.backoff;
        let mut attempt = 0;
        loop {
            let sent = self
                .http
                .post(self.messages_url.clone())
                .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
                .form(&form)
                .send()
                .await;
            let retryable = match &sent {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => {
                    response.status() == StatusCode::TOO_MANY_REQUESTS
                        || response.status().is_server_error()
                }
                Err(_) => true,
            };
            if !retryable || attempt >= self.retries {
                return Err(match sent {
                    Ok(response) => {
                        anyhow::anyhow!("Twilio refused the message: HTTP {}", response.status())
                    }
                    Err(error) => {
                        anyhow::anyhow!("Twilio could not be reached: {}", error.without_url())
                    }
                });
            }
            crate::metrics::send_retry(super::CHANNEL);
            tokio::time::sleep(pause).await;
            pause *= 2;
            attempt += 1;
        }
    }
}
