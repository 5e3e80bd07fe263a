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

/// Parses an RFC 3339 / ISO 8601 timestamp at the start of `s`; returns it and the bytes
/// consumed. `None` when `s` does not start with a valid one (see [`scan_rfc3339`]).
pub fn parse_rfc3339_prefix(s: &[u8]) -> Option<(Timestamp, usize)> {
    scan_rfc3339(s).ok().flatten()
}

/// True when `s` starts with `dddd-dd-dd`: it means to be an ISO 8601 date.
fn iso_date_shaped(s: &[u8]) -> bool {
    s.len() >= 10
        && s[4] == b'-'
        && s[7] == b'-'
        && s[..4].iter().chain(&s[5..7]).chain(&s[8..10]).all(u8::is_ascii_digit)
}

/// Reads the digits of a fraction of a second starting at `i`: returns the index after them,
/// the fraction in nanoseconds (digits past the ninth are read and dropped) and how many
/// digits there were.
#[inline]
fn fraction(s: &[u8], mut i: usize) -> (usize, u32, usize) {
    let start = i;
    let mut nanos = 0u32;
    while i < s.len() && s[i].is_ascii_digit() {
        if i - start < 9 {
            nanos = nanos * 10 + (s[i] - b'0') as u32;
        }
        i += 1;
    }
    let n = i - start;
    for _ in n..9 {
        nanos *= 10;
    }
    (i, nanos, n)
}

/// An RFC 3339 / ISO 8601 date and time at the start of `s`: `YYYY-MM-DD`, `T`, `t` or a space,
/// `hh:mm:ss`, an optional fraction (`.` or `,`, any number of digits, nine kept), and an
/// optional zone (`Z`, `z`, `+hh:mm`, `+hhmm`; none means UTC, as rsyslog and Qumulo's own
/// examples write local-less times). `Ok(None)` when `s` does not start like a date at all,
/// `Err` when it does but is not a valid date and time (so a header with a broken timestamp is
/// reported as such, never read as something else).
pub fn scan_rfc3339(s: &[u8]) -> Result<Option<(Timestamp, usize)>, String> {
    if !iso_date_shaped(s) {
        return Ok(None);
    }
    let bad = |why: &str| -> Result<Option<(Timestamp, usize)>, String> {
        let end = s.iter().position(|&b| b == b' ').unwrap_or(s.len()).min(40);
        Err(format!("timestamp {:?} {why}", String::from_utf8_lossy(&s[..end])))
    };
    if s.len() < 19 || !matches!(s[10], b'T' | b't' | b' ') || s[13] != b':' || s[16] != b':' {
        return bad("is not an ISO 8601 date and time (YYYY-MM-DDThh:mm:ss)");
    }
    let (Some(h), Some(mi), Some(se)) = (num(&s[11..13]), num(&s[14..16]), num(&s[17..19])) else {
        return bad("is not an ISO 8601 date and time (YYYY-MM-DDThh:mm:ss)");
    };
    let y = num(&s[0..4]).expect("digits") as i64;
    let mo = num(&s[5..7]).expect("digits");
    let d = num(&s[8..10]).expect("digits");
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) {
        return bad("names a date that does not exist");
    }
    if h > 23 || mi > 59 || se > 60 {
        return bad("names a time that does not exist");
    }
    let mut i = 19;
    let mut nanos = 0u32;
    let mut frac_digits = 0u8;
    if matches!(s.get(i), Some(b'.' | b',')) {
        let n;
        (i, nanos, n) = fraction(s, i + 1);
        if n == 0 {
            return bad("has a fraction without digits");
        }
        frac_digits = n.min(9) as u8;
    }
    let offset_secs: i64 = match s.get(i) {
        Some(b'Z') | Some(b'z') => {
            i += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let hh = s.get(i + 1..i + 3).and_then(num);
            let (mm, used) = if s.get(i + 3) == Some(&b':') {
                (s.get(i + 4..i + 6).and_then(num), 6)
            } else {
                (s.get(i + 3..i + 5).and_then(num), 5)
            };
            match (hh, mm) {
                (Some(hh), Some(mm)) if hh <= 23 && mm <= 59 => {
                    i += used;
                    let off = (hh * 3600 + mm * 60) as i64;
                    if sign == b'+' {
                        off
                    } else {
                        -off
                    }
                }
                _ => return bad("has a zone offset that is not +hh:mm"),
            }
        }
        // No zone: UTC. What follows must end the timestamp.
        None | Some(b' ') => 0,
        Some(_) => return bad("is followed by something that is not a zone"),
    };
    if s.get(i).is_some_and(|&b| b != b' ') {
        return bad("is followed by something that is not a space");
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + (h * 3600 + mi * 60 + se.min(59)) as i64 - offset_secs;
    Ok(Some((Timestamp { secs, nanos, frac_digits }, i)))
}

const MONTHS: [&[u8; 3]; 12] =
    [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];

