//! Choosing the loopback port a backend process listens on.

use std::net::{Ipv4Addr, TcpListener};

/// The range ANCM draws random ports from.
pub const RANDOM_RANGE: std::ops::RangeInclusive<u16> = 10000..=48000;
/// How many random draws before giving up (as ANCM).
const DRAWS: usize = 10;

/// Draws a random port in [`RANDOM_RANGE`] that nothing listens on right now.
///
/// A bind test is the portable way to ask "is it free"; the small window between our test and
/// the child's bind is why start attempts each draw a new port.
pub fn random_free_port() -> std::io::Result<u16> {
    let span = u32::from(RANDOM_RANGE.end() - RANDOM_RANGE.start()) + 1;
    for _ in 0..DRAWS {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
        let port = RANDOM_RANGE.start() + (u32::from_le_bytes(b) % span) as u16;
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no free port found in {DRAWS} random draws"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_port_is_in_range_and_free() {
        let p = random_free_port().unwrap();
        assert!(RANDOM_RANGE.contains(&p));
        TcpListener::bind((Ipv4Addr::LOCALHOST, p)).unwrap();
    }
}
