//! A customer's mail as the bridge reads it: who wrote, in which thread, what they wrote (the
//! quoted history and the signature cut away), and whether it is a mail never to answer.
//! Parsing MIME (encodings, charsets, multiparts, HTML-only mail) is `mail-parser`'s job.

use mail_parser::{HeaderValue, MessageParser};

use super::quote;

/// An inbound mail, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The sender's address, lower-cased: the customer identifier.
    pub from: String,
    /// The sender's display name, when it has one.
    pub name: Option<String>,
    /// Where the answer goes: `Reply-To` when given, else the sender.
    pub reply_to: String,
    /// `Message-ID`, without its angle brackets; `None` for a mail without one.
    pub message_id: Option<String>,
    /// `References` then, when not among them, `In-Reply-To`: the thread so far.
    pub references: Vec<String>,
    pub subject: String,
    /// What the customer wrote this time.
    pub text: String,
    /// Why the mail must not be answered, when it must not.
    pub automatic: Option<Automatic>,
}

/// Mail that no person wrote to us, answered by nothing: answering it is how two
/// auto-responders loop, or how a list gets our reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Automatic {
    /// `Auto-Submitted` other than `no` (RFC 3834): vacation replies, notifications.
    AutoSubmitted,
    /// `Precedence: bulk`, `junk`, `list` or `auto_reply`.
    Precedence,
    /// `List-Id` or `List-Unsubscribe`: a mailing list.
    MailingList,
    /// The null sender (`Return-Path: <>`) or a mailer daemon: a bounce.
    Bounce,
    /// Microsoft's `X-Auto-Response-Suppress: All` and the like, `X-Autoreply`,
    /// `X-Autorespond`.
    AutoReply,
    /// From the bridge's own address: our own mail, come back.
    Ours,
}

impl Automatic {
    /// For the logs and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AutoSubmitted => "auto_submitted",
            Self::Precedence => "precedence",
            Self::MailingList => "mailing_list",
            Self::Bounce => "bounce",
            Self::AutoReply => "auto_reply",
            Self::Ours => "ours",
        }
    }
}

/// Why a mail cannot be read at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    #[error("not an RFC 822 message")]
    NotAMessage,
    #[error("no sender address in From")]
    NoSender,
}

/// Reads `raw`, a whole RFC 822 message received for `ours` (the bridge's own address).
pub fn read(raw: &[u8], ours: &str) -> Result<Mail, Unreadable> {
    let message = MessageParser::default()
        .parse(raw)
        .ok_or(Unreadable::NotAMessage)?;
    if message.headers().is_empty() {
        return Err(Unreadable::NotAMessage);
    }
    let sender = message.from().and_then(|from| from.first());
    let from = sender
        .and_then(|addr| addr.address())
        .filter(|address| address.contains('@'))
        .map(str::to_lowercase)
        .ok_or(Unreadable::NoSender)?;
    let name = sender
        .and_then(|addr| addr.name())
        .map(|name| name.replace('\0', "").trim().to_owned())
        .filter(|name| !name.is_empty());
    let reply_to = message
        .reply_to()
        .and_then(|to| to.first()?.address())
        .filter(|address| address.contains('@'))
        .map_or_else(|| from.clone(), str::to_owned);
    let message_id = message.message_id().map(str::to_owned);
    let mut references = ids(message.references());
    for id in ids(message.in_reply_to()) {
        if !references.contains(&id) {
            references.push(id);
        }
    }
    // The API refuses NUL characters, which have no place in a mail's text anyway.
    let body = message.body_text(0).unwrap_or_default().replace('\0', "");
    let automatic = automatic(&message, &from, ours);
    Ok(Mail {
        name,
        reply_to,
        message_id,
        references,
        subject: message
            .subject()
            .unwrap_or_default()
            .replace('\0', "")
            .trim()
            .to_owned(),
        text: quote::strip(&body),
        automatic,
        from,
    })
}

/// The message ids of a `References` or `In-Reply-To` header.
fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    match value {
        HeaderValue::Text(id) => vec![id.to_string()],
        HeaderValue::TextList(list) => list.iter().map(|id| id.to_string()).collect(),
        _ => Vec::new(),
    }
}

