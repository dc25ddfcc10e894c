//! Timestamps: microsecond instants that keep the UTC offset they were
//! written with, in Python's `isoformat()` text form (SPEC §2).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, FixedOffset, Timelike};

use crate::error::KeyError;

mod calendar;

use calendar::{civil_from_days, days_from_civil, days_in_month, parse_offset, push_digits};

pub(crate) const MICROS_PER_SEC: i64 = 1_000_000;

/// An instant at microsecond precision plus the UTC offset it was written
/// with.
///
/// Equality is structural (instant *and* offset), so a record round-trips
/// exactly. Ordering, identity and time ranges of history use
/// [`Timestamp::key`], the instant, as SPEC §4 requires.
///
/// ```
/// use taskstate_core::Timestamp;
/// let t: Timestamp = "2025-01-15T12:00:00.123456+02:00".parse().unwrap();
/// assert_eq!(t.to_string(), "2025-01-15T12:00:00.123456+02:00");
/// let utc: Timestamp = "2025-01-15T10:00:00.123456+00:00".parse().unwrap();
/// assert_eq!(t.key(), utc.key());
/// assert_ne!(t, utc);
/// // No fraction when the microseconds are 0; no offset means UTC.
/// let t: Timestamp = "2025-01-15T12:00:00".parse().unwrap();
/// assert_eq!(t.to_string(), "2025-01-15T12:00:00+00:00");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp {
    micros: i64,
    offset_secs: i32,
}

/// The ordering key of a timestamp: seconds since the epoch as the `f64`
/// `epoch_micros / 1e6`, exactly the `history_timestamp` REAL the reference
/// stores and orders by.
///
/// For every instant between years 1685 and 2255 (|µs| < 2^53) distinct
/// microseconds give distinct keys, so the key orders and identifies
/// instants at microsecond precision. Outside that span neighbouring
/// microseconds may share a key, and then every engine treats them as one
/// instant (as the reference's REAL column does).
#[derive(Clone, Copy, Debug)]
pub struct TimeKey(f64);

impl TimeKey {
    /// The key as seconds since the epoch.
    #[must_use]
    pub fn seconds(self) -> f64 {
        self.0
    }

    /// Wraps seconds since the epoch (as read from a REAL column).
    #[must_use]
    pub fn from_seconds(s: f64) -> Self {
        TimeKey(s)
    }

    /// The instant this key stands for, in UTC, to the nearest
    /// microsecond (an `f64` of seconds keeps sub-microsecond precision
    /// for every date the reference can read).
    ///
    /// ```
    /// use taskstate_core::{TimeKey, Timestamp};
    /// let t = Timestamp::from_micros(1_736_942_400_123_456);
    /// assert_eq!(t.key().to_timestamp(), t);
    /// assert_eq!(TimeKey::from_seconds(1.5).to_timestamp().micros(), 1_500_000);
    /// ```
    #[must_use]
    pub fn to_timestamp(self) -> Timestamp {
        Timestamp::from_micros((self.0 * 1e6).round() as i64)
    }
}

impl PartialEq for TimeKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for TimeKey {}
impl PartialOrd for TimeKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TimeKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}
impl std::hash::Hash for TimeKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state);
    }
}

impl Timestamp {
    /// The smallest timestamp (year 1, UTC).
    pub const MIN: Timestamp = Timestamp {
        micros: -62_135_596_800 * MICROS_PER_SEC,
        offset_secs: 0,
    };
    /// The largest timestamp (end of year 9999, UTC).
    pub const MAX: Timestamp = Timestamp {
        micros: 253_402_300_799 * MICROS_PER_SEC + 999_999,
        offset_secs: 0,
    };

    /// A UTC timestamp from microseconds since the epoch.
    #[must_use]
    pub fn from_micros(micros: i64) -> Self {
        Self {
            micros,
            offset_secs: 0,
        }
    }

    /// A timestamp from microseconds since the epoch, shown at an offset
    /// (seconds east of UTC; must be within ±24 h).
    pub fn from_micros_with_offset(micros: i64, offset_secs: i32) -> Result<Self, KeyError> {
        if offset_secs.abs() >= 86_400 {
            return Err(KeyError::new(
                "timestamp",
                format!("{micros}µs{offset_secs:+}s"),
                "UTC offset must be strictly within ±24h",
            ));
        }
        Ok(Self {
            micros,
            offset_secs,
        })
    }

    /// The current time, in UTC.
    #[must_use]
    pub fn now() -> Self {
        Self::from_micros(chrono::Utc::now().timestamp_micros())
    }

    /// Microseconds since the epoch (the instant).
    #[must_use]
    pub fn micros(&self) -> i64 {
        self.micros
    }

