//! Keyset (cursor) pagination for Relay connections.

use crate::error::{ServiceError, ServiceResult};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Serialize, de::DeserializeOwned};

/// The largest page a caller may ask for.
pub const MAX_PAGE_SIZE: i32 = 100;

/// One page of a keyset-paginated list.
#[derive(Clone, Debug)]
pub struct Page<T> {
    /// The items with their opaque cursors.
    pub items: Vec<(String, T)>,
    /// True when more items follow the last one.
    pub has_next_page: bool,
}

impl<T> Page<T> {
    /// Cursor of the last item.
    pub fn end_cursor(&self) -> Option<&str> {
        self.items.last().map(|(c, _)| c.as_str())
    }

    /// Builds a page from up to `first + 1` rows fetched in order: the extra row
    /// only tells that a next page exists.
    pub fn from_rows<R>(
        mut rows: Vec<R>,
        first: u64,
        key: impl Fn(&R) -> String,
        map: impl Fn(R) -> ServiceResult<T>,
    ) -> ServiceResult<Self> {
        let has_next_page = rows.len() as u64 > first;
        rows.truncate(first as usize);
        let items = rows
            .into_iter()
            .map(|row| {
                let cursor = key(&row);
                map(row).map(|item| (cursor, item))
            })
            .collect::<ServiceResult<_>>()?;
        Ok(Self { items, has_next_page })
    }
}

/// Checks `first` (1 to [`MAX_PAGE_SIZE`]).
pub fn page_size(first: i32) -> ServiceResult<u64> {
    if !(1..=MAX_PAGE_SIZE).contains(&first) {
        return Err(ServiceError::bad_input(
            "first",
            format!("first must be between 1 and {MAX_PAGE_SIZE}"),
        ));
    }
    Ok(first as u64)
}

/// Encodes a keyset position as an opaque cursor.
pub fn encode_cursor<K: Serialize>(key: &K) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(key).unwrap_or_default())
}

/// Decodes a cursor made by [`encode_cursor`]; a malformed one is the caller's error.
pub fn decode_cursor<K: DeserializeOwned>(cursor: Option<&str>) -> ServiceResult<Option<K>> {
    let Some(cursor) = cursor else { return Ok(None) };
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .map(Some)
        .ok_or_else(|| ServiceError::bad_input("after", "malformed cursor"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip_and_rejection() {
        let c = encode_cursor(&("Dr. A", 7));
        assert_eq!(
            decode_cursor::<(String, i32)>(Some(&c)).expect("ok"),
            Some(("Dr. A".into(), 7))
        );
        assert!(decode_cursor::<(String, i32)>(Some("%%%")).is_err());
        assert!(decode_cursor::<(String, i32)>(Some(&encode_cursor(&1))).is_err());
        assert_eq!(decode_cursor::<i32>(None).expect("none"), None);
    }

    #[test]
    fn page_size_bounds() {
        assert!(page_size(0).is_err());
        assert!(page_size(101).is_err());
        assert_eq!(page_size(20).expect("ok"), 20);
    }

    #[test]
    fn extra_row_means_next_page() {
        let page = Page::from_rows(vec![1, 2, 3], 2, |r| r.to_string(), Ok).expect("page");
        assert!(page.has_next_page);
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.end_cursor(), Some("2"));
        let last = Page::from_rows(vec![1], 2, |r| r.to_string(), Ok).expect("page");
        assert!(!last.has_next_page);
    }
}
