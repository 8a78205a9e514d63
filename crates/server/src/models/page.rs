//! Pages of the lists in id order (assistants, tools). A page is one index range,
//! `account_id = $1 AND id > $cursor ORDER BY id LIMIT n + 1`, however deep it lies. Every
//! list's cursor is handed to clients in one opaque form, [`OpaqueCursor`].

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A cursor as clients see it: its JSON, base64url-encoded. Anything else decodes to `None`.
pub trait OpaqueCursor: Serialize + DeserializeOwned {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// Where a page starts: after the row with this id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AfterId {
    #[serde(rename = "after")]
    pub id: i64,
}

impl OpaqueCursor for AfterId {}

/// One page, in id order, with the cursor of the next.
#[derive(Debug)]
pub struct Page<T> {
    pub rows: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// From the up to `per_page + 1` rows a page's query loaded: the extra row is not shown,
    /// it only tells that a next page exists.
    pub fn from_rows(mut rows: Vec<T>, per_page: u32, id: impl Fn(&T) -> i64) -> Self {
        let more = rows.len() > per_page as usize;
        rows.truncate(per_page as usize);
        let next_cursor = rows
            .last()
            .filter(|_| more)
            .map(|last| AfterId { id: id(last) }.encode());
        Self { rows, next_cursor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = AfterId { id: 42 };
        assert_eq!(AfterId::decode(&cursor.encode()), Some(cursor));
        for bad in ["", "not base64!", "eyJ4IjoxfQ", "bnVsbA"] {
            assert_eq!(AfterId::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_a_full_page_with_more_behind_it_has_a_next_cursor() {
        let page = Page::from_rows(vec![1, 2, 3], 2, |&n| n);
        assert_eq!(page.rows, [1, 2]);
        assert_eq!(
            page.next_cursor.as_deref().and_then(AfterId::decode),
            Some(AfterId { id: 2 })
        );
        let last = Page::from_rows(vec![1, 2], 2, |&n| n);
        assert_eq!((last.rows.len(), last.next_cursor), (2, None));
        let empty = Page::from_rows(Vec::<i64>::new(), 2, |&n| n);
        assert_eq!((empty.rows.len(), empty.next_cursor), (0, None));
    }
}
