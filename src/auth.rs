//! AK/SK UsernameToken authentication: the current `X-AKSK` scheme and the legacy `X-WSSE` one
//! (docs/compatibility.md, Requests and signing). Parsing, digests and signing; no IO.
//!
//! The server verifies every provisioning request with [`parse`] and [`Credentials::verify`];
//! outgoing pushes and `privnum sign` use [`sign`]. Replay protection needs a store, so it lives
//! with the HTTP layer (`http::auth`); this module only says which nonce to remember.
//!
//! Leniency, because real clients are sloppy where the meaning is clear: `key="value"` pairs in any
//! order with any spacing and any key case; `Created` as any RFC 3339 instant; a digest that some
//! PHP clients send as base64 of the *hex* digest instead of the raw one.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::domain::codes::{self, ResultCode};

/// The two signing schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `PasswordDigest = base64(HMAC-SHA256(secret, Nonce + Created))`, header `X-AKSK`.
    Aksk,
    /// `PasswordDigest = base64(SHA256(Nonce + Created + secret))`, header `X-WSSE`.
    Wsse,
}

impl Scheme {
    pub fn header_name(self) -> &'static str {
        match self {
            Scheme::Aksk => "X-AKSK",
            Scheme::Wsse => "X-WSSE",
        }
    }

    fn word(self) -> &'static str {
        match self {
            Scheme::Aksk => "AKSK",
            Scheme::Wsse => "WSSE",
        }
    }
}

/// An authentication failure with its result code (the Huawei API's). All are HTTP 400 (malformed headers)
/// except [`AuthError::is_unauthorized`] ones (401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{desc}")]
pub struct AuthError {
    pub code: ResultCode,
    pub desc: String,
}

impl AuthError {
    fn new(code: ResultCode, desc: impl Into<String>) -> Self {
        AuthError { code, desc: desc.into() }
    }

    pub fn invalid_digest() -> Self {
        AuthError::new(codes::INVALID_DIGEST, "Invalid digest.")
    }

    pub fn replay() -> Self {
        AuthError::new(codes::INVALID_DIGEST, "Invalid digest: this Nonce was already used.")
    }

    /// Digest, skew and replay failures are 401; header format failures are 400.
    pub fn is_unauthorized(&self) -> bool {
        self.code == codes::INVALID_DIGEST || self.code == codes::TIME_OUT_LIMIT
    }
}

/// The fields of a well-formed `X-AKSK`/`X-WSSE` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub scheme: Scheme,
    pub app_key: String,
    pub nonce: String,
    /// `Created` as sent: the digest covers these exact characters.
    pub created: String,
    pub created_at: i64,
    pub digest: String,
}

/// Longest nonce accepted: the Huawei API allows 1-128 characters (README, Provisioning API).
const MAX_NONCE: usize = 128;

