//! Versioned records: how a value is laid out on disk.
//!
//! Every record is one version byte followed by JSON. JSON keeps records readable with any sled
//! inspector and tolerant of added fields; the version byte lets a later release convert old
//! records on read instead of failing on them. A record with an unknown version is an error that
//! names the tree and key, never a silent default.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Error;

/// The layout written today.
const CURRENT_VERSION: u8 = 1;

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = vec![CURRENT_VERSION];
    // Serializing plain structs of strings, numbers and enums into a Vec cannot fail.
    serde_json::to_writer(&mut bytes, value).unwrap_or_else(|err| unreachable!("record serialization failed: {err}"));
    bytes
}

pub(crate) fn decode<T: DeserializeOwned>(tree: &'static str, key: &[u8], bytes: &[u8]) -> Result<T, Error> {
    let fail = |reason: String| Error::Decode { tree, key: super::show_key(key), reason };
    match bytes.split_first() {
        Some((&CURRENT_VERSION, json)) => serde_json::from_slice(json).map_err(|err| fail(err.to_string())),
        Some((version, _)) => Err(fail(format!("unknown record version {version}"))),
        None => Err(fail("empty record".to_owned())),
    }
}
