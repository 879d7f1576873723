//! UTC wall-clock text for file names and log lines, without a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// `yyyyMMddHHmmss` in UTC (the stdout log files' stamp), without a date crate: the
/// civil-from-days conversion is a few lines.
pub fn stamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}{:02}{:02}{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// `yyyy-MM-ddTHH:mm:ss.fffZ` (RFC 3339, milliseconds, UTC): log lines' time.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let s = stamp(t);
    let millis = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_millis())
        .unwrap_or(0);
    format!(
        "{}-{}-{}T{}:{}:{}.{millis:03}Z",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[8..10],
        &s[10..12],
        &s[12..14]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stamp_is_utc_civil_time() {
        assert_eq!(stamp(UNIX_EPOCH), "19700101000000");
        // 2024-02-29T23:59:58Z
        let t = UNIX_EPOCH + Duration::from_secs(1_709_251_198);
        assert_eq!(stamp(t), "20240229235958");
    }

    #[test]
    fn rfc3339_has_millis_and_zulu() {
        let t = UNIX_EPOCH + Duration::from_millis(1_709_251_198_042);
        assert_eq!(rfc3339_millis(t), "2024-02-29T23:59:58.042Z");
    }
}