/// Reads the `Authorization` header and the scheme's token header.
/// `token_header(name)` returns the header named `X-AKSK` or `X-WSSE`, if present.
pub fn parse<'h>(
    authorization: Option<&'h str>,
    token_header: impl Fn(&str) -> Option<&'h str>,
) -> Result<Credentials, AuthError> {
    let authorization = authorization.map(str::trim).filter(|value| !value.is_empty());
    let Some(authorization) = authorization else {
        return Err(AuthError::new(codes::AUTHORIZATION_MISSING, "Authorization header is missing."));
    };
    let (word, params) = authorization.split_once(char::is_whitespace).unwrap_or((authorization, ""));
    let scheme = if word.eq_ignore_ascii_case("AKSK") {
        Scheme::Aksk
    } else if word.eq_ignore_ascii_case("WSSE") {
        Scheme::Wsse
    } else {
        return Err(AuthError::new(
            codes::SCHEME_INVALID,
            format!("Authorization must start with AKSK or WSSE, not {word:?}."),
        ));
    };
    let pairs = key_values(params).map_err(|key| {
        let code = match key.to_ascii_lowercase().as_str() {
            "realm" => codes::REALM_INVALID,
            "profile" => codes::PROFILE_INVALID,
            "type" => codes::TYPE_INVALID,
            _ => codes::SCHEME_INVALID,
        };
        AuthError::new(code, format!("{key} in Authorization opens a quote that is never closed."))
    })?;
    check_authorization_params(&pairs)?;

    let Some(token) = token_header(scheme.header_name()) else {
        let code = match scheme {
            Scheme::Aksk => codes::X_AKSK_MISSING,
            Scheme::Wsse => codes::X_WSSE_MISSING,
        };
        return Err(AuthError::new(code, format!("{} header is missing.", scheme.header_name())));
    };
    let token = token.trim();
    let params = match token.split_once(char::is_whitespace) {
        Some((word, rest)) if word.eq_ignore_ascii_case("UsernameToken") => rest,
        _ => token,
    };
    let pairs = key_values(params).map_err(|key| {
        let pick = |aksk, wsse| if scheme == Scheme::Aksk { aksk } else { wsse };
        let code = match key.to_ascii_lowercase().as_str() {
            "username" => pick(codes::AKSK_USERNAME_MISSING, codes::WSSE_USERNAME_MISSING),
            "nonce" => pick(codes::AKSK_NONCE_MISSING, codes::WSSE_NONCE_MISSING),
            "created" => codes::CREATED_FORMAT_INVALID,
            "passworddigest" => pick(codes::AKSK_DIGEST_MISSING, codes::WSSE_DIGEST_MISSING),
            _ => codes::INVALID_REQUEST,
        };
        AuthError::new(code, format!("{key} in {} opens a quote that is never closed.", scheme.header_name()))
    })?;
    let field = |name: &str, aksk: ResultCode, wsse: ResultCode| -> Result<String, AuthError> {
        match lookup(&pairs, name) {
            Some(value) if !value.is_empty() => Ok(value.to_owned()),
            _ => Err(AuthError::new(
                if scheme == Scheme::Aksk { aksk } else { wsse },
                format!("{name} is missing in {}.", scheme.header_name()),
            )),
        }
    };
    let app_key = field("Username", codes::AKSK_USERNAME_MISSING, codes::WSSE_USERNAME_MISSING)?;
    let nonce = field("Nonce", codes::AKSK_NONCE_MISSING, codes::WSSE_NONCE_MISSING)?;
    let created = field("Created", codes::AKSK_CREATED_MISSING, codes::WSSE_CREATED_MISSING)?;
    let digest = field("PasswordDigest", codes::AKSK_DIGEST_MISSING, codes::WSSE_DIGEST_MISSING)?;
    if nonce.len() > MAX_NONCE || nonce.chars().any(|c| !c.is_ascii_graphic()) {
        let code = if scheme == Scheme::Aksk { codes::AKSK_NONCE_MISSING } else { codes::WSSE_NONCE_MISSING };
        return Err(AuthError::new(code, format!("Nonce must be 1 to {MAX_NONCE} printable ASCII characters.")));
    }
    let created_at = DateTime::parse_from_rfc3339(&created)
        .map_err(|_| {
            AuthError::new(
                codes::CREATED_FORMAT_INVALID,
                format!("Created {created:?} must look like 2018-02-12T15:30:20Z."),
            )
        })?
        .timestamp();
    Ok(Credentials { scheme, app_key, nonce, created, created_at, digest })
}

