//! A recording's download link, as the storage in front of the switch's recordings checks it:
//! `https://{domain}/{fileName}?appKey=…&expires=…&signature=…`, where `signature` is
//! base64url(HMAC-SHA256(app secret, `"{appKey}\n{domain}/{fileName}\n{expires}"`)) and `expires`
//! is Unix seconds. The signature covers the app with the file, so a link cannot be re-aimed at
//! another app's recording.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How long a link works: the Huawei API's three days.
pub const LINK_SECS: i64 = 3 * 24 * 3600;

/// The longest storage host name.
pub const MAX_DOMAIN_LEN: usize = 128;

/// The link's signature.
pub fn signature(secret: &str, app_key: &str, domain: &str, file_name: &str, expires: i64) -> String {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|err| unreachable!("HMAC accepts any key length: {err}"));
    mac.update(format!("{app_key}\n{domain}/{file_name}\n{expires}").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// The signed link to `file_name` on `domain`, working until `expires` (Unix seconds).
pub fn link(secret: &str, app_key: &str, domain: &str, file_name: &str, expires: i64) -> String {
    let signature = signature(secret, app_key, domain, file_name, expires);
    format!("https://{domain}/{file_name}?appKey={app_key}&expires={expires}&signature={signature}")
}

/// Whether `domain` is a host name (with an optional port): letters, digits, `.`, `-`, `:`; at
/// most [`MAX_DOMAIN_LEN`] characters.
pub fn is_host(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= MAX_DOMAIN_LEN
        && domain.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_carries_its_app_expiry_and_a_signature_over_both() {
        let url = link("secret", "app", "rec.example.com", "call-1.wav", 1_700_000_000);
        let expected = signature("secret", "app", "rec.example.com", "call-1.wav", 1_700_000_000);
        assert_eq!(
            url,
            format!("https://rec.example.com/call-1.wav?appKey=app&expires=1700000000&signature={expected}")
        );
        assert_ne!(expected, signature("secret", "other-app", "rec.example.com", "call-1.wav", 1_700_000_000));
        assert_ne!(expected, signature("secret", "app", "rec.example.com", "call-1.wav", 1_700_000_001));
    }

    #[test]
    fn host_names_are_told_from_paths() {
        assert!(is_host("rec.example.com") && is_host("10.0.0.1:8443"));
        assert!(!is_host("") && !is_host("evil/path") && !is_host("a b") && !is_host(&"a".repeat(129)));
    }
}
