//! The units users type: durations (`500ms`, `10s`, `5m`, `1h30m`) and wall-clock times
//! (Unix seconds or RFC 3339), parsed by `jiff` rather than by hand.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest duration accepted: far beyond any run, short enough that deadlines computed from
/// it never overflow.
const MAX_SECS: f64 = 1e9;

/// Parses a duration such as `250ms`, `10s`, `5m`, `1h`, or a sum of them (`1m30s`, `1h 30m`,
/// `1.5h`). A bare number is seconds. Errors are one line a user can act on.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    let bad = || format!("invalid duration '{text}' (examples: 500ms, 10s, 5m, 1h)");
    if s.is_empty() {
        return Err("empty duration (examples: 500ms, 10s, 5m, 1h)".into());
    }
    if s.starts_with('-') {
        return Err(format!("invalid duration '{text}': a duration cannot be negative (examples: 500ms, 10s, 5m, 1h)"));
    }
    let secs = match s.parse::<f64>() {
        Ok(secs) => secs,
        Err(_) => {
            let d: jiff::SignedDuration = s.parse().map_err(|_| bad())?;
            if d.is_negative() {
                return Err(bad());
            }
            d.as_secs_f64()
        }
    };
    if !secs.is_finite() || !(0.0..=MAX_SECS).contains(&secs) {
        return Err(format!("invalid duration '{text}': at most {MAX_SECS:.0} s (about 31 years)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A wall-clock time: Unix seconds (`1795400000`, `1795400000.5`) or RFC 3339
/// (`2026-11-22T23:30:00Z`, `2026-11-22T23:30:00.250+01:00`).
pub fn parse_time(text: &str) -> Result<SystemTime, String> {
    let t = text.trim();
    let bad = || format!("invalid time '{text}' (Unix seconds, or RFC 3339 such as 2026-11-22T23:30:00Z)");
    if let Ok(secs) = t.parse::<f64>() {
        let d = Duration::try_from_secs_f64(secs).map_err(|_| bad())?;
        return UNIX_EPOCH.checked_add(d).ok_or_else(bad);
    }
    let ts: jiff::Timestamp = t.parse().map_err(|_| bad())?;
    let time = SystemTime::from(ts);
    if time < UNIX_EPOCH {
        return Err(bad());
    }
    Ok(time)
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
        assert_eq!(parse_duration("200us"), Ok(Duration::from_micros(200)));
        for bad in ["", "ten", "10x", "-1", "-5s", "s", "1e400", "NaN", "inf", "1000000000000s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

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
        for bad in ["soon", "2026-11-22", "2026-13-01T00:00:00Z", "2026-11-22T23:30:00", "-5", "1e300", "NaN"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
