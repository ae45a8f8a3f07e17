//! The reference's time formats.

/// `yyyy-MM-dd HH:mm:ss` in UTC: call events, CDRs and binding queries (docs/compatibility.md).
pub fn reference_time(unix_secs: i64) -> String {
    chrono::DateTime::from_timestamp(unix_secs, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}
