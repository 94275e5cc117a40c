//! Faults a request asks for (`--fault-headers`): a test suite aims a delay, an abort or a
//! bandwidth limit at one call through `x-engine-fault-*` fields, without touching the shared
//! rules. They are honoured from loopback clients, or from any client that also sends the
//! admin token in `x-engine-fault-token`; the fields never go upstream either way (the codec
//! drops every `x-engine-fault-*` field from forwarded heads).

use std::time::Duration;

use crate::faults::{Direction, FaultKind};
use crate::inject::{canned, Decision, End};
use crate::shape::Shape;

pub const DELAY: &str = "x-engine-fault-delay-ms";
pub const ABORT: &str = "x-engine-fault-abort-status";
pub const BANDWIDTH: &str = "x-engine-fault-bandwidth-bps";
pub const TOKEN: &str = "x-engine-fault-token";

/// The longest delay a request may ask for, as for a rule.
const MAX_DELAY_MS: u64 = 3_600_000;

/// A fault field whose value is not one the proxy can act on: the request is answered 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {value:?} is not {wanted}")]
pub struct BadField {
    pub field: &'static str,
    pub value: String,
    pub wanted: &'static str,
}

/// Whether the request's fault fields count: from a loopback client, or with the admin token.
pub(crate) fn trusted<'a>(loopback: bool, token: Option<&str>, header: impl Fn(&str) -> Option<&'a [u8]>) -> bool {
    loopback || token.zip(header(TOKEN)).is_some_and(|(want, got)| crate::admin::same_secret(want.as_bytes(), got))
}

/// Adds the faults the request asks for to the rules' decision `d`: a delay on top of the
/// rules', the lower of two bandwidths, an abort in place of forwarding.
pub(crate) fn apply<'a>(header: impl Fn(&str) -> Option<&'a [u8]>, d: &mut Decision) -> Result<(), BadField> {
    if let Some(v) = header(DELAY) {
        let ms = number(DELAY, v, "a number of milliseconds up to one hour", 0, MAX_DELAY_MS)?;
        d.delay += Duration::from_millis(ms);
    }
    if let Some(v) = header(BANDWIDTH) {
        let bps = number(BANDWIDTH, v, "a number of bytes per second, at least 1", 1, u64::MAX)?;
        d.stream(FaultKind::Bandwidth, Direction::Downstream, Shape { bytes_per_s: Some(bps), ..Default::default() });
    }
    if let Some(v) = header(ABORT) {
        let status = number(ABORT, v, "a status within 200..599", 200, 599)? as u16;
        if d.end.is_none() {
            let body = format!("engine-proxy: a {status} this request asked for ({ABORT})\n");
            let (head, body) = canned(status, None, std::iter::empty::<(&str, &str)>(), body.as_bytes());
            d.end = Some(End::Respond { head, body, kind: FaultKind::Abort, grpc: None });
        }
    }
    Ok(())
}

fn number(field: &'static str, value: &[u8], wanted: &'static str, min: u64, max: u64) -> Result<u64, BadField> {
    std::str::from_utf8(value)
        .ok()
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| BadField { field, value: String::from_utf8_lossy(value).into_owned(), wanted })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(fields: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a [u8]> + 'a {
        move |name| fields.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_bytes())
    }

    #[test]
    fn loopback_or_the_token_is_trusted_nothing_else() {
        let with = [(TOKEN, "s3cret-token-0123456789")];
        let wrong = [(TOKEN, "guess")];
        assert!(trusted(true, None, lookup(&[])));
        assert!(trusted(false, Some("s3cret-token-0123456789"), lookup(&with)));
        assert!(!trusted(false, Some("s3cret-token-0123456789"), lookup(&wrong)));
        assert!(!trusted(false, Some("s3cret-token-0123456789"), lookup(&[])));
        // No admin token configured: a remote client cannot be trusted at all.
        assert!(!trusted(false, None, lookup(&with)));
    }

    #[test]
    fn fields_add_to_the_decision_and_bad_values_are_named() {
        let mut d = Decision { delay: Duration::from_millis(5), ..Default::default() };
        d.down.bytes_per_s = Some(100);
        apply(lookup(&[(DELAY, "50"), (BANDWIDTH, "1000"), ("X-Engine-Fault-Abort-Status", "429")]), &mut d).unwrap();
        assert_eq!(d.delay, Duration::from_millis(55));
        assert_eq!(d.down.bytes_per_s, Some(100));
        match &d.end {
            Some(End::Respond { head, .. }) => assert!(head.starts_with(b"HTTP/1.1 429 Too Many Requests\r\n")),
            _ => panic!("no abort"),
        }
        for (field, v) in
            [(DELAY, "-1"), (DELAY, "5e3"), (DELAY, "3600001"), (ABORT, "99"), (ABORT, "600"), (BANDWIDTH, "0")]
        {
            let e = apply(lookup(&[(field, v)]), &mut Decision::default()).unwrap_err();
            assert_eq!((e.field, e.value.as_str()), (field, v));
        }
    }
}