/// Parses a BSD (RFC 3164) timestamp at the start of `s` (see [`scan_bsd`]); `None` when there
/// is no valid one.
pub fn parse_bsd_prefix(s: &[u8], now: &Timestamp) -> Option<(Timestamp, usize)> {
    scan_bsd(s, now).ok().flatten()
}

/// The year of a day since the epoch; the last answer is kept per thread, since "now" changes
/// day once a day and every RFC 3164 line asks.
fn year_of_day(day: i64) -> i64 {
    thread_local! {
        static LAST: std::cell::Cell<(i64, i64)> = const { std::cell::Cell::new((i64::MIN, 0)) };
    }
    LAST.with(|last| {
        let (d, y) = last.get();
        if d == day {
            return y;
        }
        let y = civil_from_days(day).0;
        last.set((day, y));
        y
    })
}

/// How many years back a BSD date is looked for: Feb 29 recurs at most every 8 years.
const BSD_YEARS_BACK: i64 = 8;

/// A BSD (RFC 3164) timestamp `Mmm dd hh:mm:ss[.frac]` at the start of `s` (the day may be
/// space-padded or not). It has no year and no zone: the time is UTC and the year is the latest
/// one, up to the year of `now`, in which the date exists and lies no more than a day after
/// `now` (a December line read in January is last year's, Feb 29 read in 2027 is 2024's).
/// `Ok(None)` when `s` does not start with a month name and a space, `Err` when it does but the
/// rest is not a valid time or the date exists in no year (`Feb 30`, `Apr 31`).
pub fn scan_bsd(s: &[u8], now: &Timestamp) -> Result<Option<(Timestamp, usize)>, String> {
    let Some(mo) = s.get(..3).and_then(|m| MONTHS.iter().position(|name| name[..] == *m)) else {
        return Ok(None);
    };
    if s.get(3) != Some(&b' ') {
        return Ok(None);
    }
    let mo = mo as u32 + 1;
    let shown = || {
        let end = s.len().min(15);
        String::from_utf8_lossy(&s[..end]).into_owned()
    };
    let bad = || Err(format!("timestamp {:?} is not an RFC 3164 date and time (Mmm dd hh:mm:ss)", shown()));
    let mut i = 4;
    if s.get(i) == Some(&b' ') {
        i += 1;
    }
    let dstart = i;
    while i < s.len() && s[i].is_ascii_digit() {
        i += 1;
    }
    let Some(d) = num(&s[dstart..i]).filter(|_| i - dstart <= 2) else {
        return bad();
    };
    if s.get(i) != Some(&b' ') {
        return bad();
    }
    i += 1;
    let Some(t) = s.get(i..i + 8) else {
        return bad();
    };
    if t[2] != b':' || t[5] != b':' {
        return bad();
    }
    let (Some(h), Some(mi), Some(se)) = (num(&t[0..2]), num(&t[3..5]), num(&t[6..8])) else {
        return bad();
    };
    if h > 23 || mi > 59 || se > 60 {
        return Err(format!("timestamp {:?} names a time that does not exist", shown()));
    }
    // Day 29 of February exists in leap years only; 2000 is a leap year, so 29 is the most
    // any month ever has beyond its usual length.
    if d == 0 || d > days_in_month(2000, mo) {
        return Err(format!("timestamp {:?} names a date that exists in no year", shown()));
    }
    i += 8;
    let mut nanos = 0u32;
    let mut frac_digits = 0u8;
    if s.get(i) == Some(&b'.') && s.get(i + 1).is_some_and(u8::is_ascii_digit) {
        let n;
        (i, nanos, n) = fraction(s, i + 1);
        frac_digits = n.min(9) as u8;
    }
    if s.get(i).is_some_and(|&b| b != b' ') {
        return bad();
    }
    let now_year = year_of_day(now.secs.div_euclid(86_400));
    let sod = (h * 3600 + mi * 60 + se.min(59)) as i64;
    let at = |year: i64| (d <= days_in_month(year, mo)).then(|| days_from_civil(year, mo, d) * 86_400 + sod);
    let secs = match at(now_year) {
        // The common case: this year's date, not in the future.
        Some(secs) if secs <= now.secs + 86_400 => secs,
        _ => (1..=BSD_YEARS_BACK)
            .filter_map(|back| at(now_year - back))
            .find(|&secs| secs <= now.secs + 86_400)
            .expect("every date that exists in some year exists in one of the last eight"),
    };
    Ok(Some((Timestamp { secs, nanos, frac_digits }, i)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written formatter and parser (a measured hot path) agree with the `time` crate
    /// on random instants over years 1970 to 9999, every fraction length and zone offsets.
    #[test]
    fn rfc3339_matches_the_time_crate() {
        use ::time::format_description::well_known::Rfc3339;
        use ::time::OffsetDateTime;
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..20_000 {
            let secs = (next() % 253_402_300_800) as i64; // up to 9999-12-31T23:59:59
            let nanos = (next() % 1_000_000_000) as u32;
            let frac_digits = (round % 10) as u8;
            let kept = nanos - nanos % 10u32.pow(9 - u32::from(frac_digits));
            let ts = Timestamp { secs, nanos: kept, frac_digits };
            let mut ours = Vec::new();
            ts.write_rfc3339(&mut ours);
            let ours = String::from_utf8(ours).unwrap();
            let theirs = OffsetDateTime::from_unix_timestamp_nanos(i128::from(secs) * 1_000_000_000 + i128::from(kept)).unwrap();
            // `time` writes the shortest fraction; compare the instant it reads from ours.
            let back = OffsetDateTime::parse(&ours, &Rfc3339).unwrap_or_else(|e| panic!("{ours}: {e}"));
            assert_eq!(back, theirs, "{ours}");
            assert_eq!(ours.len(), 20 + if frac_digits > 0 { 1 + frac_digits as usize } else { 0 }, "{ours}");
            // Parsing: a zone offset and a fraction, read by both.
            let off_min = (next() % 1439) as i64 - 719;
            let local = theirs.to_offset(::time::UtcOffset::from_whole_seconds((off_min * 60) as i32).unwrap());
            let text = local.format(&Rfc3339).unwrap();
            if local.year() < 1 || local.year() > 9999 {
                continue;
            }
            let (parsed, used) = scan_rfc3339(text.as_bytes()).unwrap().unwrap_or_else(|| panic!("{text}"));
            assert_eq!(used, text.len(), "{text}");
            assert_eq!((parsed.secs, parsed.nanos), (secs, kept), "{text}");
        }
    }

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
        for bad in ["2023-13-03T14:08:51Z", "2023-02-30T14:08:51Z", "2023-03-03T14:08:51.Z", "2023-03-03T24:00:00Z", "2023-03-03T14:08", "2023-03-03T14:08:51+2", "2023-03-03T14:08:51x"] {
            assert!(parse_rfc3339_prefix(bad.as_bytes()).is_none(), "{bad}");
            assert!(scan_rfc3339(bad.as_bytes()).is_err(), "{bad}");
        }
        for not_a_date in ["not a date at all!!", "203.0.113.0,x", "", "2023", "::1,\"u\""] {
            assert_eq!(scan_rfc3339(not_a_date.as_bytes()), Ok(None), "{not_a_date}");
        }
    }

    #[test]
    fn rfc3339_without_zone_is_utc() {
        assert_eq!(ts("2019-11-08T15:31:40").to_rfc3339(), "2019-11-08T15:31:40Z");
        let (t, n) = parse_rfc3339_prefix(b"2019-11-08T15:31:40 Blog-1 qumulo").unwrap();
        assert_eq!((t.to_rfc3339().as_str(), n), ("2019-11-08T15:31:40Z", 19));
        let (t, n) = parse_rfc3339_prefix(b"2019-11-08 15:31:40.25 h").unwrap();
        assert_eq!((t.to_rfc3339().as_str(), n), ("2019-11-08T15:31:40.25Z", 22));
        assert_eq!(ts("2019-11-08T15:31:40+02:00").to_rfc3339(), "2019-11-08T13:31:40Z");
    }

    #[test]
    fn bsd_dates_of_some_years_only() {
        // Feb 29 read in a year without one belongs to the last leap year.
        let now = ts("2027-03-01T00:00:00Z");
        assert_eq!(parse_bsd_prefix(b"Feb 29 12:00:00", &now).unwrap().0.to_rfc3339(), "2024-02-29T12:00:00Z");
        let now = ts("2028-02-29T06:00:00Z");
        assert_eq!(parse_bsd_prefix(b"Feb 29 05:00:00", &now).unwrap().0.to_rfc3339(), "2028-02-29T05:00:00Z");
        // Read on Feb 28 of a leap year: tomorrow is within the day of skew allowed.
        let now = ts("2028-02-28T23:30:00Z");
        assert_eq!(parse_bsd_prefix(b"Feb 29 00:10:00", &now).unwrap().0.to_rfc3339(), "2028-02-29T00:10:00Z");
        // Read in January 2101 (2100 is not a leap year): the last Feb 29 is 2096's.
        let now = ts("2101-01-10T00:00:00Z");
        assert_eq!(parse_bsd_prefix(b"Feb 29 00:00:00", &now).unwrap().0.to_rfc3339(), "2096-02-29T00:00:00Z");
        // Dates of no year, and times that do not exist, are errors, not "no timestamp".
        for bad in ["Feb 30 00:00:00", "Apr 31 00:00:00", "Jun 0 10:00:00", "Jun 36 14:52:28", "Jun 6 25:00:00", "Jun 6 14:5:28", "Jun 6 14:52:28x", "Jun 123 1:00:00"] {
            let e = scan_bsd(bad.as_bytes(), &now).unwrap_err();
            assert!(e.contains(&bad[..6]), "{bad}: {e}");
        }
        assert_eq!(scan_bsd(b"Junk 6", &now), Ok(None));
        assert_eq!(scan_bsd(b"June 6 14:52:28", &now), Ok(None));
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
