//! Parsing of the units users type: durations (`500ms`, `10s`, `5m`, `1h30m`).

use std::time::Duration;

/// Parses a duration such as `250ms`, `10s`, `5m`, `1h`, or a sum of them (`1m30s`).
/// A bare number is seconds. Errors are one line a user can act on.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration (examples: 500ms, 10s, 5m, 1h)".into());
    }
    if let Ok(secs) = s.parse::<f64>() {
        return secs_to_duration(secs, text);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail.find(|c: char| c.is_ascii_digit()).unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let value: f64 =
            number.parse().map_err(|_| format!("invalid duration '{text}' (examples: 500ms, 10s, 5m, 1h)"))?;
        let scale = match unit {
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("invalid duration '{text}': unknown unit '{unit}' (use ms, s, m or h)")),
        };
        total += secs_to_duration(value * scale, text)?;
        rest = tail;
    }
    Ok(total)
}

/// The longest duration accepted: far beyond any run, short enough that deadlines computed from
/// it never overflow.
const MAX_SECS: f64 = 1e9;

fn secs_to_duration(secs: f64, text: &str) -> Result<Duration, String> {
    if !secs.is_finite() || !(0.0..=MAX_SECS).contains(&secs) {
        return Err(format!("invalid duration '{text}': at most {MAX_SECS:.0} s (about 31 years)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        for bad in ["", "ten", "10x", "-1", "s", "1e400"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}

/// A wall-clock time: Unix seconds (`1795400000`, `1795400000.5`) or RFC 3339
/// (`2026-11-22T23:30:00Z`, `2026-11-22T23:30:00.250+01:00`).
pub fn parse_time(text: &str) -> Result<std::time::SystemTime, String> {
    let t = text.trim();
    let bad = || format!("invalid time '{text}' (Unix seconds, or RFC 3339 such as 2026-11-22T23:30:00Z)");
    let unix_s = if let Ok(s) = t.parse::<f64>() {
        s
    } else {
        let b = t.as_bytes();
        if b.len() < 20
            || b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b'T' | b't' | b' ')
            || b[13] != b':'
            || b[16] != b':'
        {
            return Err(bad());
        }
        let num = |r: std::ops::Range<usize>| t.get(r).and_then(|s| s.parse::<i64>().ok()).ok_or_else(bad);
        let (y, mo, d, h, mi, s) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
            return Err(bad());
        }
        let mut rest = &t[19..];
        let mut frac = 0.0;
        if let Some(r) = rest.strip_prefix('.') {
            let digits = r.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            frac = format!("0.{}", &r[..digits]).parse::<f64>().map_err(|_| bad())?;
            rest = &r[digits..];
        }
        let offset_s = match rest {
            "Z" | "z" => 0,
            o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
                let sign = if o.starts_with('-') { -1 } else { 1 };
                sign * (o[1..3].parse::<i64>().map_err(|_| bad())? * 3600
                    + o[4..6].parse::<i64>().map_err(|_| bad())? * 60)
            }
            _ => return Err(bad()),
        };
        // Days from the civil date (Howard Hinnant's algorithm).
        let (y, m) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * m + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        (days * 86_400 + h * 3600 + mi * 60 + s - offset_s) as f64 + frac
    };
    if !(unix_s.is_finite() && unix_s >= 0.0) {
        return Err(bad());
    }
    Ok(std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(unix_s))
}

#[cfg(test)]
mod time_tests {
    use super::parse_time;
    use std::time::UNIX_EPOCH;

    fn secs(t: &str) -> f64 {
        parse_time(t).unwrap().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
    }

    #[test]
    fn unix_seconds_and_rfc3339() {
        assert_eq!(secs("1795400000"), 1_795_400_000.0);
        assert_eq!(secs("1795400000.5"), 1_795_400_000.5);
        assert_eq!(secs("1970-01-01T00:00:00Z"), 0.0);
        assert_eq!(secs("2000-03-01T00:00:00Z"), 951_868_800.0);
        assert_eq!(secs("2026-11-22T23:30:00Z"), 1_795_390_200.0);
        assert_eq!(secs("2026-11-23T00:30:00.250+01:00"), 1_795_390_200.25);
        for bad in ["soon", "2026-11-22", "2026-13-01T00:00:00Z", "2026-11-22T23:30:00", "-5"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
