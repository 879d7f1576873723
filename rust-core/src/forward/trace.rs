//! W3C Trace Context (`traceparent`, https://www.w3.org/TR/trace-context/) on the way to the app:
//! a request that carries a valid `traceparent` keeps it (and its `tracestate`) byte for byte; one
//! without a valid one gets a new trace whose parent is the proxy's own span, so that the app
//! (ASP.NET Core's `Activity`, OpenTelemetry SDKs) continues a trace the proxy can log. An invalid
//! one is replaced and its `tracestate` dropped, as the spec asks of a vendor that cannot parse
//! the parent (§3.2 and §3.3: start a new trace, and `tracestate` only means something beside a
//! valid `traceparent`). With generation off (handlerSetting `traceparentGeneration=false`) the
//! request's fields are left as they came.
//!
//! One rule for every path: the general path ([`crate::App::handle`]) and the engine's own
//! HTTP/1.1 head writer (`h1::request`) both call [`decide`].

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// The `traceparent` field's name.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The `tracestate` field's name.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// A trace id as the 32 lowercase hex digits of the `traceparent` that went to the app.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId([u8; 32]);

impl TraceId {
    /// The 32 hex digits.
    pub fn as_str(&self) -> &str {
        // Only ever built from checked lowercase hex digits.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl std::fmt::Display for TraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for TraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TraceId({})", self.as_str())
    }
}

/// A generated `traceparent` value: `00-<trace id>-<span id>-01`, 55 bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceParent([u8; 55]);

impl TraceParent {
    /// A new trace: random 128-bit trace id, random 64-bit span id (the proxy's span), flags
    /// `01` (sampled: the app's parent-based sampler then records it as it would a trace it
    /// started itself).
    pub fn generate() -> TraceParent {
        let (trace, span) = RNG.with(|r| {
            let mut r = r.borrow_mut();
            let mut trace = r.u128(..);
            while trace == 0 {
                trace = r.u128(..);
            }
            let mut span = r.u64(..);
            while span == 0 {
                span = r.u64(..);
            }
            (trace, span)
        });
        let mut v = *b"00-00000000000000000000000000000000-0000000000000000-01";
        for (i, word) in [
            (trace >> 96) as u32,
            (trace >> 64) as u32,
            (trace >> 32) as u32,
            trace as u32,
        ]
        .into_iter()
        .enumerate()
        {
            v[3 + 8 * i..11 + 8 * i].copy_from_slice(&hex8(word));
        }
        v[36..44].copy_from_slice(&hex8((span >> 32) as u32));
        v[44..52].copy_from_slice(&hex8(span as u32));
        TraceParent(v)
    }

    /// The field value's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Its trace id.
    pub fn trace_id(&self) -> TraceId {
        let mut id = [0u8; 32];
        id.copy_from_slice(&self.0[3..35]);
        TraceId(id)
    }

    /// As a header value.
    pub fn to_header_value(&self) -> HeaderValue {
        // 55 ASCII bytes: always a valid value.
        HeaderValue::from_bytes(&self.0).unwrap_or(HeaderValue::from_static(""))
    }
}

impl std::fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TraceParent({})", String::from_utf8_lossy(&self.0))
    }
}

thread_local! {
    /// A per-thread fast generator (wyrand), seeded from the OS random source once per thread:
    /// trace ids are labels that must not repeat, not secrets, so the OS source's system call
    /// per request is not needed (fastrand's own seed is the time and the thread id).
    static RNG: std::cell::RefCell<fastrand::Rng> = std::cell::RefCell::new({
        let mut seed = [0u8; 8];
        match getrandom::fill(&mut seed) {
            Ok(()) => fastrand::Rng::with_seed(u64::from_ne_bytes(seed)),
            Err(_) => fastrand::Rng::new(),
        }
    });
}

