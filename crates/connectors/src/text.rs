//! Every sentence a bridge says on its own, with its default. Each can be replaced by an
//! environment variable (see crates/connectors/README.md).

/// `ANYREPLY_APOLOGY_TEXT`: sent when no reply can be had (balance, configuration, outage).
pub const APOLOGY: &str = "Sorry, I can't answer right now. Please try again in a little while.";
/// `ANYREPLY_TELEGRAM_GREETING`: the answer to `/start`.
pub const TELEGRAM_GREETING: &str = "Hello! How can I help you?";
/// `ANYREPLY_TELEGRAM_NON_TEXT`: the answer to photos, stickers, files and the like.
pub const TELEGRAM_NON_TEXT: &str =
    "Sorry, I can only read text messages. Could you type your question?";
/// `ANYREPLY_VOICE_OFF_TEXT`: the answer to a voice note when no transcription model is set.
pub const VOICE_OFF: &str =
    "Sorry, I can only read text messages, not voice notes. Could you type your question?";
/// `ANYREPLY_VOICE_TOO_LONG_TEXT`: the answer to a voice note over the limits.
pub const VOICE_TOO_LONG: &str = "Sorry, that voice note is too long for me. Could you send a shorter one, or type your question?";
/// `ANYREPLY_VOICE_FAILED_TEXT`: the answer to a voice note that could not be transcribed.
pub const VOICE_FAILED: &str =
    "Sorry, I could not understand that voice note. Could you type your question?";

/// The texts in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Texts {
    pub apology: String,
    pub greeting: String,
    pub non_text: String,
    pub voice_off: String,
    pub voice_too_long: String,
    pub voice_failed: String,
}

impl Default for Texts {
    fn default() -> Self {
        Self {
            apology: APOLOGY.to_owned(),
            greeting: TELEGRAM_GREETING.to_owned(),
            non_text: TELEGRAM_NON_TEXT.to_owned(),
            voice_off: VOICE_OFF.to_owned(),
            voice_too_long: VOICE_TOO_LONG.to_owned(),
            voice_failed: VOICE_FAILED.to_owned(),
        }
    }
}
