//! Proleptic Gregorian calendar arithmetic for timestamps: day counts to
//! dates and back (Howard Hinnant's algorithms), offsets, digits — what
//! parsing and writing isoformat text need on the hot path, without a
//! calendar library. Tests check it against chrono across years 0–9999.

/// Days in `month` (1–12) of `year`, proleptic Gregorian.
pub(crate) fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a (valid) proleptic Gregorian date (Howard
/// Hinnant's `days_from_civil`).
pub(crate) fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `+HH:MM`, `-HH:MM` or `±HH:MM:SS` (also without colons) → seconds.
pub(crate) fn parse_offset(s: &str) -> Option<i32> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s.as_bytes()[1..]),
        b'-' => (-1, &s.as_bytes()[1..]),
        _ => return None,
    };
    let mut digits = [0u8; 6];
    let mut n = 0;
    for &c in rest {
        if c == b':' {
            continue;
        }
        if !c.is_ascii_digit() || n == 6 {
            return None;
        }
        digits[n] = c - b'0';
        n += 1;
    }
    if !matches!(n, 4 | 6) {
        return None;
    }
    let part = |i: usize| Some(i32::from(digits[i]) * 10 + i32::from(digits[i + 1]));
    let (h, m) = (part(0)?, part(2)?);
    let sec = if n == 6 { part(4)? } else { 0 };
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60 + sec))
}

/// The proleptic Gregorian date of a day count from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, the inverse of [`days_from_civil`]).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Writes `n` as `width` zero-padded digits.
pub(crate) fn push_digits(out: &mut [u8; 40], at: &mut usize, n: u32, width: usize) {
    let mut n = n;
    for i in (0..width).rev() {
        out[*at + i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    *at += width;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{MICROS_PER_SEC, Timestamp};
    use chrono::Timelike;

    /// A xorshift stream of numbers below the bound asked for (the
    /// calendar tests' inputs, reproducible from the seed).
    fn below(seed: u64) -> impl FnMut(u64) -> u64 {
        let mut x = seed;
        move |n| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        }
    }

    /// The year-range rule by arithmetic agrees with chrono's calendar at
    /// the edges and across offsets.
    #[test]
    fn year_range_agrees_with_chrono() {
        use chrono::Datelike;
        let lo = days_from_civil(1, 1, 1) * 86_400 * MICROS_PER_SEC;
        let hi = days_from_civil(10_000, 1, 1) * 86_400 * MICROS_PER_SEC;
        for base in [lo, hi] {
            for delta in [
                -90_000_000_000,
                -3_600_000_001,
                -1,
                0,
                1,
                3_600_000_000,
                90_000_000_000,
            ] {
                for off in [-86_399, -3600, 0, 1, 3600, 86_399] {
                    let t = Timestamp::from_micros_with_offset(base + delta, off).unwrap();
                    let want = t.to_chrono().is_some_and(|l| {
                        (1..=9999).contains(&l.year()) && (1..=9999).contains(&l.naive_utc().year())
                    });
                    assert_eq!(t.in_years_1_to_9999(), want, "{} {off}", base + delta);
                }
            }
        }
    }

    /// The fast isoformat writer and chrono's formatting agree on instants
    /// across years 0–9999 and offsets within a day.
    #[test]
    fn display_agrees_with_chrono_across_the_calendar() {
        let mut next = below(0xD1B5_4A32_D192_ED03);
        let lo = days_from_civil(0, 1, 2) * 86_400 * MICROS_PER_SEC;
        let hi = days_from_civil(9999, 12, 30) * 86_400 * MICROS_PER_SEC;
        for k in 0..200_000 {
            let mut micros = lo + next((hi - lo) as u64) as i64;
            if k % 3 == 0 {
                micros -= micros % MICROS_PER_SEC; // no fraction
            }
            let off = (next(2 * 86_399) as i32) - 86_399;
            let off = if k % 2 == 0 { off - off % 60 } else { off };
            let t = Timestamp::from_micros_with_offset(micros, off).unwrap();
            let fast = t.to_string();
            let dt = t.to_chrono().unwrap();
            let mut want = dt.format("%Y-%m-%dT%H:%M:%S").to_string();
            if dt.nanosecond() != 0 {
                want.push_str(&format!(".{:06}", dt.nanosecond() / 1000));
            }
            let a = off.unsigned_abs();
            want.push_str(&format!(
                "{}{:02}:{:02}",
                if off < 0 { '-' } else { '+' },
                a / 3600,
                a % 3600 / 60
            ));
            if a % 60 != 0 {
                want.push_str(&format!(":{:02}", a % 60));
            }
            assert_eq!(fast, want, "{micros} {off}");
            assert_eq!(Timestamp::parse(&fast).unwrap(), t);
        }
    }

    /// The calendar arithmetic of `parse` agrees with chrono's on dates
    /// across years 0–9999 (leap days, month ends, negative and positive
    /// offsets, with and without a fraction).
    #[test]
    fn parse_agrees_with_chrono_across_the_calendar() {
        use chrono::{NaiveDate, TimeZone};
        let mut next = below(0x9E37_79B9_7F4A_7C15);
        for _ in 0..200_000 {
            let y = next(10_000) as i32;
            let mo = 1 + next(12) as u32;
            let d = 1 + next(31) as u32;
            let Some(date) = NaiveDate::from_ymd_opt(y, mo, d) else {
                let text = format!("{y:04}-{mo:02}-{d:02}T00:00:00+00:00");
                assert!(Timestamp::parse(&text).is_err(), "{text} accepted");
                continue;
            };
            let (h, mi, sec, us) = (
                next(24) as u32,
                next(60) as u32,
                next(60) as u32,
                next(1_000_000) as u32,
            );
            let off = (next(2 * 86_399) as i32) - 86_399;
            let off = off - off % 60;
            let sign = if off < 0 { '-' } else { '+' };
            let text = format!(
                "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{sec:02}.{us:06}{sign}{:02}:{:02}",
                off.abs() / 3600,
                off.abs() % 3600 / 60
            );
            let want = chrono::FixedOffset::east_opt(off)
                .and_then(|tz| {
                    tz.from_local_datetime(&date.and_hms_micro_opt(h, mi, sec, us)?)
                        .single()
                })
                .map(|t| t.timestamp_micros());
            let got = Timestamp::parse(&text).map(|t| t.micros()).ok();
            assert_eq!(got, want, "{text}");
        }
    }
}