fn check_authorization_params(pairs: &[(String, String)]) -> Result<(), AuthError> {
    let realm = lookup(pairs, "realm");
    let profile = lookup(pairs, "profile");
    let kind = lookup(pairs, "type");
    let missing = |code, name: &str| AuthError::new(code, format!("{name} is missing in Authorization."));
    let realm = realm.ok_or_else(|| missing(codes::REALM_MISSING, "realm"))?;
    let profile = profile.ok_or_else(|| missing(codes::PROFILE_MISSING, "profile"))?;
    let kind = kind.ok_or_else(|| missing(codes::TYPE_MISSING, "type"))?;
    let wrong = |code, name: &str, want: &str, got: &str| {
        AuthError::new(code, format!("{name} in Authorization must be {want:?}, not {got:?}."))
    };
    if realm != "SDP" {
        return Err(wrong(codes::REALM_INVALID, "realm", "SDP", realm));
    }
    if profile != "UsernameToken" {
        return Err(wrong(codes::PROFILE_INVALID, "profile", "UsernameToken", profile));
    }
    if kind != "Appkey" {
        return Err(wrong(codes::TYPE_INVALID, "type", "Appkey", kind));
    }
    Ok(())
}

/// Splits `a="1", b=2,c="x,y"` into pairs. Commas inside quotes do not split. A quote that is
/// never closed is an error naming its key: the header was cut short or damaged, and taking the
/// rest of it as the value would accept a truncated header as whole.
fn key_values(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut rest = text;
    while !rest.trim().is_empty() {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().to_owned();
        let after = rest[eq + 1..].trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => return Err(key),
            }
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim(), &after[end..])
        };
        pairs.push((key, value.to_owned()));
        rest = next;
    }
    Ok(pairs)
}

fn lookup<'p>(pairs: &'p [(String, String)], name: &str) -> Option<&'p str> {
    pairs.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
}

