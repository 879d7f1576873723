//! .NET `TimeSpan` strings as IIS's configuration system stores `timeSpan` attributes
//! (`requestTimeout="00:02:00"`).

use std::time::Duration;

/// .NET ticks per second (a tick is 100 ns); the fraction has at most 7 digits for that reason.
const TICKS_PER_SECOND: u64 = 10_000_000;

/// Why a timeSpan string was refused; the builder turns it into a `ConfigError` with the
/// attribute's name, because only it knows which attribute this was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeSpanError {
    /// Not of the form `[d.]hh:mm[:ss[.fffffff]]`.
    Syntax,
    /// Well-formed but negative (a leading `-`).
    Negative,
    /// Well-formed but beyond what 64-bit ticks hold (far beyond any range in the schema).
    TooLarge,
}

/// Parses `[-][d.]hh:mm[:ss[.fffffff]]` into 100 ns ticks.
///
/// That is the subset of .NET's `TimeSpan.Parse` that appears in IIS configuration: hours 0–23,
/// minutes and seconds 0–59 (1–2 digits each), days up to 8 digits, fraction 1–7 digits.
/// Whitespace around the value is refused rather than trimmed, like numbers, so that every value
/// is read exactly as written. A bare number (`"120"`, which .NET reads as 120 days) is refused:
/// in a timeout it is almost always a mistaken number of seconds, and refusing it is safer than
/// waiting 120 days.
pub(crate) fn parse_ticks(s: &str) -> Result<u64, TimeSpanError> {
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let ticks = parse_unsigned(body)?;
    if negative && ticks != 0 {
        return Err(TimeSpanError::Negative);
    }
    Ok(ticks)
}

fn parse_unsigned(s: &str) -> Result<u64, TimeSpanError> {
    fields(s)
        .ok_or(TimeSpanError::Syntax)
        .and_then(|(whole_seconds, fraction_ticks)| {
            whole_seconds
                .checked_mul(TICKS_PER_SECOND)
                .and_then(|t| t.checked_add(fraction_ticks))
                .ok_or(TimeSpanError::TooLarge)
        })
}

/// (whole seconds, fraction in ticks), or `None` for bad syntax.
fn fields(s: &str) -> Option<(u64, u64)> {
    let mut parts = s.split(':');
    let first = parts.next()?;
    let minutes = parts.next()?;
    let last = parts.next();
    if parts.next().is_some() {
        return None;
    }
    // `d.hh` or `hh`: the day separator is a dot before the first colon.
    let (days, hours) = match first.split_once('.') {
        Some((d, h)) => (digits(d, 8)?, h),
        None => (0, first),
    };
    let hours = digits(hours, 2)?;
    let minutes = digits(minutes, 2)?;
    let (seconds, fraction_ticks) = match last {
        None => (0, 0),
        Some(sec) => match sec.split_once('.') {
            Some((whole, frac)) => (digits(whole, 2)?, fraction(frac)?),
            None => (digits(sec, 2)?, 0),
        },
    };
    if hours > 23 || minutes > 59 || seconds > 59 {
        return None;
    }
    Some((
        ((days * 24 + hours) * 60 + minutes) * 60 + seconds,
        fraction_ticks,
    ))
}

/// 1..=max_len ASCII digits (no sign, no spaces) as a number.
fn digits(s: &str, max_len: usize) -> Option<u64> {
    if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A 1–7 digit fraction of a second, in ticks (`.5` = 5,000,000).
fn fraction(s: &str) -> Option<u64> {
    let value = digits(s, 7)?;
    Some(value * 10u64.pow(7 - s.len() as u32))
}

/// Converts ticks to a `Duration`, exact because ticks are whole 100 ns units.
pub(crate) fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::new(
        ticks / TICKS_PER_SECOND,
        ((ticks % TICKS_PER_SECOND) * 100) as u32,
    )
}

/// Whether the ticks are a whole number of seconds; IIS's `requestTimeout` validation has a
/// granularity of 1 s (`timeSpanRange` "0,1296000,1"), so fractions are refused, not truncated:
/// a silently shortened timeout would be harder to diagnose than an error.
pub(crate) fn is_whole_seconds(ticks: u64) -> bool {
    ticks % TICKS_PER_SECOND == 0
}

/// Formats whole seconds the way .NET would print them (`15.00:00:00`), for range messages.
pub(crate) fn format_seconds(total: u64) -> String {
    let (days, rem) = (total / 86_400, total % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if days > 0 {
        format!("{days}.{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &str) -> Result<f64, TimeSpanError> {
        parse_ticks(s).map(|t| t as f64 / TICKS_PER_SECOND as f64)
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(secs("00:02:00"), Ok(120.0));
        assert_eq!(secs("0:2:0"), Ok(120.0));
        assert_eq!(secs("01:00"), Ok(3600.0));
        assert_eq!(secs("00:02"), Ok(120.0));
        assert_eq!(secs("1.00:00:00"), Ok(86_400.0));
        assert_eq!(secs("15.00:00:00"), Ok(1_296_000.0));
        assert_eq!(secs("00:00:01.5"), Ok(1.5));
        assert_eq!(secs("00:00:00.0000001"), Ok(0.000_000_1));
        assert_eq!(secs("23:59:59"), Ok(86_399.0));
        assert_eq!(secs("-00:00:00"), Ok(0.0));
    }

    #[test]
    fn refused_forms() {
        for bad in [
            "",
            "120",
            "abc",
            "00:60:00",
            "24:00:00",
            "00:00:60",
            " 00:02:00",
            "00:02:00 ",
            "+00:02:00",
            "00:02:00.",
            "00:00:00.00000001",
            "00::00",
            "1.2.03:00:00",
            "00:02:00:00",
            "１:00:00",
            "123456789.00:00:00",
            ".00:00:00",
        ] {
            assert_eq!(secs(bad), Err(TimeSpanError::Syntax), "{bad:?}");
        }
        assert_eq!(secs("-00:00:01"), Err(TimeSpanError::Negative));
    }

    #[test]
    fn largest_day_count_does_not_overflow() {
        assert_eq!(secs("99999999.23:59:59"), Err(TimeSpanError::TooLarge));
        assert_eq!(secs("10000000.00:00:00").map(|s| s > 8.6e11), Ok(true));
    }

    #[test]
    fn durations_and_formatting() {
        assert_eq!(ticks_to_duration(15_000_000), Duration::from_millis(1500));
        assert!(is_whole_seconds(20 * TICKS_PER_SECOND));
        assert!(!is_whole_seconds(TICKS_PER_SECOND / 2));
        assert_eq!(format_seconds(120), "00:02:00");
        assert_eq!(format_seconds(1_296_000), "15.00:00:00");
    }
}
