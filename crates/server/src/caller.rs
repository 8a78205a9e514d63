//! Who is asking: the account and API key a request (or a chat widget's visitor) acts for.

/// The caller, proven by a live API key in `Authorization: Bearer` (see
/// [`crate::extract`], which proves it).
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub account_id: i64,
    pub api_key_id: i64,
    /// Whether its replies may call the assistant's tools: an API key's and the console's
    /// may, a chat widget's visitor's only if the widget says so.
    pub tools: bool,
}

impl Caller {
    /// Who the audit log names for what this caller does: its API key.
    pub fn actor(&self) -> crate::models::audit_log::Actor {
        crate::models::audit_log::Actor::ApiKey(self.api_key_id)
    }
}
