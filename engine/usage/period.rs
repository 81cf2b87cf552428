//! UTC calendar periods of the ledger (day, month, minute) from Unix seconds, without a date
//! library: days from the civil calendar by Howard Hinnant's `civil_from_days` algorithm.

/// Seconds in a day.
pub const DAY: i64 = 86_400;

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The UTC day of `at` as `YYYY-MM-DD`.
pub fn day(at: i64) -> String {
    let (y, m, d) = civil_from_days(at.div_euclid(DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

/// The UTC month of `at` as `YYYY-MM`.
pub fn month(at: i64) -> String {
    let (y, m, _) = civil_from_days(at.div_euclid(DAY));
    format!("{y:04}-{m:02}")
}

/// The UTC day of `at` as a number (days since 1970-01-01): [`day`] without the text.
pub fn day_number(at: i64) -> i64 {
    at.div_euclid(DAY)
}

/// The UTC month of `at` as a number (`year * 12 + month - 1`): ordered like [`month`].
pub fn month_number(at: i64) -> i64 {
    let (y, m, _) = civil_from_days(at.div_euclid(DAY));
    y * 12 + i64::from(m) - 1
}

/// The day of the month of `at` (1..=31).
pub fn day_of_month(at: i64) -> u32 {
    civil_from_days(at.div_euclid(DAY)).2
}

/// The minute of `at` (minutes since the epoch): the rate-limit window.
pub fn minute(at: i64) -> i64 {
    at.div_euclid(60)
}

/// Seconds from `at` to the next UTC midnight (at least 1).
pub fn until_next_day(at: i64) -> i64 {
    (DAY - at.rem_euclid(DAY)).max(1)
}

/// Seconds from `at` to the first of the next UTC month (at least 1).
pub fn until_next_month(at: i64) -> i64 {
    let (y, m, _) = civil_from_days(at.div_euclid(DAY));
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (days_from_civil(ny, nm, 1) * DAY - at).max(1)
}

/// Seconds from `at` to the next minute (at least 1).
pub fn until_next_minute(at: i64) -> i64 {
    (60 - at.rem_euclid(60)).max(1)
}

/// Parses `YYYY-MM-DD` into the Unix second of its midnight, if it is a real date.
pub fn parse_day(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i64 = s.get(0..4)?.parse().ok()?;
    let m: u32 = s.get(5..7)?.parse().ok()?;
    let d: u32 = s.get(8..10)?.parse().ok()?;
    if !(1..=12).contains(&m) || d == 0 || d > 31 {
        return None;
    }
    let days = days_from_civil(y, m, d);
    // Rejects 2026-02-30 and the like: the date must survive a round trip.
    (civil_from_days(days) == (y, m, d)).then_some(days * DAY)
}

/// The first day of the month of `at` as `YYYY-MM-DD`.
pub fn month_start(at: i64) -> String {
    format!("{}-01", month(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar() {
        assert_eq!(day(0), "1970-01-01");
        // 2024-02-29T23:59:59Z
        let leap = 1_709_251_199;
        assert_eq!(day(leap), "2024-02-29");
        assert_eq!(month(leap), "2024-02");
        assert_eq!(day_of_month(leap), 29);
        assert_eq!(until_next_day(leap), 1);
        assert_eq!(until_next_month(leap), 1);
        assert_eq!(day(leap + 1), "2024-03-01");
        // 2026-12-31T12:00:00Z: next month is January of the next year.
        let nye = parse_day("2026-12-31").unwrap() + 12 * 3600;
        assert_eq!(until_next_month(nye), 12 * 3600);
        assert_eq!(until_next_minute(nye + 59), 1);
        assert_eq!(month_start(nye), "2026-12-01");
        assert_eq!(parse_day("2026-02-30"), None);
        assert_eq!(parse_day("2026-2-3"), None);
        assert_eq!(parse_day("2026-13-01"), None);
        assert_eq!(month_number(leap), 2024 * 12 + 1);
        assert!(month_number(nye + DAY) > month_number(nye));
        assert_eq!(day_number(leap), parse_day("2024-02-29").unwrap() / DAY);
        for d in [-1_000_000i64, -1, 0, 1, 19_000, 20_000, 2_000_000] {
            let s = day(d * DAY);
            assert_eq!(parse_day(&s), Some(d * DAY), "{s}");
        }
    }
}
