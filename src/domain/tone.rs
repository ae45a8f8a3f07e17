//! Tone (voice file) names as bindings and decisions refer to them.
//!
//! A tone is named by its file name, at most 128 characters of `[A-Za-z0-9-_.@]` (reference §0,
//! §15). Whether the file exists and is approved is the tone registry's business, not this module's.

const MAX_TONE_NAME: usize = 128;

/// Why a tone name is not acceptable; the caller adds the field name.
pub fn check_tone_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_TONE_NAME {
        return Err(format!("{name:?} must be 1 to {MAX_TONE_NAME} characters"));
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@');
    if let Some(bad) = name.chars().find(|&c| !ok_char(c)) {
        return Err(format!("{name:?} contains {bad:?}; tone names use only letters, digits, '-', '_', '.' and '@'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_tone_name;

    #[test]
    fn tone_names_follow_the_carrier_alphabet() {
        assert!(check_tone_name("record-hint_01@v2.wav").is_ok());
        assert!(check_tone_name("").is_err());
        assert!(check_tone_name("a b.wav").is_err());
        assert!(check_tone_name("../etc/passwd").is_err());
        assert!(check_tone_name(&"a".repeat(129)).is_err());
    }
}
