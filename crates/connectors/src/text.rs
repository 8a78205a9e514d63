//! Every sentence a bridge says on its own, with its default. Each can be replaced by an
//! environment variable (see crates/connectors/README.md).

/// `ANYREPLY_APOLOGY_TEXT`: sent when no reply can be had (balance, configuration, outage).
pub const APOLOGY: &str = "Sorry, I can't answer right now. Please try again in a little while.";
/// `ANYREPLY_TELEGRAM_GREETING`: the answer to `/start`.
pub const TELEGRAM_GREETING: &str = "Hello! How can I help you?";
/// `ANYREPLY_TELEGRAM_NON_TEXT`: the answer to photos, stickers, voice notes and the like.
pub const TELEGRAM_NON_TEXT: &str =
    "Sorry, I can only read text messages. Could you type your question?";

/// The texts in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Texts {
    pub apology: String,
    pub greeting: String,
    pub non_text: String,
}

impl Default for Texts {
    fn default() -> Self {
        Self {
            apology: APOLOGY.to_owned(),
            greeting: TELEGRAM_GREETING.to_owned(),
            non_text: TELEGRAM_NON_TEXT.to_owned(),
        }
    }
}
