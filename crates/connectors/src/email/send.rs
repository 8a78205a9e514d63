//! Mail out: a reply or an operator's message, composed in the customer's thread (`Re:`
//! subject, `In-Reply-To`, `References`) as text and simple HTML, and handed to the SMTP
//! server or to the host's `sendmail`. Composing and transport are lettre's.

use std::time::Duration;

use anyhow::Context;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::Tls;
use lettre::{AsyncSendmailTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

use super::state::Thread;
use super::tls::{Security, Trust};

/// Extra attempts of a send the server refused for now (a 4xx, a broken connection).
const SEND_RETRIES: u32 = 3;

/// Where mail goes out.
#[derive(Debug, Clone)]
pub enum Outbound {
    Smtp(SmtpSettings),
    /// The host's `sendmail`-compatible program (`sendmail -i -f <from> -- <to>`).
    Sendmail(String),
}

/// `ANYREPLY_EMAIL_SMTP_*`.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// Signs in only with both.
    pub user: Option<String>,
    pub password: Option<SecretString>,
}

#[derive(Debug)]
enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Sendmail(AsyncSendmailTransport<Tokio1Executor>),
}

/// Sends the bridge's mail.
#[derive(Debug)]
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
    /// The bridge's domain, for the message ids it makes.
    domain: String,
    backoff: Duration,
}

/// A mail to a customer.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub thread: &'a Thread,
    pub text: &'a str,
    /// An answer the AI made: marked `Auto-Submitted: auto-replied` (RFC 3834), so that an
    /// auto-responder at the other end does not answer it. An operator's message is not.
    pub automatic: bool,
}

/// `Auto-Submitted` (RFC 3834), which lettre has no type for.
#[derive(Debug, Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-replied".to_owned())
    }
}

impl Mailer {
    /// The mailer sending as `from`, through `outbound`.
    pub fn new(outbound: &Outbound, from: Mailbox, trust: &Trust) -> anyhow::Result<Self> {
        let transport = match outbound {
            Outbound::Sendmail(program) => {
                Transport::Sendmail(AsyncSendmailTransport::new_with_command(program))
            }
            Outbound::Smtp(smtp) => Transport::Smtp(smtp_transport(smtp, trust)?),
        };
        let domain = from.email.domain().to_owned();
        Ok(Self {
            transport,
            from,
            domain,
            backoff: Duration::from_millis(500),
        })
    }

    /// Composes `outgoing`; returns it with its `Message-ID` (without angle brackets).
    pub fn compose(&self, outgoing: Outgoing<'_>) -> anyhow::Result<(Message, String)> {
        let thread = outgoing.thread;
        let to: Mailbox = thread
            .reply_to
            .parse()
            .with_context(|| format!("{:?} is not an address to write to", thread.reply_to))?;
        let id = format!("{}@{}", uuid::Uuid::now_v7(), self.domain);
        let mut message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(reply_subject(&thread.subject))
            .message_id(Some(format!("<{id}>")));
        if let Some(latest) = thread.references.last() {
            let references: Vec<String> = thread
                .references
                .iter()
                .map(|id| format!("<{id}>"))
                .collect();
            message = message
                .in_reply_to(format!("<{latest}>"))
                .references(references.join(" "));
        }
        if outgoing.automatic {
            message = message.header(AutoSubmitted);
        }
        let message = message
            .multipart(MultiPart::alternative_plain_html(
                outgoing.text.to_owned(),
                html(outgoing.text),
            ))
            .context("cannot compose the mail")?;
        Ok((message, id))
    }

    /// Sends `message`, again after a refusal for now; a permanent refusal is not retried.
    pub async fn send(&self, message: &Message) -> anyhow::Result<()> {
        let mut attempt = 0;
        loop {
            let sent = match &self.transport {
                Transport::Smtp(smtp) => {
                    smtp.send(message.clone()).await.map(drop).map_err(|error| {
                        // Anything but a 5xx refusal (a 4xx, a timeout, a lost connection).
                        let again = !error.is_permanent();
                        (
                            anyhow::Error::new(error).context("the SMTP server refused the mail"),
                            again,
                        )
                    })
                }
                Transport::Sendmail(sendmail) => sendmail
                    .send(message.clone())
                    .await
                    .map_err(|error| (anyhow::Error::new(error).context("sendmail failed"), false)),
            };
            match sent {
                Ok(()) => return Ok(()),
                Err((error, true)) if attempt < SEND_RETRIES => {
                    attempt += 1;
                    crate::metrics::send_retry(super::CHANNEL);
                    tracing::warn!(
                        error = format!("{error:#}"),
                        attempt,
                        "sending a mail again"
                    );
                    tokio::time::sleep(self.backoff * 2u32.pow(attempt - 1)).await;
                }
                Err((error, _)) => return Err(error),
            }
        }
    }
}

fn smtp_transport(
    smtp: &SmtpSettings,
    trust: &Trust,
) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let tls = match smtp.security {
        Security::Tls => Tls::Wrapper(trust.smtp(&smtp.host)?),
        Security::StartTls => Tls::Required(trust.smtp(&smtp.host)?),
        Security::Plain => Tls::None,
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
        .port(smtp.port)
        .tls(tls)
        .timeout(Some(Duration::from_secs(30)));
    if let (Some(user), Some(password)) = (&smtp.user, &smtp.password) {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            password.expose_secret().to_owned(),
        ));
    }
    Ok(builder.build())
}

/// `Re: <subject>`, once.
pub fn reply_subject(subject: &str) -> String {
    let subject = subject.trim();
    let already = subject
        .get(..3)
        .is_some_and(|start| start.eq_ignore_ascii_case("re:"));
    match (subject.is_empty(), already) {
        (true, _) => "Re: your message".to_owned(),
        (false, true) => subject.to_owned(),
        (false, false) => format!("Re: {subject}"),
    }
}

/// `text` as simple HTML: escaped, a paragraph per blank-line-separated block, line breaks
/// kept.
pub fn html(text: &str) -> String {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace("\r\n", "\n");
    let paragraphs: String = escaped
        .split("\n\n")
        .map(str::trim)
        .filter(|paragraph| !paragraph.is_empty())
        .map(|paragraph| format!("<p>{}</p>\n", paragraph.replace('\n', "<br>\n")))
        .collect();
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head><body>\n{paragraphs}</body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_says_re_once() {
        assert_eq!(reply_subject("My order"), "Re: My order");
        assert_eq!(reply_subject("RE: My order"), "RE: My order");
        assert_eq!(reply_subject("  "), "Re: your message");
        assert_eq!(reply_subject("Ré"), "Re: Ré");
    }

    #[test]
    fn html_is_escaped_and_keeps_the_shape() {
        assert_eq!(
            html("Hello <b>&\n\"you\"\n\n\nBye 🙂"),
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head><body>\n<p>Hello &lt;b&gt;&amp;<br>\n&quot;you&quot;</p>\n<p>Bye 🙂</p>\n</body></html>\n"
        );
    }
}
