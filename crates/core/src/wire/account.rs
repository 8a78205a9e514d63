//! `GET /api/user/me`.

use serde::{Deserialize, Serialize};

use crate::Money;

/// The calling account: a cheap way to check a key and read the balance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Me {
    /// The account's name.
    pub name: String,
    /// The account's contact email, if any.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub email: Option<String>,
    /// What the account can still spend.
    pub total_balance: Money,
}