    /// Seconds east of UTC this timestamp is shown at.
    #[must_use]
    pub fn offset_secs(&self) -> i32 {
        self.offset_secs
    }

    /// The same instant shifted by `delta` microseconds, same offset.
    #[must_use]
    pub fn add_micros(&self, delta: i64) -> Self {
        Self {
            micros: self.micros.saturating_add(delta),
            offset_secs: self.offset_secs,
        }
    }

    /// The ordering key (see [`TimeKey`]).
    #[must_use]
    pub fn key(&self) -> TimeKey {
        // Same as Python's `datetime.timestamp()` (an exactly rounded
        // integer division) while |micros| < 2^53.
        TimeKey(self.micros as f64 / 1e6)
    }

    /// The instant as a chrono date-time at its offset, or `None` if it is
    /// outside chrono's range.
    #[must_use]
    pub fn to_chrono(&self) -> Option<DateTime<FixedOffset>> {
        let offset = FixedOffset::east_opt(self.offset_secs)?;
        let utc = DateTime::from_timestamp_micros(self.micros)?;
        Some(utc.with_timezone(&offset))
    }

    /// Parses Python's `datetime.isoformat()` text (and `fromisoformat`'s
    /// common variants: `Z`, a space separator, 1–6 fraction digits).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        match Self::parse_stored(text.as_bytes()) {
            Some(t) => Ok(t),
            None => Self::parse_any(text),
        }
    }

    /// The length of the one shape pynenc stores (see
    /// [`Timestamp::parse_stored`]).
    pub(crate) const STORED_LEN: usize = 32;

    /// The one shape pynenc stores (`isoformat()` of an aware datetime with
    /// microseconds: `YYYY-MM-DDTHH:MM:SS.ffffff+HH:MM`), read at fixed
    /// positions; `None` for anything else, valid or not, which
    /// [`Timestamp::parse_any`] reads or refuses. Every history row read
    /// parses one or two of these. Only ASCII digits and the shape's own
    /// punctuation are accepted, so bytes it reads are UTF-8 by then.
    pub(crate) fn parse_stored(b: &[u8]) -> Option<Self> {
        let at = |i: usize, c: u8| b.get(i) == Some(&c);
        if b.len() != Self::STORED_LEN
            || !(at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':'))
            || !(at(19, b'.') && at(29, b':'))
        {
            return None;
        }
        let sign = match b[26] {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let num = |r: std::ops::Range<usize>| b.get(r).and_then(digits);
        let (year, month, day) = (num(0..4)? as i32, num(5..7)?, num(8..10)?);
        let (h, m, s, micros) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..26)?);
        let (oh, om) = (num(27..29)?, num(30..32)?);
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        if h > 23 || m > 59 || s > 59 || oh > 23 || om > 59 {
            return None;
        }
        let offset_secs = sign * (oh * 3600 + om * 60) as i32;
        Self::from_civil((year, month, day), (h, m, s, micros), offset_secs).ok()
    }

    /// [`Timestamp::parse`] for every accepted shape, and its errors.
    fn parse_any(text: &str) -> Result<Self, KeyError> {
        let err = |reason: &str| KeyError::new("timestamp", text, reason);
        let b = text.as_bytes();
        if b.len() < 19 {
            return Err(err("expected YYYY-MM-DDTHH:MM:SS[.ffffff][+HH:MM]"));
        }
        // At most 6 digits: no overflow. Every byte must be a digit, so a
        // non-ASCII byte fails here as "expected digits".
        let num = |range: std::ops::Range<usize>| {
            b.get(range)
                .and_then(digits)
                .ok_or_else(|| err("expected digits"))
        };
        if b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b' ') {
            return Err(err("expected YYYY-MM-DDTHH:MM:SS"));
        }
        if b[13] != b':' || b[16] != b':' {
            return Err(err("expected HH:MM:SS"));
        }
        let (year, month, day) = (num(0..4)? as i32, num(5..7)?, num(8..10)?);
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return Err(err("no such date"));
        }
        let (h, m, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
        let mut pos = 19;
        let mut micros = 0u32;
        if b.get(pos) == Some(&b'.') {
            let start = pos + 1;
            let n = b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 || n > 6 {
                return Err(err("fraction must have 1 to 6 digits"));
            }
            micros = num(start..start + n)? * 10u32.pow((6 - n) as u32);
            pos = start + n;
        }
        if h > 23 || m > 59 || s > 59 {
            return Err(err("no such time of day"));
        }
        let offset_secs = match text.get(pos..) {
            Some("" | "Z") => 0,
            Some(rest) => parse_offset(rest).ok_or_else(|| err("bad UTC offset"))?,
            None => return Err(err("bad UTC offset")),
        };
        Self::from_civil((year, month, day), (h, m, s, micros), offset_secs)
    }

    /// The instant of a checked local date and time of day at a UTC
    /// offset. Plain arithmetic (no calendar library on this hot path):
    /// the days since the epoch of a proleptic Gregorian date.
    fn from_civil(
        (year, month, day): (i32, u32, u32),
        (h, m, s, micros): (u32, u32, u32, u32),
        offset_secs: i32,
    ) -> Result<Self, KeyError> {
        let local_secs =
            days_from_civil(year, month, day) * 86_400 + i64::from(h * 3600 + m * 60 + s);
        let utc_micros = local_secs * MICROS_PER_SEC + i64::from(micros)
            - i64::from(offset_secs) * MICROS_PER_SEC;
        Self::from_micros_with_offset(utc_micros, offset_secs)
    }
}