/// Why `message` must go unanswered, if it must.
fn automatic(message: &mail_parser::Message<'_>, from: &str, ours: &str) -> Option<Automatic> {
    let raw = |name: &str| {
        message
            .header_raw(name)
            .map(|value| value.trim().to_ascii_lowercase())
    };
    if from.eq_ignore_ascii_case(ours) {
        return Some(Automatic::Ours);
    }
    if raw("Auto-Submitted").is_some_and(|value| !value.starts_with("no")) {
        return Some(Automatic::AutoSubmitted);
    }
    if raw("Precedence")
        .is_some_and(|value| ["bulk", "junk", "list", "auto_reply"].contains(&value.as_str()))
    {
        return Some(Automatic::Precedence);
    }
    if raw("List-Id").is_some() || raw("List-Unsubscribe").is_some() {
        return Some(Automatic::MailingList);
    }
    let local = from.split('@').next().unwrap_or_default();
    let null_sender =
        raw("Return-Path").is_some_and(|path| path.trim_matches(['<', '>', ' ']).is_empty());
    if null_sender || local == "mailer-daemon" || local == "postmaster" {
        return Some(Automatic::Bounce);
    }
    let suppress = raw("X-Auto-Response-Suppress")
        .is_some_and(|value| value.contains("all") || value.contains("autoreply"));
    if suppress || raw("X-Autoreply").is_some() || raw("X-Autorespond").is_some() {
        return Some(Automatic::AutoReply);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = "help@shop.example";

    fn mail(headers: &str, body: &str) -> Result<Mail, Unreadable> {
        read(format!("{headers}\r\n\r\n{body}").as_bytes(), OURS)
    }

    #[test]
    fn reads_the_sender_the_thread_and_the_new_words() {
        let read = mail(
            "From: \"Ada Lovelace\" <Ada@Example.ORG>\r\nTo: help@shop.example\r\nSubject: Re: My order\r\nMessage-ID: <b2@example.org>\r\nIn-Reply-To: <a1@shop.example>\r\nReferences: <a0@example.org> <a1@shop.example>",
            "Where is it?\r\n\r\nOn Mon, 1 Dec 2026, Help wrote:\r\n> It ships today.\r\n",
        )
        .unwrap();
        assert_eq!(read.from, "ada@example.org");
        assert_eq!(read.reply_to, "ada@example.org");
        assert_eq!(read.name.as_deref(), Some("Ada Lovelace"));
        assert_eq!(read.message_id.as_deref(), Some("b2@example.org"));
        assert_eq!(read.references, ["a0@example.org", "a1@shop.example"]);
        assert_eq!(read.subject, "Re: My order");
        assert_eq!(read.text, "Where is it?");
        assert_eq!(read.automatic, None);
    }

    #[test]
    fn an_html_only_mail_is_read_as_text() {
        let read = mail(
            "From: ada@example.org\r\nContent-Type: text/html; charset=utf-8",
            "<p>Hello <b>there</b> \u{1F600}</p>",
        )
        .unwrap();
        assert!(
            read.text.contains("Hello there \u{1F600}"),
            "{:?}",
            read.text
        );
    }

    #[test]
    fn mail_nobody_wrote_to_us_is_recognised() {
        let cases = [
            ("Auto-Submitted: auto-replied", Automatic::AutoSubmitted),
            ("Precedence: bulk", Automatic::Precedence),
            ("List-Id: <news.example.org>", Automatic::MailingList),
            ("Return-Path: <>", Automatic::Bounce),
            ("X-Autoreply: yes", Automatic::AutoReply),
        ];
        for (header, why) in cases {
            let read = mail(&format!("From: ada@example.org\r\n{header}"), "Away").unwrap();
            assert_eq!(read.automatic, Some(why), "{header}");
        }
        let daemon = mail("From: MAILER-DAEMON@example.org", "Undeliverable").unwrap();
        assert_eq!(daemon.automatic, Some(Automatic::Bounce));
        let ours = mail("From: Help@Shop.Example", "Echo").unwrap();
        assert_eq!(ours.automatic, Some(Automatic::Ours));
        let person = mail("From: ada@example.org\r\nAuto-Submitted: no", "Hi").unwrap();
        assert_eq!(person.automatic, None);
    }

    #[test]
    fn what_is_not_a_mail_is_refused() {
        assert_eq!(read(b"", OURS), Err(Unreadable::NotAMessage));
        assert_eq!(
            mail("Subject: no sender", "Hi").unwrap_err(),
            Unreadable::NoSender
        );
        assert_eq!(
            mail("From: undisclosed-recipients:;", "Hi").unwrap_err(),
            Unreadable::NoSender
        );
    }
}
