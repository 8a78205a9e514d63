//! Outgoing webhooks: every event of an account, delivered to the URLs it registered, as the
//! Standard Webhooks specification says (headers `webhook-id`, `webhook-timestamp`,
//! `webhook-signature`; the same `webhook-id` on every retry).
//!
//! [`worker`] runs in every server process: it turns events into deliveries and sends them,
//! at least once, in order per conversation, retrying with backoff; everything it knows is in
//! PostgreSQL, so deliveries survive a restart and any number of processes share the work.

pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use anyreply_core::webhook_signature::SigningKey;
use reqwest::header::CONTENT_TYPE;
use url::Url;

use crate::models::webhook_delivery::TakenDelivery;
use crate::tools::guard::{
    AddressPolicy, GuardedResolver, Lookup, RefusedAddress, guarded_client, literal_address,
    refused_in,
};

/// Longest wait for a name's addresses when a webhook is created.
const CREATION_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// A 2xx answer.
    Delivered { status: u16 },
    /// `410 Gone`: the receiver says the webhook is no more.
    Gone,
    /// Any other answer (`status`), or none.
    Failed { status: Option<u16>, error: String },
}

/// Sends deliveries over HTTP, within the address policy tools obey.
#[derive(Debug, Clone)]
pub struct WebhookSender {
    http: reqwest::Client,
    resolver: GuardedResolver,
}

/// The `webhook-id` of event `event_id` of account `account_id`: the same on every attempt.
pub fn message_id(account_id: i64, event_id: i64) -> String {
    format!("evt_{account_id}_{event_id}")
}

impl WebhookSender {
    pub fn new(policy: AddressPolicy, lookup: Lookup, timeout: Duration) -> anyhow::Result<Self> {
        let policy = Arc::new(policy);
        let http = guarded_client(policy.clone(), lookup.clone(), Some(timeout))?;
        Ok(Self {
            http,
            resolver: GuardedResolver { policy, lookup },
        })
    }

