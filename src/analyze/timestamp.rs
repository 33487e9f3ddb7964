//! `created_at` values: RFC 3339 date-times or Unix seconds, as seconds since the epoch.
//! Hand-written because nothing else in epitome needs a calendar library.

/// Parses `2024-03-01T12:30:00Z`, `2024-03-01 12:30:00.5+02:00` or `1709296200` (Unix
/// seconds, fractions allowed) into Unix seconds.
pub fn parse_timestamp(s: &str) -> Result<f64, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return if secs.is_finite() {
            Ok(secs)
        } else {
            Err("not a finite number of seconds".to_owned())
        };
    }
    parse_rfc3339(s).ok_or_else(|| {
        "neither an RFC 3339 date-time (2024-03-01T12:30:00Z) nor Unix seconds".to_owned()
    })
}

fn parse_rfc3339(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = 19;
    let mut fraction = 0.0;
    if b[rest] == b'.' {
        let start = rest + 1;
        let end = start + b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
        if end == start {
            return None;
        }
        fraction = format!("0.{}", &s[start..end]).parse().ok()?;
        rest = end;
    }
    let offset = match b.get(rest)? {
        b'Z' | b'z' if rest + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if rest + 6 == b.len() && b[rest + 3] == b':' => {
            let minutes = num(rest + 1..rest + 3)? * 60 + num(rest + 4..rest + 6)?;
            if *sign == b'+' {
                minutes
            } else {
                -minutes
            }
        }
        _ => return None,
    };
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => return None,
    };
    // Second 60 is a leap second, which RFC 3339 allows.
    if day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset * 60;
    Some(secs as f64 + fraction)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats Unix seconds as an RFC 3339 date (UTC), for reports.
pub fn format_date(secs: f64) -> String {
    let days = (secs / 86_400.0).floor() as i64;
    // Inverse of days_from_civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339_and_unix_seconds() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Ok(0.0));
        assert_eq!(parse_timestamp("2024-03-01T12:30:00Z"), Ok(1_709_296_200.0));
        assert_eq!(
            parse_timestamp("2024-03-01 14:30:00.5+02:00"),
            Ok(1_709_296_200.5)
        );
        assert_eq!(parse_timestamp("1709296200"), Ok(1_709_296_200.0));
        assert_eq!(parse_timestamp(" 1709296200.25 "), Ok(1_709_296_200.25));
        assert_eq!(
            parse_timestamp("2000-02-29T00:00:00-00:30"),
            Ok(951_784_200.0)
        );
        for bad in [
            "yesterday",
            "2024-02-30T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-03-01",
            "2024-03-01T25:00:00Z",
            "2024-03-01T12:30:00",
            "2024-03-01T12:30:00.Z",
            "NaN",
            "",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad}");
        }
        assert!(parse_timestamp("yesterday")
            .unwrap_err()
            .contains("RFC 3339"));
        assert_eq!(format_date(1_709_296_200.0), "2024-03-01");
        assert_eq!(format_date(951_784_200.0), "2000-02-29");
        assert_eq!(format_date(-1.0), "1969-12-31");
    }
}
