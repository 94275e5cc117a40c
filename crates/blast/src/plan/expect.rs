//! Which response statuses a request expects: `200-399` by default, `200-399,404` or a
//! scenario request's own. A response outside its set is a failed request (error kind
//! `status`), counted everywhere errors are.

use std::fmt;

/// A set of status codes (100 to 999), one bit each: `contains` is a shift and a mask.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct StatusSet([u64; 16]);

impl Default for StatusSet {
    /// 200 to 399: success and redirects, as k6's `expected_response` has it.
    fn default() -> Self {
        let mut s = StatusSet([0; 16]);
        s.insert_range(200, 399);
        s
    }
}

impl StatusSet {
    pub fn contains(&self, code: u16) -> bool {
        let i = usize::from(code);
        i < 1024 && self.0[i / 64] & (1 << (i % 64)) != 0
    }

    fn insert_range(&mut self, lo: u16, hi: u16) {
        for c in lo..=hi {
            self.0[usize::from(c) / 64] |= 1 << (usize::from(c) % 64);
        }
    }

    /// Parses `200-399,404` (codes and inclusive ranges of 100..999).
    pub fn parse(text: &str) -> Result<StatusSet, String> {
        let bad = |why: &str| format!("invalid status list '{text}': {why} (example: 200-399,404)");
        let mut s = StatusSet([0; 16]);
        for part in text.split(',').map(str::trim) {
            let (lo, hi) = part.split_once('-').unwrap_or((part, part));
            let code = |t: &str| t.trim().parse::<u16>().ok().filter(|c| (100..=999).contains(c));
            let (Some(lo), Some(hi)) = (code(lo), code(hi)) else {
                return Err(bad("a status is a number from 100 to 999"));
            };
            if lo > hi {
                return Err(bad(&format!("{lo}-{hi} runs backwards")));
            }
            s.insert_range(lo, hi);
        }
        Ok(s)
    }
}

impl fmt::Debug for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // As the ranges it holds: 200-399,404.
        let mut parts = Vec::new();
        let mut c = 100;
        while c <= 999 {
            if self.contains(c) {
                let lo = c;
                while c < 999 && self.contains(c + 1) {
                    c += 1;
                }
                parts.push(if lo == c { lo.to_string() } else { format!("{lo}-{c}") });
            }
            c += 1;
        }
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets() {
        let d = StatusSet::default();
        assert!(d.contains(200) && d.contains(399) && !d.contains(404) && !d.contains(503) && !d.contains(199));
        let s = StatusSet::parse("200-399, 404").unwrap();
        assert!(s.contains(404) && s.contains(302) && !s.contains(405));
        assert_eq!(format!("{s:?}"), "200-399,404");
        for bad in ["", "abc", "200-", "399-200", "99", "1000", "200-1000", "-5", "2e2"] {
            assert!(StatusSet::parse(bad).is_err(), "{bad}");
        }
        assert!(!d.contains(u16::MAX));
    }
}