/// The raw 32-byte digest of a scheme.
fn raw_digest(scheme: Scheme, secret: &str, nonce: &str, created: &str) -> [u8; 32] {
    match scheme {
        Scheme::Aksk => {
            // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
            mac.update(nonce.as_bytes());
            mac.update(created.as_bytes());
            mac.finalize().into_bytes().into()
        }
        Scheme::Wsse => {
            let mut hash = Sha256::new();
            hash.update(nonce.as_bytes());
            hash.update(created.as_bytes());
            hash.update(secret.as_bytes());
            hash.finalize().into()
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares without stopping at the first difference, so the time taken says nothing about how
/// much of a guessed digest was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Credentials {
    /// Whether the digest was made with `secret`.
    pub fn verify(&self, secret: &str) -> bool {
        let expected = raw_digest(self.scheme, secret, &self.nonce, &self.created);
        let Ok(sent) = BASE64.decode(self.digest.trim()) else { return false };
        // Some PHP clients base64 the hex digest; accept it, case-insensitively.
        constant_time_eq(&sent, &expected) || constant_time_eq(&sent.to_ascii_lowercase(), hex(&expected).as_bytes())
    }

    /// Whether `Created` is within `max_skew_secs` of `now` (either side).
    pub fn check_skew(&self, now: i64, max_skew_secs: u64) -> Result<(), AuthError> {
        if now.abs_diff(self.created_at) > max_skew_secs {
            return Err(AuthError::new(
                codes::TIME_OUT_LIMIT,
                format!(
                    "Time out limit: Created {} is more than {max_skew_secs} s from the server's clock.",
                    self.created
                ),
            ));
        }
        Ok(())
    }
}

/// The two headers of a signed request: `(Authorization value, token header name, token value)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub authorization: String,
    pub token_name: &'static str,
    pub token: String,
}

/// Signs as a client (or as privnum pushing to a customer) would.
pub fn sign(scheme: Scheme, app_key: &str, secret: &str, nonce: &str, created: DateTime<Utc>) -> SignedHeaders {
    let created = created.to_rfc3339_opts(SecondsFormat::Secs, true);
    let digest = BASE64.encode(raw_digest(scheme, secret, nonce, &created));
    SignedHeaders {
        authorization: format!(r#"{} realm="SDP",profile="UsernameToken",type="Appkey""#, scheme.word()),
        token_name: scheme.header_name(),
        token: format!(
            r#"UsernameToken Username="{app_key}",PasswordDigest="{digest}",Nonce="{nonce}",Created="{created}""#
        ),
    }
}

/// A fresh random nonce: 32 hex characters, like the Huawei API's examples.
pub fn new_nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string().to_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn headers(signed: &SignedHeaders) -> Result<Credentials, AuthError> {
        parse(Some(&signed.authorization), |name| (name == signed.token_name).then_some(signed.token.as_str()))
    }

    #[test]
    fn signed_headers_verify_in_both_schemes() {
        let created = Utc.with_ymd_and_hms(2018, 2, 12, 15, 30, 20).unwrap();
        for scheme in [Scheme::Aksk, Scheme::Wsse] {
            let signed = sign(scheme, "app", "secret", "66C92B11FF8A425FB8D4CCFE0ED9ED1F", created);
            let credentials = headers(&signed).unwrap();
            assert_eq!(credentials.created, "2018-02-12T15:30:20Z");
            assert!(credentials.verify("secret"));
            assert!(!credentials.verify("other"));
        }
    }

    #[test]
    fn aksk_digest_matches_an_independent_hmac() {
        // HMAC-SHA256(key="demo-secret", "abc" + "2018-02-12T15:30:20Z"), computed with openssl:
        // printf 'abc2018-02-12T15:30:20Z' | openssl dgst -sha256 -hmac demo-secret -binary | base64
        let expected = "OAqgPZD4gn8b+DtELa9URg9fqyjfnD3zWNv2aSGF78U=";
        let digest = BASE64.encode(raw_digest(Scheme::Aksk, "demo-secret", "abc", "2018-02-12T15:30:20Z"));
        assert_eq!(digest, expected);
    }

    #[test]
    fn sloppy_spacing_and_order_are_accepted() {
        let authorization = r#"AKSK  type="Appkey", realm="SDP" , profile="UsernameToken""#;
        let token = r#"UsernameToken Created="2018-02-12T15:30:20Z", Nonce="n1" ,PasswordDigest="x=",  Username="a""#;
        let credentials = parse(Some(authorization), |_| Some(token)).unwrap();
        assert_eq!(credentials.app_key, "a");
        assert_eq!(credentials.digest, "x=");
    }

    #[test]
    fn each_header_fault_has_its_code() {
        let good_auth = r#"AKSK realm="SDP",profile="UsernameToken",type="Appkey""#;
        let good_token = r#"UsernameToken Username="a",PasswordDigest="d",Nonce="n",Created="2018-02-12T15:30:20Z""#;
        let code = |auth: Option<&str>, token: Option<&str>| parse(auth, |_| token).unwrap_err().code;
        assert_eq!(code(None, Some(good_token)), codes::AUTHORIZATION_MISSING);
        assert_eq!(code(Some("Basic abc"), Some(good_token)), codes::SCHEME_INVALID);
        assert_eq!(code(Some(r#"AKSK profile="UsernameToken",type="Appkey""#), Some(good_token)), codes::REALM_MISSING);
        assert_eq!(code(Some(r#"AKSK realm="SDP",type="Appkey""#), Some(good_token)), codes::PROFILE_MISSING);
        assert_eq!(code(Some(r#"AKSK realm="SDP",profile="UsernameToken""#), Some(good_token)), codes::TYPE_MISSING);
        assert_eq!(
            code(Some(r#"AKSK realm="X",profile="UsernameToken",type="Appkey""#), Some(good_token)),
            codes::REALM_INVALID
        );
        assert_eq!(
            code(Some(r#"AKSK realm="SDP",profile="P",type="Appkey""#), Some(good_token)),
            codes::PROFILE_INVALID
        );
        assert_eq!(
            code(Some(r#"AKSK realm="SDP",profile="UsernameToken",type="T""#), Some(good_token)),
            codes::TYPE_INVALID
        );
        assert_eq!(code(Some(good_auth), None), codes::X_AKSK_MISSING);
        assert_eq!(code(Some(&good_auth.replace("AKSK", "WSSE")), None), codes::X_WSSE_MISSING);
        let without = |field: &str| good_token.split(',').filter(|p| !p.contains(field)).collect::<Vec<_>>().join(",");
        assert_eq!(code(Some(good_auth), Some(&without("Username"))), codes::AKSK_USERNAME_MISSING);
        assert_eq!(code(Some(good_auth), Some(&without("Nonce"))), codes::AKSK_NONCE_MISSING);
        assert_eq!(code(Some(good_auth), Some(&without("Created"))), codes::AKSK_CREATED_MISSING);
        assert_eq!(code(Some(good_auth), Some(&without("PasswordDigest"))), codes::AKSK_DIGEST_MISSING);
        let wsse = good_auth.replace("AKSK", "WSSE");
        assert_eq!(code(Some(&wsse), Some(&without("Username"))), codes::WSSE_USERNAME_MISSING);
        assert_eq!(code(Some(&wsse), Some(&without("Nonce"))), codes::WSSE_NONCE_MISSING);
        assert_eq!(code(Some(&wsse), Some(&without("Created"))), codes::WSSE_CREATED_MISSING);
        assert_eq!(code(Some(&wsse), Some(&without("PasswordDigest"))), codes::WSSE_DIGEST_MISSING);
        assert_eq!(
            code(Some(good_auth), Some(&good_token.replace("2018-02-12T15:30:20Z", "2018/02/12"))),
            codes::CREATED_FORMAT_INVALID
        );
    }

    #[test]
    fn php_hex_digest_variant_is_accepted() {
        let created = "2018-02-12T15:30:20Z";
        let hex_digest = hex(&raw_digest(Scheme::Wsse, "s", "n", created));
        let credentials = Credentials {
            scheme: Scheme::Wsse,
            app_key: "a".into(),
            nonce: "n".into(),
            created: created.into(),
            created_at: 0,
            digest: BASE64.encode(hex_digest),
        };
        assert!(credentials.verify("s"));
    }

    #[test]
    fn skew_is_checked_both_ways() {
        let credentials = headers(&sign(Scheme::Aksk, "a", "s", "n", Utc.timestamp_opt(10_000, 0).unwrap())).unwrap();
        assert!(credentials.check_skew(10_900, 900).is_ok());
        assert_eq!(credentials.check_skew(10_901, 900).unwrap_err().code, codes::TIME_OUT_LIMIT);
        assert_eq!(credentials.check_skew(9_099, 900).unwrap_err().code, codes::TIME_OUT_LIMIT);
    }
}

/// Properties of the header parser and the digests, on generated and damaged headers
/// (crate::fuzzing says how many cases and how to run more).
#[cfg(test)]
mod fuzz {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    /// Every result code `parse` may refuse with.
    const REFUSALS: &[ResultCode] = &[
        codes::AUTHORIZATION_MISSING,
        codes::SCHEME_INVALID,
        codes::REALM_MISSING,
        codes::PROFILE_MISSING,
        codes::TYPE_MISSING,
        codes::REALM_INVALID,
        codes::PROFILE_INVALID,
        codes::TYPE_INVALID,
        codes::X_AKSK_MISSING,
        codes::X_WSSE_MISSING,
        codes::AKSK_USERNAME_MISSING,
        codes::AKSK_NONCE_MISSING,
        codes::AKSK_CREATED_MISSING,
        codes::AKSK_DIGEST_MISSING,
        codes::WSSE_USERNAME_MISSING,
        codes::WSSE_NONCE_MISSING,
        codes::WSSE_CREATED_MISSING,
        codes::WSSE_DIGEST_MISSING,
        codes::CREATED_FORMAT_INVALID,
        codes::INVALID_REQUEST,
    ];

    fn scheme() -> impl Strategy<Value = Scheme> {
        prop_oneof![Just(Scheme::Aksk), Just(Scheme::Wsse)]
    }

    /// App keys as `check_app_key` allows them, nonces as `parse` allows them (printable ASCII;
    /// without `"`, which a quoted value cannot hold), any secret, any instant of years 0-9999.
    fn signing() -> impl Strategy<Value = (Scheme, String, String, String, DateTime<Utc>)> {
        (scheme(), "[A-Za-z0-9._-]{1,40}", "\\PC{0,40}", "[!#-~]{1,128}", -62_135_596_800i64..=253_402_300_799)
            .prop_map(|(scheme, app_key, secret, nonce, secs)| {
                (scheme, app_key, secret, nonce, Utc.timestamp_opt(secs, 0).unwrap())
            })
    }

    fn parse_signed(authorization: &str, name: &str, token: &str) -> Result<Credentials, AuthError> {
        parse(Some(authorization), |asked| (asked == name).then_some(token))
    }

    /// What a refusal must be: a known 4xx code and a description that says what is wrong.
    fn check_refusal(err: &AuthError) -> Result<(), TestCaseError> {
        prop_assert!(REFUSALS.contains(&err.code), "unexpected code {} ({})", err.code, err.desc);
        prop_assert!(err.desc.len() > 10, "a refusal without a reason: {err:?}");
        Ok(())
    }

    /// Replaces the character at `at` (a char index, wrapped) by `with`.
    fn mutate(text: &str, at: usize, with: char) -> String {
        let at = at % text.chars().count();
        text.chars().enumerate().map(|(i, c)| if i == at { with } else { c }).collect()
    }

    proptest! {
        #![proptest_config(crate::fuzzing::config(512))]

        /// sign → parse → verify: the fields come back as signed, the secret verifies and
        /// another does not, and `Created` is within any skew of itself.
        #[test]
        fn signed_headers_parse_back_and_verify((scheme, app_key, secret, nonce, created) in signing()) {
            let signed = sign(scheme, &app_key, &secret, &nonce, created);
            let credentials = parse_signed(&signed.authorization, signed.token_name, &signed.token).unwrap();
            prop_assert_eq!(credentials.scheme, scheme);
            prop_assert_eq!(&credentials.app_key, &app_key);
            prop_assert_eq!(&credentials.nonce, &nonce);
            prop_assert_eq!(credentials.created_at, created.timestamp());
            prop_assert!(credentials.verify(&secret));
            let other = format!("{secret}x");
            prop_assert!(!credentials.verify(&other));
            prop_assert!(credentials.check_skew(created.timestamp(), 0).is_ok());
        }

        /// One character of either header changed: refused with a named reason, or (where the
        /// parser is lenient by design: key case, spacing, separators) read as the same
        /// credentials. A changed header never verifies with another Nonce, Created or digest.
        #[test]
        fn a_changed_character_is_refused_or_changes_nothing(
            (scheme, app_key, secret, nonce, created) in signing(),
            in_token: bool,
            at: usize,
            with in prop_oneof![Just('"'), Just(','), Just('='), Just(' '), Just('\0'), any::<char>()],
        ) {
            let signed = sign(scheme, &app_key, &secret, &nonce, created);
            let original = parse_signed(&signed.authorization, signed.token_name, &signed.token).unwrap();
            let (authorization, token) = if in_token {
                (signed.authorization.clone(), mutate(&signed.token, at, with))
            } else {
                (mutate(&signed.authorization, at, with), signed.token.clone())
            };
            match parse_signed(&authorization, signed.token_name, &token) {
                Err(err) => check_refusal(&err)?,
                // The digest covers Nonce and Created, not Username (the Huawei API's design):
                // a changed Username meets the secret of that other app, if there is one.
                Ok(credentials) if credentials.verify(&secret) => prop_assert_eq!(
                    Credentials { app_key: original.app_key.clone(), ..credentials },
                    original
                ),
                Ok(credentials) => prop_assert_ne!(credentials, original),
            }
        }

        /// A header cut short anywhere is refused: nothing of a signed header is optional, and
        /// an unclosed quote is not a value.
        #[test]
        fn a_truncated_header_is_refused((scheme, app_key, secret, nonce, created) in signing(), in_token: bool, at: usize) {
            let signed = sign(scheme, &app_key, &secret, &nonce, created);
            let cut = |text: &str| {
                let ends: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
                text[..ends[at % ends.len()]].to_owned()
            };
            let (authorization, token) = if in_token {
                (signed.authorization.clone(), cut(&signed.token))
            } else {
                (cut(&signed.authorization), signed.token.clone())
            };
            let err = parse_signed(&authorization, signed.token_name, &token).unwrap_err();
            check_refusal(&err)?;
        }

        /// Anything at all in the two headers: a parse or a named refusal, never a panic.
        #[test]
        fn arbitrary_headers_are_parsed_or_refused(
            word in prop_oneof![Just("AKSK ".to_owned()), Just("WSSE ".to_owned()), "\\PC{0,6}"],
            authorization in "[ -~]{0,80}",
            token in prop_oneof![
                "(UsernameToken )?((Username|Nonce|Created|PasswordDigest|realm)=\"?[ -~]{0,24}\"?,? ?){0,6}",
                "\\PC{0,120}",
            ],
            skew in any::<u64>(),
            now in any::<i64>(),
        ) {
            let authorization = format!("{word}{authorization}");
            match parse(Some(&authorization), |_| Some(token.as_str())) {
                Err(err) => check_refusal(&err)?,
                Ok(credentials) => {
                    prop_assert!(!credentials.nonce.is_empty() && credentials.nonce.len() <= MAX_NONCE);
                    let _ = credentials.verify("secret");
                    if let Err(err) = credentials.check_skew(now, skew) {
                        prop_assert!(err.is_unauthorized());
                    }
                }
            }
        }

        /// `key_values` reads back what it is given: quoted values hold commas, spaces and `=`.
        #[test]
        fn key_values_reads_formatted_pairs_back(
            pairs in proptest::collection::vec(("[A-Za-z][A-Za-z0-9]{0,12}", "[^\"]{0,20}"), 0..8),
            separator in prop_oneof![Just(","), Just(", "), Just(" ,"), Just("  ")],
        ) {
            let text = pairs.iter().map(|(key, value)| format!("{key}=\"{value}\"")).collect::<Vec<_>>().join(separator);
            prop_assert_eq!(key_values(&text).unwrap(), pairs);
        }
    }

    #[test]
    fn an_unclosed_quote_is_refused_with_the_field_it_opens() {
        // Found by `a_truncated_header_is_refused`: the last quote cut off a signed header was
        // read as if it were there, so a truncated header verified.
        let created = Utc.with_ymd_and_hms(2018, 2, 12, 15, 30, 20).unwrap();
        let signed = sign(Scheme::Aksk, "app", "secret", "n1", created);
        let token = signed.token.strip_suffix('"').unwrap();
        let err = parse_signed(&signed.authorization, signed.token_name, token).unwrap_err();
        assert_eq!(err.code, codes::CREATED_FORMAT_INVALID);
        assert_eq!(err.desc, "Created in X-AKSK opens a quote that is never closed.");
        let authorization = signed.authorization.strip_suffix('"').unwrap();
        let err = parse_signed(authorization, signed.token_name, &signed.token).unwrap_err();
        assert_eq!(err.code, codes::TYPE_INVALID);
        assert!(err.desc.contains("type in Authorization"), "{}", err.desc);
        let wsse = sign(Scheme::Wsse, "app", "secret", "n1", created);
        let token = wsse.token.replace(r#"Username="app""#, r#"Username="app"#);
        let err = parse_signed(&wsse.authorization, wsse.token_name, &token).unwrap_err();
        // The unclosed quote runs to the next one: that value is cut by a later quote, and the
        // header falls apart around it; it is refused, whatever field that breaks.
        assert!(REFUSALS.contains(&err.code), "{err:?}");
    }
}
