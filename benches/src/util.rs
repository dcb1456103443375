//! Small pure helpers: the reproducible shuffle of the flows, counts with k/M suffixes (the
//! command line) and counts written back the same way (the report).

use thiserror::Error;

/// xorshift64*: a reproducible shuffle of the flows.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Fisher-Yates.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// Parse a count with an optional k/M suffix ("1k", "10M", "5000").
pub fn parse_count(s: &str) -> Result<usize, CountError> {
    let (num, mul) = match s.strip_suffix(['k', 'K']) {
        Some(n) => (n, 1_000),
        None => match s.strip_suffix('M') {
            Some(n) => (n, 1_000_000),
            None => (s, 1),
        },
    };
    num.parse::<usize>().map(|n| n * mul).map_err(|e| CountError { text: s.to_string(), source: e })
}

/// A command-line count that is not a number with an optional k/M suffix.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{text:?} is not a count: {source}")]
pub struct CountError {
    text: String,
    source: std::num::ParseIntError,
}

/// A count as the report writes it: whole millions as `10M`, whole thousands as `1k`.
pub fn fmt_n(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// A power-of-two size as the report writes it: whole multiples of 1024 as `16k`.
pub fn fmt_kibi(n: usize) -> String {
    if n >= 1024 && n.is_multiple_of(1024) {
        format!("{}k", n / 1024)
    } else {
        n.to_string()
    }
}

/// A count with thousands separated by commas (`10,000`).
pub fn fmt_thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_parse_with_suffixes() {
        assert_eq!(parse_count("1k"), Ok(1000));
        assert_eq!(parse_count("2K"), Ok(2000));
        assert_eq!(parse_count("10M"), Ok(10_000_000));
        assert_eq!(parse_count("5000"), Ok(5000));
        let e = parse_count("x").unwrap_err();
        assert!(e.to_string().starts_with("\"x\" is not a count: "), "{e}");
        assert!(parse_count("1m").is_err(), "only M means millions");
    }

    #[test]
    fn counts_format_back() {
        assert_eq!(fmt_n(1_000), "1k");
        assert_eq!(fmt_n(10_000_000), "10M");
        assert_eq!(fmt_n(1_500_000), "1500k");
        assert_eq!(fmt_n(512), "512");
        assert_eq!(fmt_n(1_001), "1001");
        assert_eq!(fmt_kibi(16_384), "16k");
        assert_eq!(fmt_kibi(65_536), "64k");
        assert_eq!(fmt_kibi(1_000), "1000");
        assert_eq!(fmt_thousands(10_000), "10,000");
        assert_eq!(fmt_thousands(1_234_567), "1,234,567");
        assert_eq!(fmt_thousands(999), "999");
        assert_eq!(fmt_thousands(0), "0");
    }

    #[test]
    fn shuffle_is_a_reproducible_permutation() {
        let mut v: Vec<u32> = (0..100).collect();
        Rng(1).shuffle(&mut v);
        let mut s = v.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_ne!(v, s);
        let mut w: Vec<u32> = (0..100).collect();
        Rng(1).shuffle(&mut w);
        assert_eq!(v, w, "same seed, same order");
    }

    #[test]
    fn xorshift_matches_hand_computed_first_value() {
        // State 1: x ^= x >> 12 -> 1; x ^= x << 25 -> 0x2000001; x ^= x >> 27 -> 0x2000001;
        // times 0x2545f4914f6cdd1d (mod 2^64).
        let want = 0x2000001u64.wrapping_mul(0x2545_f491_4f6c_dd1d);
        assert_eq!(Rng(1).next_u64(), want);
    }
}
