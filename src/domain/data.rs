//! Customer data: per-app items, a key and a string value with an optional expiry, that the app's
//! rule sets read (`data_get`) and its server writes (`PUT /rest/privnum/data/v1.0`). This module
//! holds the request's rules; `store::Data` keeps the items.

use super::fields::{Fields, Invalid};

/// Items one request may store.
pub const MAX_ITEMS: usize = 500;
/// A key's length, in characters.
pub const MAX_KEY_CHARS: usize = 128;
/// A value's length, in bytes of UTF-8.
pub const MAX_VALUE_BYTES: usize = 4096;
/// The longest `ttl`: ten years, in seconds.
pub const MAX_TTL_SECS: i64 = 10 * 366 * 24 * 3600;

/// One item as stored: its value and when it expires (Unix seconds; `None`: never).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataItem {
    pub key: String,
    pub value: String,
    pub expires_at: Option<i64>,
}

impl DataItem {
    /// Whether it is still there at `now`.
    pub fn is_live(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// A key: 1–128 characters, no control characters (a NUL would break the store's keys).
pub fn check_key(key: &str) -> Result<(), String> {
    let chars = key.chars().count();
    if chars == 0 || chars > MAX_KEY_CHARS {
        return Err(format!("must be 1 to {MAX_KEY_CHARS} characters (got {chars})"));
    }
    if let Some(bad) = key.chars().find(|c| c.is_control()) {
        return Err(format!("must not hold control characters (found U+{:04X})", u32::from(bad)));
    }
    Ok(())
}

/// The items of a `PUT`: `{"items": [{"key", "value", "ttl"?}, …]}`, at most [`MAX_ITEMS`], each
/// key at most once; `ttl` in seconds from `now`, 0 or absent for no expiry. Errors name the
/// item (`items[3].key`).
pub fn parse_put(fields: &Fields<'_>, now: i64) -> Result<Vec<DataItem>, Invalid> {
    let items = fields.objects("items")?.ok_or_else(|| Invalid::new("items", "is required"))?;
    if items.is_empty() || items.len() > MAX_ITEMS {
        return Err(Invalid::new("items", format!("must hold 1 to {MAX_ITEMS} items (got {})", items.len())));
    }
    let mut parsed: Vec<DataItem> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let key = item.string_or_empty("key")?.ok_or_else(|| Invalid::new(format!("items[{i}].key"), "is required"))?;
        check_key(key).map_err(|reason| Invalid::new(format!("items[{i}].key"), reason))?;
        let value =
            item.string_or_empty("value")?.ok_or_else(|| Invalid::new(format!("items[{i}].value"), "is required"))?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(Invalid::new(
                format!("items[{i}].value"),
                format!("must be at most {MAX_VALUE_BYTES} bytes (got {})", value.len()),
            ));
        }
        let ttl = item.integer("ttl", 0..=MAX_TTL_SECS)?.unwrap_or(0);
        if let Some(first) = parsed.iter().position(|earlier| earlier.key == key) {
            return Err(Invalid::new(format!("items[{i}].key"), format!("{key:?} is also items[{first}]'s key")));
        }
        parsed.push(DataItem {
            key: key.to_owned(),
            value: value.to_owned(),
            expires_at: (ttl > 0).then(|| now.saturating_add(ttl)),
        });
    }
    Ok(parsed)
}

/// The `key` of a `GET` or `DELETE`.
pub fn parse_key<'a>(fields: &Fields<'a>) -> Result<&'a str, Invalid> {
    let key = fields.string_or_empty("key")?.ok_or_else(|| Invalid::new("key", "is required"))?;
    check_key(key).map_err(|reason| Invalid::new("key", reason))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn put(body: serde_json::Value) -> Result<Vec<DataItem>, Invalid> {
        let map = body.as_object().cloned().unwrap_or_default();
        parse_put(&Fields::new(&map), 1_000)
    }

    #[test]
    fn items_are_read_with_their_expiry() {
        let items = put(json!({"items": [{"key": "trip:1", "value": "active", "ttl": 60}, {"key": "k", "value": ""}]}));
        let items = items.unwrap();
        assert_eq!(items[0], DataItem { key: "trip:1".into(), value: "active".into(), expires_at: Some(1_060) });
        assert_eq!(items[1].expires_at, None, "no ttl: no expiry, and an empty value is a value");
        assert!(items[0].is_live(1_059) && !items[0].is_live(1_060));
    }

    #[test]
    fn each_bad_item_is_named() {
        let cases = [
            (json!({}), "items"),
            (json!({"items": []}), "items"),
            (json!({"items": [{"value": "v"}]}), "items[0].key"),
            (json!({"items": [{"key": "", "value": "v"}]}), "items[0].key"),
            (json!({"items": [{"key": "a".repeat(129), "value": "v"}]}), "items[0].key"),
            (json!({"items": [{"key": "a\u{0}b", "value": "v"}]}), "items[0].key"),
            (json!({"items": [{"key": "k"}]}), "items[0].value"),
            (json!({"items": [{"key": "k", "value": 5}]}), "items[0].value"),
            (json!({"items": [{"key": "k", "value": "x".repeat(4097)}]}), "items[0].value"),
            (json!({"items": [{"key": "k", "value": "v", "ttl": -1}]}), "items[0].ttl"),
            (json!({"items": [{"key": "k", "value": "v"}, {"key": "k", "value": "w"}]}), "items[1].key"),
            (json!({"items": [{"key": "k", "value": "v"}, 7]}), "items[1]"),
        ];
        for (body, field) in cases {
            let err = put(body.clone()).expect_err(&body.to_string());
            assert_eq!(err.field, field, "{body}: {err}");
        }
        let many: Vec<_> = (0..501).map(|n| json!({"key": format!("k{n}"), "value": "v"})).collect();
        assert_eq!(put(json!({ "items": many })).unwrap_err().field, "items");
    }
}
