//! Finding the first of a few bytes in short strings (CSV fields, syslog header tokens), where
//! `memchr`'s per-call set-up costs more than the search: eight bytes at a time with the
//! zero-byte trick, then bytewise.

#[inline(always)]
fn splat(b: u8) -> u64 {
    u64::from(b) * 0x0101_0101_0101_0101
}

/// High bit set in every byte of `x` that is zero. The lowest flagged byte is always a true
/// zero (false flags only appear above a true one), which is all `first_of` uses.
#[inline(always)]
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(0x0101_0101_0101_0101) & !x & 0x8080_8080_8080_8080
}

/// Index of the first byte at or after `from` in `hay` that equals one of `needles`.
#[inline(always)]
pub fn first_of<const N: usize>(hay: &[u8], from: usize, needles: [u8; N]) -> Option<usize> {
    let mut i = from;
    while i + 8 <= hay.len() {
        let w = u64::from_le_bytes(hay[i..i + 8].try_into().expect("8 bytes"));
        let mut m = 0;
        for n in needles {
            m |= zero_bytes(w ^ splat(n));
        }
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    while i < hay.len() {
        if needles.contains(&hay[i]) {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Same answer as a plain search, for every needle position, start and length up to 40,
    /// with bytes around that trip the zero-byte trick (0x00, 0x01, 0x80, 0xff, needle +- 1).
    #[test]
    fn matches_a_plain_search() {
        let fillers = [b'a', 0u8, 1, 0x80, 0xff, b',' - 1, b',' + 1, b'"' + 1];
        for len in 0..40 {
            for from in 0..=len {
                for &fill in &fillers {
                    for pos in 0..len {
                        for needle in [b',', b'"', b'\n'] {
                            let mut hay = vec![fill; len];
                            hay[pos] = needle;
                            if pos + 3 < len {
                                hay[pos + 3] = b'"';
                            }
                            let expect = hay[from..].iter().position(|c| [b',', b'"', b'\n'].contains(c)).map(|p| p + from);
                            assert_eq!(first_of(&hay, from, [b',', b'"', b'\n']), expect, "{hay:?} from {from}");
                        }
                    }
                    let hay = vec![fill; len];
                    let expect = hay[from..].iter().position(|c| *c == b' ').map(|p| p + from);
                    assert_eq!(first_of(&hay, from, [b' ']), expect);
                }
            }
        }
    }
}
