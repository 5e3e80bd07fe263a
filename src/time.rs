//! Timestamps: parsing the three time shapes audit lines carry and writing RFC 3339 in UTC.
//!
//! * RFC 3339 / ISO 8601 (`2023-03-03T14:08:51.058379Z`, `...+01:00`), from RFC 5424 headers,
//!   `RSYSLOG_FileFormat` and our envelope;
//! * BSD / RFC 3164 (`Jun  6 14:52:28`), which has no year and no zone: the year is inferred (the
//!   current one, or the previous one when the date would lie more than a day in the future) and
//!   the time is taken as UTC (documented in `docs/event-schema.md`);
//! * epoch milliseconds, from CloudWatch.
//!
//! The sub-second digits the input had are kept ([`Timestamp::frac_digits`]) so an event renders
//! with the precision it arrived with. Date arithmetic uses the well-known days-from-civil
//! algorithm (H. Hinnant) so the hot path allocates nothing.

use std::time::{SystemTime, UNIX_EPOCH};

/// A point in time, UTC, with the number of fractional digits the source carried (0 to 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    pub secs: i64,
    pub nanos: u32,
    pub frac_digits: u8,
}

impl Timestamp {
    pub fn from_epoch_millis(ms: i64) -> Timestamp {
        Timestamp { secs: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) as u32) * 1_000_000, frac_digits: 3 }
    }

    pub fn now() -> Timestamp {
        let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Timestamp { secs: d.as_secs() as i64, nanos: d.subsec_nanos(), frac_digits: 6 }
    }

    /// Milliseconds since the epoch (CEF `rt`, Splunk HEC `time` use this or seconds).
    /// Saturates instead of overflowing for times the parsers never produce.
    pub fn epoch_millis(&self) -> i64 {
        self.secs.saturating_mul(1000).saturating_add((self.nanos / 1_000_000) as i64)
    }

    /// Appends RFC 3339 in UTC (`2024-06-06T14:52:28.123Z`) with the original precision.
    pub fn write_rfc3339(&self, out: &mut Vec<u8>) {
        // Audit events come many to a second: the date and time part of the last second
        // written (per thread) is reused.
        thread_local! {
            static LAST: std::cell::Cell<(i64, [u8; 19])> = const { std::cell::Cell::new((i64::MIN, [0; 19])) };
        }
        let buf = LAST.with(|last| {
            let (secs, buf) = last.get();
            if secs == self.secs {
                return buf;
            }
            let buf = self.date_time();
            last.set((self.secs, buf));
            buf
        });
        out.extend_from_slice(&buf);
        if self.frac_digits > 0 {
            let digits = self.frac_digits.min(9) as usize;
            let mut frac = [0u8; 9];
            write_digits(&mut frac, self.nanos as u64);
            out.push(b'.');
            out.extend_from_slice(&frac[..digits]);
        }
        out.push(b'Z');
    }

    /// `YYYY-MM-DDTHH:MM:SS` of `secs`.
    fn date_time(&self) -> [u8; 19] {
        let days = self.secs.div_euclid(86_400);
        let sod = self.secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let mut buf = [0u8; 19];
        write_digits(&mut buf[0..4], y.clamp(0, 9999) as u64);
        buf[4] = b'-';
        write_digits(&mut buf[5..7], m as u64);
        buf[7] = b'-';
        write_digits(&mut buf[8..10], d as u64);
        buf[10] = b'T';
        write_digits(&mut buf[11..13], (sod / 3600) as u64);
        buf[13] = b':';
        write_digits(&mut buf[14..16], (sod / 60 % 60) as u64);
        buf[16] = b':';
        write_digits(&mut buf[17..19], (sod % 60) as u64);
        buf
    }

    pub fn to_rfc3339(&self) -> String {
        let mut v = Vec::with_capacity(32);
        self.write_rfc3339(&mut v);
        String::from_utf8(v).expect("ascii")
    }
}

