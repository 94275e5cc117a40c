//! gRPC's status codes (grpc/grpc `doc/statuscodes.md`): by number, by name, parsed.

/// The codes by number.
pub const GRPC_CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The name of a code (`UNAVAILABLE`), `OTHER` beyond the known ones.
pub fn code_name(code: u32) -> &'static str {
    GRPC_CODES.get(code as usize).copied().unwrap_or("OTHER")
}

/// A code by name (`UNAVAILABLE`, any case) or number (0-16).
pub fn parse_code(text: &str) -> Result<u8, String> {
    let t = text.trim();
    if let Some(n) = t.parse::<u8>().ok().filter(|n| usize::from(*n) < GRPC_CODES.len()) {
        return Ok(n);
    }
    GRPC_CODES
        .iter()
        .position(|c| c.eq_ignore_ascii_case(t))
        .map(|i| i as u8)
        .ok_or_else(|| format!("'{t}' is not a gRPC status code (OK, CANCELLED, ... UNAUTHENTICATED, or 0-16)"))
}

/// A list of codes: `OK,NOT_FOUND` or `0,5`.
pub fn parse_codes(text: &str) -> Result<Vec<u8>, String> {
    text.split(',').map(parse_code).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_parse_by_name_or_number() {
        assert_eq!(parse_codes("ok,UNAVAILABLE,5").unwrap(), [0, 14, 5]);
        assert!(parse_code("17").is_err() && parse_code("NOPE").is_err());
        assert_eq!((code_name(4), code_name(99)), ("DEADLINE_EXCEEDED", "OTHER"));
    }
}