/// `x` as 8 lowercase hex digits, all at once in a u64 (a digit per byte), since a table walk per
/// digit cost ≈ 280 instructions per generated value (callgrind, docs/operations.md).
fn hex8(x: u32) -> [u8; 8] {
    let mut v = u64::from(x);
    // Spread the nibbles one per byte, the lowest nibble in the lowest byte.
    v = (v | (v << 16)) & 0x0000_ffff_0000_ffff;
    v = (v | (v << 8)) & 0x00ff_00ff_00ff_00ff;
    v = (v | (v << 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    // 1 in each byte whose nibble is 10 or more, which then goes to 'a'.. instead of ':'..
    let letters = ((v + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    (v + 0x3030_3030_3030_3030 + letters * (b'a' - b'0' - 10) as u64).to_be_bytes()
}

/// What becomes of a request's trace fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trace {
    /// The client's `traceparent` is valid: it and `tracestate` go unchanged.
    Kept(TraceId),
    /// Send this `traceparent` instead of whatever the client sent, and no `tracestate`.
    Generated(TraceParent),
    /// Leave the fields as they came (generation off, no valid `traceparent`): no trace id.
    Untouched,
}

impl Trace {
    /// The trace id the app sees, if any.
    pub fn trace_id(&self) -> Option<TraceId> {
        match self {
            Trace::Kept(id) => Some(*id),
            Trace::Generated(p) => Some(p.trace_id()),
            Trace::Untouched => None,
        }
    }
}

/// The rule: given every `traceparent` field value the client sent (in order) and whether
/// generation is on, what goes to the app. More than one `traceparent` field is invalid (the
/// spec defines a single value).
pub fn decide<'a>(mut traceparents: impl Iterator<Item = &'a [u8]>, generate: bool) -> Trace {
    if let Some(first) = traceparents.next() {
        if traceparents.next().is_none() {
            if let Some(id) = valid(first) {
                return Trace::Kept(id);
            }
        }
    }
    if generate {
        Trace::Generated(TraceParent::generate())
    } else {
        Trace::Untouched
    }
}

/// Applies [`decide`] to a header map (the general path): a generated `traceparent` replaces the
/// client's, whose `tracestate` is removed. Returns the trace id the app sees.
pub fn apply(h: &mut HeaderMap, generate: bool) -> Option<TraceId> {
    let t = decide(
        h.get_all(TRACEPARENT).iter().map(HeaderValue::as_bytes),
        generate,
    );
    if let Trace::Generated(p) = t {
        h.insert(TRACEPARENT, p.to_header_value());
        h.remove(TRACESTATE);
    }
    t.trace_id()
}

/// The trace id of a valid `traceparent` value (W3C Trace Context §3.2.2): `version-traceid-
/// parentid-flags`, lowercase hex, version not `ff`, ids not all zero; version `00` is exactly 55
/// bytes, a later version at least that, and anything after is introduced by `-` (§3.2.4, so that
/// a newer version's value is still read for its first four parts).
pub fn valid(v: &[u8]) -> Option<TraceId> {
    let v = v.trim_ascii();
    if v.len() < 55 {
        return None;
    }
    let hex = |s: &[u8]| {
        s.iter()
            .all(|&b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let (version, trace, parent, flags) = (&v[0..2], &v[3..35], &v[36..52], &v[53..55]);
    if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    if !hex(version) || version == b"ff" || !hex(trace) || !hex(parent) || !hex(flags) {
        return None;
    }
    if version == b"00" && v.len() != 55 {
        return None;
    }
    if v.len() > 55 && v[55] != b'-' {
        return None;
    }
    if trace.iter().all(|&b| b == b'0') || parent.iter().all(|&b| b == b'0') {
        return None;
    }
    let mut id = [0u8; 32];
    id.copy_from_slice(trace);
    Some(TraceId(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn valid_values_and_the_invalid_shapes() {
        assert_eq!(
            valid(GOOD.as_bytes()).unwrap().as_str(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        // A later version may carry more, after a '-'.
        assert!(valid(format!("cc{}-what-the-future-holds", &GOOD[2..]).as_bytes()).is_some());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(valid(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn generated_values_are_valid_sampled_and_distinct() {
        let a = TraceParent::generate();
        let b = TraceParent::generate();
        assert_eq!(valid(a.as_bytes()), Some(a.trace_id()));
        assert!(a.as_bytes().starts_with(b"00-") && a.as_bytes().ends_with(b"-01"));
        assert_ne!(a.trace_id(), b.trace_id());
        assert_ne!(a.as_bytes()[36..52], b.as_bytes()[36..52]);
    }

    #[test]
    fn hex8_is_lowercase_hex_most_significant_first() {
        for x in [
            0u32,
            9,
            10,
            15,
            0x0123_4567,
            0x89ab_cdef,
            u32::MAX,
            0xa0b0_c0d0,
        ] {
            assert_eq!(hex8(x), format!("{x:08x}").as_bytes(), "{x:#x}");
        }
        let p = TraceParent::generate();
        let text = std::str::from_utf8(p.as_bytes()).unwrap();
        assert_eq!(
            u128::from_str_radix(&text[3..35], 16)
                .map(|t| format!("{t:032x}"))
                .unwrap(),
            &text[3..35]
        );
    }

    #[test]
    fn decide_keeps_valid_replaces_invalid_and_respects_off() {
        let good = GOOD.as_bytes();
        assert!(matches!(decide([good].into_iter(), true), Trace::Kept(_)));
        assert!(matches!(decide([good].into_iter(), false), Trace::Kept(_)));
        assert!(matches!(
            decide([good, good].into_iter(), true),
            Trace::Generated(_)
        ));
        assert!(matches!(
            decide([&b"junk"[..]].into_iter(), true),
            Trace::Generated(_)
        ));
        assert_eq!(decide(std::iter::empty(), false), Trace::Untouched);
        assert_eq!(decide([&b"junk"[..]].into_iter(), false), Trace::Untouched);
    }

    #[test]
    fn apply_replaces_an_invalid_one_and_drops_its_tracestate() {
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, HeaderValue::from_static("00-bad"));
        h.insert(TRACESTATE, HeaderValue::from_static("a=1"));
        let id = apply(&mut h, true).unwrap();
        let sent = h.get(TRACEPARENT).unwrap().as_bytes();
        assert_eq!(valid(sent), Some(id));
        assert!(!h.contains_key(TRACESTATE));
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, HeaderValue::from_static(GOOD));
        h.insert(TRACESTATE, HeaderValue::from_static("a=1"));
        assert_eq!(apply(&mut h, true), valid(GOOD.as_bytes()));
        assert_eq!(h.get(TRACEPARENT).unwrap(), GOOD);
        assert_eq!(h.get(TRACESTATE).unwrap(), "a=1");
    }
}