fn write_digits(dst: &mut [u8], mut v: u64) {
    for slot in dst.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) for days since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn num(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 9 {
        return None;
    }
    let mut v = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

/// Parses an RFC 3339 timestamp at the start of `s`; returns it and the bytes consumed.
/// Accepts `T` or a space between date and time, `Z`/`z` or `±hh:mm`/`±hhmm` offsets.
pub fn parse_rfc3339_prefix(s: &[u8]) -> Option<(Timestamp, usize)> {
    if s.len() < 20 || s[4] != b'-' || s[7] != b'-' || !(s[10] == b'T' || s[10] == b't' || s[10] == b' ') {
        return None;
    }
    if s[13] != b':' || s[16] != b':' {
        return None;
    }
    let y = num(&s[0..4])? as i64;
    let mo = num(&s[5..7])?;
    let d = num(&s[8..10])?;
    let h = num(&s[11..13])?;
    let mi = num(&s[14..16])?;
    let se = num(&s[17..19])?;
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u32;
    let mut frac_digits = 0u8;
    if s.get(i) == Some(&b'.') || s.get(i) == Some(&b',') {
        i += 1;
        let start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + (s[i] - b'0') as u32;
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        frac_digits = n.min(9) as u8;
        for _ in n..9 {
            nanos *= 10;
        }
    }
    let offset_secs: i64 = match s.get(i) {
        Some(b'Z') | Some(b'z') => {
            i += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let hh = num(s.get(i + 1..i + 3)?)? as i64;
            let (mm, used) = if s.get(i + 3) == Some(&b':') {
                (num(s.get(i + 4..i + 6)?)? as i64, 6)
            } else {
                (num(s.get(i + 3..i + 5)?)? as i64, 5)
            };
            if hh > 23 || mm > 59 {
                return None;
            }
            i += used;
            let off = hh * 3600 + mm * 60;
            if sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + (h * 3600 + mi * 60 + se.min(59)) as i64 - offset_secs;
    Some((Timestamp { secs, nanos, frac_digits }, i))
}

const MONTHS: [&[u8; 3]; 12] =
    [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];

/// Parses a BSD (RFC 3164) timestamp `Mmm dd hh:mm:ss[.frac]` at the start of `s` (the day may be
/// space-padded or not). `now` is used to infer the year. Returns it and the bytes consumed.
pub fn parse_bsd_prefix(s: &[u8], now: &Timestamp) -> Option<(Timestamp, usize)> {
    if s.len() < 14 || s[3] != b' ' {
        return None;
    }
    let mo = MONTHS.iter().position(|m| m[..] == s[..3])? as u32 + 1;
    let mut i = 4;
    if s[i] == b' ' {
        i += 1;
    }
    let dstart = i;
    while i < s.len() && s[i].is_ascii_digit() {
        i += 1;
    }
    let d = num(&s[dstart..i])?;
    if s.get(i) != Some(&b' ') {
        return None;
    }
    i += 1;
    let t = s.get(i..i + 8)?;
    if t[2] != b':' || t[5] != b':' {
        return None;
    }
    let (h, mi, se) = (num(&t[0..2])?, num(&t[3..5])?, num(&t[6..8])?);
    if d == 0 || d > 31 || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    i += 8;
    let mut nanos = 0u32;
    let mut frac_digits = 0u8;
    if s.get(i) == Some(&b'.') && s.get(i + 1).is_some_and(u8::is_ascii_digit) {
        i += 1;
        let start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + (s[i] - b'0') as u32;
            }
            i += 1;
        }
        let n = i - start;
        frac_digits = n.min(9) as u8;
        for _ in n..9 {
            nanos *= 10;
        }
    }
    let (now_year, _, _) = civil_from_days(now.secs.div_euclid(86_400));
    let sod = (h * 3600 + mi * 60 + se.min(59)) as i64;
    let at = |year: i64| -> Option<i64> {
        if d > days_in_month(year, mo) {
            return None;
        }
        Some(days_from_civil(year, mo, d) * 86_400 + sod)
    };
    // Current year unless that puts the date more than a day in the future (a December line read
    // in January); Feb 29 of a non-leap current year falls back to the previous leap year guess.
    let secs = match at(now_year) {
        Some(s) if s <= now.secs + 86_400 => s,
        _ => at(now_year - 1).or_else(|| at(now_year))?,
    };
    Some((Timestamp { secs, nanos, frac_digits }, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        parse_rfc3339_prefix(s.as_bytes()).unwrap().0
    }

    #[test]
    fn civil_roundtrip() {
        for days in [-1000_i64, 0, 1, 59, 365, 11_016, 19_000, 20_000, 100_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    /// The per-thread reuse of the last second never shows a stale date: alternating and
    /// neighbouring seconds, across days, years and the epoch.
    #[test]
    fn rfc3339_reuse_of_the_last_second_is_exact() {
        let mut secs: Vec<i64> = vec![0, 0, -1, 86_399, 86_400, 86_400, 951_782_400, 1_717_686_399, 1_717_686_400];
        secs.extend((0..2000).map(|i| 1_700_000_000 + (i * 7919 % 500) as i64 * 3599));
        for s in secs {
            let t = Timestamp { secs: s, nanos: 5, frac_digits: 9 };
            let (y, m, d) = civil_from_days(s.div_euclid(86_400));
            let sod = s.rem_euclid(86_400);
            let expect = format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000000005Z", sod / 3600, sod / 60 % 60, sod % 60);
            assert_eq!(t.to_rfc3339(), expect);
        }
    }

    #[test]
    fn rfc3339_keeps_precision() {
        assert_eq!(ts("2023-03-03T14:08:51.058379Z").to_rfc3339(), "2023-03-03T14:08:51.058379Z");
        assert_eq!(ts("2023-03-03T14:08:51Z").to_rfc3339(), "2023-03-03T14:08:51Z");
        assert_eq!(ts("2024-06-11T14:55:58.187394089Z").to_rfc3339(), "2024-06-11T14:55:58.187394089Z");
    }

    #[test]
    fn rfc3339_offsets_convert_to_utc() {
        assert_eq!(ts("2023-03-03T15:08:51.5+01:00").to_rfc3339(), "2023-03-03T14:08:51.5Z");
        assert_eq!(ts("2023-03-03T00:30:00-0100").to_rfc3339(), "2023-03-03T01:30:00Z");
        assert_eq!(ts("2023-03-03 14:08:51Z").secs, ts("2023-03-03T14:08:51Z").secs);
    }

    #[test]
    fn rfc3339_rejects_garbage() {
        for bad in ["2023-13-03T14:08:51Z", "2023-02-30T14:08:51Z", "2023-03-03T14:08:51", "2023-03-03T14:08:51.Z", "not a date at all!!"] {
            assert!(parse_rfc3339_prefix(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn bsd_year_inference() {
        let now = ts("2026-01-02T10:00:00Z");
        let (t, n) = parse_bsd_prefix(b"Dec 31 23:59:59 host", &now).unwrap();
        assert_eq!(t.to_rfc3339(), "2025-12-31T23:59:59Z");
        assert_eq!(n, 15);
        let (t, _) = parse_bsd_prefix(b"Jan  2 09:00:00", &now).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-01-02T09:00:00Z");
        // Tomorrow (clock skew) stays in the current year.
        let (t, _) = parse_bsd_prefix(b"Jan 3 09:00:00", &now).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-01-03T09:00:00Z");
        let (t, _) = parse_bsd_prefix(b"Jun 6 14:52:28.123 x", &now).unwrap();
        assert_eq!(t.to_rfc3339(), "2025-06-06T14:52:28.123Z");
        assert!(parse_bsd_prefix(b"Foo  6 14:52:28", &now).is_none());
        assert!(parse_bsd_prefix(b"Jun 36 14:52:28", &now).is_none());
    }

    #[test]
    fn epoch_millis() {
        let t = Timestamp::from_epoch_millis(1_717_679_548_000);
        assert_eq!(t.to_rfc3339(), "2024-06-06T13:12:28.000Z");
        assert_eq!(t.epoch_millis(), 1_717_679_548_000);
        assert!(Timestamp::from_epoch_millis(i64::MIN).epoch_millis() < i64::MIN + 1000);
        assert_eq!(Timestamp::from_epoch_millis(i64::MAX).epoch_millis(), i64::MAX);
    }
}
