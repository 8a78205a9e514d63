//! `GET /api/user/me`.

use serde::{Deserialize, Serialize};

use crate::Money;

/// The calling account: a cheap way to check a key and read the balance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Me {
    pub name: String,
    pub email: Option<String>,
    pub total_balance: Money,
}