    /// Refuses a URL whose host is, or resolves to, an address the policy forbids. A name that
    /// cannot be resolved now passes: every delivery is checked again.
    pub async fn check_url(&self, url: &Url) -> Result<(), RefusedAddress> {
        if let Some(ip) = literal_address(url) {
            return self.resolver.policy.check_ip(ip);
        }
        let Some(host) = url.host_str() else {
            return Ok(());
        };
        let lookup = self.resolver.resolve_checked(host);
        match tokio::time::timeout(CREATION_LOOKUP_TIMEOUT, lookup).await {
            Ok(Err(error)) => match error.downcast::<RefusedAddress>() {
                Ok(refused) => Err(*refused),
                Err(_) => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// One attempt of `delivery`, signed now.
    pub async fn send(&self, delivery: &TakenDelivery) -> Attempt {
        let id = message_id(delivery.account_id, delivery.event_id);
        self.send_signed(&delivery.url, &delivery.secret, &id, &delivery.body)
            .await
    }

    /// One POST of `body` to `url`, signed now with `secret` as message `id`: any webhook of
    /// ours (an account's, an assistant's conversation-ended one).
    pub async fn send_signed(&self, url: &str, secret: &str, id: &str, body: &str) -> Attempt {
        let failed = |error: String| Attempt::Failed {
            status: None,
            error,
        };
        let Ok(url) = Url::parse(url) else {
            return failed("the URL is not valid".to_owned());
        };
        if let Some(Err(refused)) =
            literal_address(&url).map(|ip| self.resolver.policy.check_ip(ip))
        {
            return failed(refused.to_string());
        }
        let Ok(key) = SigningKey::from_secret(secret) else {
            return failed("the webhook's secret is not valid".to_owned());
        };
        let timestamp = chrono::Utc::now().timestamp();
        let signature = key.sign(id, timestamp, body.as_bytes());
        let response = self
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_owned())
            .send()
            .await;
        match response {
            Ok(response) if response.status().is_success() => Attempt::Delivered {
                status: response.status().as_u16(),
            },
            Ok(response) if response.status() == reqwest::StatusCode::GONE => Attempt::Gone,
            Ok(response) => Attempt::Failed {
                status: Some(response.status().as_u16()),
                error: format!("the receiver answered HTTP {}", response.status().as_u16()),
            },
            Err(error) => failed(describe(&error)),
        }
    }
}

fn describe(error: &reqwest::Error) -> String {
    if let Some(refused) = refused_in(error) {
        refused.to_string()
    } else if error.is_timeout() {
        "the receiver did not answer in time".to_owned()
    } else {
        "the receiver could not be reached".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sender whose every name resolves to `address`, under no exceptions.
    fn sender(address: &'static str) -> WebhookSender {
        let lookup: Lookup =
            Arc::new(move |_| Box::pin(async move { Ok(vec![address.parse().unwrap()]) }));
        WebhookSender::new(AddressPolicy::default(), lookup, Duration::from_secs(1)).unwrap()
    }

    fn delivery(url: &str) -> TakenDelivery {
        TakenDelivery {
            id: 1,
            webhook_id: 1,
            account_id: 1,
            event_id: 1,
            conversation_id: uuid::Uuid::nil(),
            url: url.to_owned(),
            secret: SigningKey::new_secret(&[1; 32]),
            body: "{}".to_owned(),
            attempts: 1,
            first_attempt_at: chrono::Utc::now(),
        }
    }

    #[tokio::test]
    async fn a_name_that_now_resolves_to_a_private_address_is_refused_at_delivery() {
        for (resolves_to, url) in [
            ("10.0.0.5", "http://hooks.example/in"),
            ("93.184.216.34", "http://169.254.169.254/latest"),
        ] {
            let Attempt::Failed { status, error } = sender(resolves_to).send(&delivery(url)).await
            else {
                panic!("{url} was delivered");
            };
            assert_eq!(status, None);
            assert!(
                error.contains("ANYREPLY_OUTBOUND_ALLOWED_HOSTS"),
                "{url}: {error}"
            );
        }
    }

    #[tokio::test]
    async fn creation_refuses_what_delivery_would() {
        let private = sender("192.168.1.20");
        let url = Url::parse("https://crm.example/hook").unwrap();
        assert_eq!(private.check_url(&url).await.unwrap_err().class, "private");
        let literal = Url::parse("http://[::1]:8080/hook").unwrap();
        assert_eq!(
            private.check_url(&literal).await.unwrap_err().class,
            "loopback"
        );
        assert!(sender("93.184.216.34").check_url(&url).await.is_ok());
    }

    /// A receiver that never accepts the connection fails the attempt at the connect timeout,
    /// not at the (much longer) answer timeout.
    #[tokio::test]
    async fn a_receiver_that_never_accepts_fails_at_the_connect_timeout() {
        // A listener whose queue is full, never accepting: the kernel drops further SYNs, so a
        // connection is never made.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let address = listener.local_addr().unwrap();
        let mut queued = Vec::new();
        for _ in 0..8 {
            let connect = tokio::net::TcpStream::connect(address);
            if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_millis(200), connect).await
            {
                queued.push(stream);
            }
        }
        let lookup: Lookup = Arc::new(|_| Box::pin(async { Ok(Vec::new()) }));
        let sender = WebhookSender::new(
            AddressPolicy::parse("127.0.0.1").unwrap(),
            lookup,
            Duration::from_secs(120),
        )
        .unwrap();
        let started = std::time::Instant::now();
        let attempt = tokio::time::timeout(
            Duration::from_secs(60),
            sender.send(&delivery(&format!("http://{address}/hook"))),
        )
        .await
        .expect("the attempt waited for the answer timeout");
        let waited = started.elapsed();
        assert!(
            matches!(attempt, Attempt::Failed { status: None, .. }),
            "{attempt:?}"
        );
        assert!(
            waited >= crate::tools::guard::CONNECT_TIMEOUT && waited < Duration::from_secs(30),
            "failed after {waited:?}"
        );
    }
}
