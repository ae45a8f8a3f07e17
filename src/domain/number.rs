//! Phone numbers, area codes and the status of an X number.
//!
//! Numbers are E.164 with a leading `+` everywhere inside privnum; this module is the one place that
//! decides what a valid number looks like, so a number that passed here can be used as a store key.

use serde::{Deserialize, Serialize};

/// Shortest and longest accepted number, counting the `+` (the Huawei API's String(4-31)).
const NUMBER_LEN: std::ops::RangeInclusive<usize> = 4..=31;

/// Why a string is not an E.164 number; the caller adds the field name.
pub fn check_e164(number: &str) -> Result<(), String> {
    let Some(digits) = number.strip_prefix('+') else {
        return Err(format!("{number:?} must start with + and the country code"));
    };
    if !NUMBER_LEN.contains(&number.len()) {
        return Err(format!("{number:?} must be 4 to 31 characters long"));
    }
    if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(format!("{number:?} may contain only digits after the +"));
    }
    Ok(())
}

/// Area codes are short digit strings such as `0755` or `010`.
pub fn check_area_code(area_code: &str) -> Result<(), String> {
    if area_code.is_empty() || area_code.len() > 8 || !area_code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{area_code:?} must be 1 to 8 digits"));
    }
    Ok(())
}

/// The comparable form of an area code: clients write Shenzhen as `0755` or `755`, and both mean
/// the same city, so the trunk prefix `0` is not significant.
pub fn normalize_area_code(area_code: &str) -> &str {
    let trimmed = area_code.trim_start_matches('0');
    if trimmed.is_empty() {
        area_code
    } else {
        trimmed
    }
}

/// How many leading digits two (normalized) area codes share. Used by lenient allocation as the
/// stand-in for "same province": Chinese area codes of one province mostly share their leading
/// digits (Guangdong 075x/076x, Zhejiang 057x, Jiangsu 051x/052x).
pub fn shared_area_prefix(a: &str, b: &str) -> usize {
    let (a, b) = (normalize_area_code(a), normalize_area_code(b));
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}

/// The status of an X number (README, Admin API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NumberStatus {
    /// Binds, calls and SMS work.
    #[default]
    Normal,
    /// No binds, calls or SMS.
    Paused,
    /// No binds, calls or SMS.
    Unavailable,
    /// No new bindings; existing bindings keep working.
    Frozen,
}

impl NumberStatus {
    pub fn allows_new_bindings(self) -> bool {
        self == NumberStatus::Normal
    }
}

/// One X number in an app's pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XNumber {
    pub number: String,
    pub app_key: String,
    pub area_code: String,
    /// Whether the number can send and receive SMS.
    pub sms: bool,
    pub status: NumberStatus,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_accepts_plus_and_digits_only() {
        assert!(check_e164("+8613800000001").is_ok());
        assert!(check_e164("+861").is_ok());
        assert!(check_e164("8613800000001").is_err());
        assert!(check_e164("+86 138").is_err());
        assert!(check_e164("+86").is_err());
        assert!(check_e164(&format!("+{}", "1".repeat(31))).is_err());
    }

    #[test]
    fn area_codes_compare_without_trunk_prefix() {
        assert_eq!(normalize_area_code("0755"), "755");
        assert_eq!(normalize_area_code("0"), "0");
        assert_eq!(shared_area_prefix("0755", "756"), 2);
        assert_eq!(shared_area_prefix("0571", "0755"), 0);
    }
}

/// Properties of number and area-code parsing (crate::fuzzing says how many cases and how to
/// run more).
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::fuzzing::config(512))]

        /// `check_e164` accepts exactly `+` and 3 to 30 digits, and a refusal quotes the number.
        #[test]
        fn e164_is_plus_and_3_to_30_digits(number in prop_oneof!["\\+[0-9]{0,34}", "\\+?[0-9 +\\-]{0,32}", "\\PC{0,40}"]) {
            let digits = number.strip_prefix('+');
            let valid = digits.is_some_and(|d| (3..=30).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()));
            match check_e164(&number) {
                Ok(()) => prop_assert!(valid, "{:?} accepted", number),
                Err(reason) => {
                    prop_assert!(!valid, "{:?} refused: {}", number, reason);
                    prop_assert!(reason.starts_with(&format!("{number:?}")), "{}", reason);
                }
            }
        }

        /// An area code is 1 to 8 digits; normalizing drops only leading zeros (another leading
        /// zero changes nothing), is idempotent, and the shared prefix of two codes is symmetric and no longer than either.
        #[test]
        fn area_codes_normalize_and_compare(a in "[0-9]{0,10}|\\PC{0,10}", b in "0{0,3}[0-9]{0,8}") {
            let valid = (1..=8).contains(&a.len()) && a.bytes().all(|d| d.is_ascii_digit());
            prop_assert_eq!(check_area_code(&a).is_ok(), valid);
            let n = normalize_area_code(&b);
            prop_assert_eq!(normalize_area_code(n), n);
            prop_assert!(b.ends_with(n));
            // All-zero codes are kept as sent ("0" and "00" stay apart): no area code is all
            // zeros, and the normalized form is part of a sled key (`store/apps.rs`).
            if b.bytes().any(|d| d != b'0') {
                let zero_more = format!("0{b}");
                prop_assert_eq!(normalize_area_code(&zero_more), n);
            }
            prop_assert_eq!(shared_area_prefix(&a, &b), shared_area_prefix(&b, &a));
            prop_assert!(shared_area_prefix(&a, &b) <= normalize_area_code(&a).len().min(n.len()));
        }
    }
}