/// The number `b`'s ASCII digits spell; `None` if any byte is not a digit
/// (the callers read at most 6: no overflow). Folded in an `Option`, the
/// error built by the caller: every history row read parses two of these.
fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |n, &c| {
        let d = c.wrapping_sub(b'0');
        (d < 10).then_some(n * 10 + u32::from(d))
    })
}

impl FromStr for Timestamp {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timestamp::parse(s)
    }
}

impl Timestamp {
    /// Whether the date, in UTC and in the timestamp's own offset, falls in
    /// years 1–9999 (what Python's `datetime` holds).
    pub(crate) fn in_years_1_to_9999(&self) -> bool {
        let lo = days_from_civil(1, 1, 1) * 86_400 * MICROS_PER_SEC;
        let hi = days_from_civil(10_000, 1, 1) * 86_400 * MICROS_PER_SEC;
        let local = self.micros + i64::from(self.offset_secs) * MICROS_PER_SEC;
        (lo..hi).contains(&self.micros) && (lo..hi).contains(&local)
    }

    /// The isoformat text of a four-digit-year instant, without the
    /// formatting machinery (the hot path of every history write); `None`
    /// for other years.
    fn write_iso(&self, out: &mut [u8; 40]) -> Option<usize> {
        let local = self.micros + i64::from(self.offset_secs) * MICROS_PER_SEC;
        let (secs, us) = (
            local.div_euclid(MICROS_PER_SEC),
            local.rem_euclid(MICROS_PER_SEC),
        );
        let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (year, month, day) = civil_from_days(days);
        let year = u32::try_from(year).ok().filter(|y| *y <= 9999)?;
        let mut at = 0;
        push_digits(out, &mut at, year, 4);
        out[at] = b'-';
        at += 1;
        push_digits(out, &mut at, month, 2);
        out[at] = b'-';
        at += 1;
        push_digits(out, &mut at, day, 2);
        out[at] = b'T';
        at += 1;
        let sod = sod as u32;
        push_digits(out, &mut at, sod / 3600, 2);
        out[at] = b':';
        at += 1;
        push_digits(out, &mut at, sod % 3600 / 60, 2);
        out[at] = b':';
        at += 1;
        push_digits(out, &mut at, sod % 60, 2);
        if us != 0 {
            out[at] = b'.';
            at += 1;
            push_digits(out, &mut at, us as u32, 6);
        }
        let off = self.offset_secs;
        out[at] = if off < 0 { b'-' } else { b'+' };
        at += 1;
        let a = off.unsigned_abs();
        push_digits(out, &mut at, a / 3600, 2);
        out[at] = b':';
        at += 1;
        push_digits(out, &mut at, a % 3600 / 60, 2);
        if a % 60 != 0 {
            out[at] = b':';
            at += 1;
            push_digits(out, &mut at, a % 60, 2);
        }
        Some(at)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 40];
        if let Some(n) = self.write_iso(&mut buf) {
            // Only ASCII digits and separators were written.
            return f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?);
        }
        let Some(dt) = self.to_chrono() else {
            return write!(f, "<{}µs out of range>", self.micros);
        };
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            dt.year(),
            dt.month(),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second()
        )?;
        let us = dt.nanosecond() / 1000;
        if us != 0 {
            write!(f, ".{us:06}")?;
        }
        let off = self.offset_secs;
        let sign = if off < 0 { '-' } else { '+' };
        let a = off.unsigned_abs();
        write!(f, "{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60)?;
        if a % 60 != 0 {
            write!(f, ":{:02}", a % 60)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

/// An inclusive time range `[start, end]`, compared by instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeRange {
    /// First instant included.
    pub start: Timestamp,
    /// Last instant included.
    pub end: Timestamp,
}

impl TimeRange {
    /// The range `[start, end]`.
    #[must_use]
    pub fn new(start: Timestamp, end: Timestamp) -> Self {
        Self { start, end }
    }

    /// Every representable instant.
    #[must_use]
    pub fn all() -> Self {
        Self::new(Timestamp::MIN, Timestamp::MAX)
    }

    /// Whether `t` lies in the range (by [`TimeKey`]).
    #[must_use]
    pub fn contains(&self, t: &Timestamp) -> bool {
        self.contains_key(t.key())
    }

    /// Whether a key lies in the range.
    #[must_use]
    pub fn contains_key(&self, k: TimeKey) -> bool {
        self.start.key() <= k && k <= self.end.key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The fixed-position reader agrees with the general one on every
        /// text of the stored shape, in range or not (months, days, leap
        /// years, hours, offsets, non-digits): whatever it accepts the
        /// general reader reads to the same instant and offset, and every
        /// valid one it accepts.
        #[test]
        fn fixed_shape_reader_agrees_with_the_general_one(
            y in 0u32..10_000, mo in 0u32..14, d in 0u32..33, h in 0u32..26, mi in 0u32..62,
            se in 0u32..62, us in 0u32..1_000_000, sign in proptest::sample::select(vec!['+', '-', 'x']),
            oh in 0u32..26, om in 0u32..62, junk in proptest::option::of(0usize..32),
        ) {
            let mut text = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{se:02}.{us:06}{sign}{oh:02}:{om:02}");
            if let Some(k) = junk {
                text.replace_range(k..k + 1, "z");
            }
            let fast = Timestamp::parse_stored(text.as_bytes());
            let general = Timestamp::parse_any(&text).ok();
            if fast.is_some() {
                proptest::prop_assert_eq!(fast.map(|t| (t.micros, t.offset_secs)), general.map(|t| (t.micros, t.offset_secs)));
            } else {
                // Refused by the fixed reader: the general one refuses it
                // too (every text here has the stored shape).
                proptest::prop_assert!(general.is_none(), "{}", text);
            }
        }
    }

    fn rt(s: &str) -> String {
        s.parse::<Timestamp>().unwrap().to_string()
    }

    #[test]
    fn isoformat_round_trips() {
        for s in [
            "2025-01-15T12:00:00.123456+00:00",
            "2025-01-15T12:00:00+00:00",
            "2025-01-15T12:00:00.000001+02:00",
            "1969-12-31T23:59:59.999999-05:30",
            "0001-01-01T00:00:00+00:00",
            "9999-12-31T23:59:59.999999+00:00",
            "2025-01-15T12:00:00+05:45:30",
        ] {
            assert_eq!(rt(s), s);
        }
    }

    #[test]
    fn parse_variants() {
        assert_eq!(rt("2025-01-15 12:00:00Z"), "2025-01-15T12:00:00+00:00");
        assert_eq!(
            rt("2025-01-15T12:00:00.5"),
            "2025-01-15T12:00:00.500000+00:00"
        );
        assert_eq!(
            rt("2025-01-15T12:00:00.000000+00:00"),
            "2025-01-15T12:00:00+00:00"
        );
        for bad in [
            "",
            "2025-01-15",
            "2025-13-01T00:00:00",
            "2025-01-15T25:00:00",
            "2025-01-15T12:00:00.1234567",
            "2025-01-15T12:00:00+2",
            "2025-01-15T12:00:00+24:00",
            "2025-01-15T12:00:00.",
            "２025-01-15T12:00:00",
        ] {
            assert!(
                bad.parse::<Timestamp>().is_err(),
                "{bad:?} should not parse"
            );
        }
    }

    #[test]
    fn key_matches_python_timestamp() {
        let t: Timestamp = "2025-01-15T12:00:00.100001+00:00".parse().unwrap();
        assert_eq!(t.micros(), 1_736_942_400_100_001);
        assert_eq!(t.key().seconds(), 1736942400.100001);
        let shifted: Timestamp = "2025-01-15T14:00:00.100001+02:00".parse().unwrap();
        assert_eq!(shifted.key(), t.key());
        assert_eq!(shifted.micros(), t.micros());
    }

    #[test]
    fn neighbouring_micros_have_distinct_keys_in_our_era() {
        let t: Timestamp = "2200-01-01T00:00:00+00:00".parse().unwrap();
        for d in 0..1000 {
            assert!(t.add_micros(d).key() < t.add_micros(d + 1).key());
        }
    }

    #[test]
    fn range_is_inclusive() {
        let a = Timestamp::from_micros(10);
        let b = Timestamp::from_micros(20);
        let r = TimeRange::new(a, b);
        assert!(r.contains(&a) && r.contains(&b));
        assert!(!r.contains(&Timestamp::from_micros(21)));
        assert!(TimeRange::all().contains(&Timestamp::now()));
    }
}
