//! Parsers for sizes, counts and durations, and byte formatting. Pure
//! functions; every error says what was expected.

use std::time::Duration;

/// A size as given on the command line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SizeSpec {
    /// A number of bytes.
    Bytes(u64),
    /// A percentage of the memory available to the process.
    Percent(f64),
}

impl SizeSpec {
    /// Resolves a percentage against `available` bytes.
    pub fn resolve(self, available: u64) -> u64 {
        match self {
            SizeSpec::Bytes(b) => b,
            SizeSpec::Percent(p) => (available as f64 * p / 100.0) as u64,
        }
    }
}

fn split_number(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    s.split_at(end)
}

fn binary_multiplier(unit: &str) -> Option<u64> {
    let u = unit.trim().to_ascii_lowercase();
    let u = u.strip_suffix("ib").or_else(|| u.strip_suffix('b')).unwrap_or(&u);
    Some(match u {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return None,
    })
}

/// Parses `4096`, `512K`, `64m`, `2G`, `1.5GiB`, `1T` (powers of 1024) or `25%`.
pub fn parse_size(text: &str) -> Result<SizeSpec, String> {
    let s = text.trim();
    let bad = || {
        format!("invalid size '{text}': use bytes with an optional K/M/G/T suffix (512M, 1.5G) or a percentage (25%)")
    };
    if let Some(p) = s.strip_suffix('%') {
        let p: f64 = p.trim().parse().map_err(|_| bad())?;
        if !(p > 0.0 && p <= 100.0) {
            return Err(format!("invalid size '{text}': a percentage must be above 0 and at most 100"));
        }
        return Ok(SizeSpec::Percent(p));
    }
    let (num, unit) = split_number(s);
    if num.is_empty() || num.matches('.').count() > 1 {
        return Err(bad());
    }
    let mult = binary_multiplier(unit).ok_or_else(bad)?;
    let bytes = if num.contains('.') {
        let v: f64 = num.parse().map_err(|_| bad())?;
        let b = v * mult as f64;
        if !b.is_finite() || b >= u64::MAX as f64 {
            return Err(format!("invalid size '{text}': too large"));
        }
        b as u64
    } else {
        let v: u64 = num.parse().map_err(|e: std::num::ParseIntError| match e.kind() {
            std::num::IntErrorKind::PosOverflow => format!("invalid size '{text}': too large"),
            _ => bad(),
        })?;
        v.checked_mul(mult).ok_or_else(|| format!("invalid size '{text}': too large"))?
    };
    if bytes == 0 {
        return Err(format!("invalid size '{text}': must be greater than zero"));
    }
    Ok(SizeSpec::Bytes(bytes))
}

/// Parses a count with an optional `k`/`m`/`g` suffix (powers of 1024, as
/// tmpfs's `nr_inodes=`).
pub fn parse_count(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let bad = || format!("invalid count '{text}': use a whole number with an optional k/m/g suffix (100k)");
    let (num, unit) = split_number(s);
    if num.is_empty() || num.contains('.') {
        return Err(bad());
    }
    let mult = match unit.to_ascii_lowercase().as_str() {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return Err(bad()),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let n = n.checked_mul(mult).ok_or_else(|| format!("invalid count '{text}': too large"))?;
    if n == 0 {
        return Err(format!("invalid count '{text}': must be greater than zero"));
    }
    Ok(n)
}

/// Parses `1s`, `500ms`, `2m`, `0.5s` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    let bad = || format!("invalid duration '{text}': use a number with ms, s or m (500ms, 1s, 2m)");
    let (num, unit) = split_number(s);
    let v: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit.trim() {
        "" | "s" => v,
        "ms" => v / 1000.0,
        "m" | "min" => v * 60.0,
        _ => return Err(bad()),
    };
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("invalid duration '{text}': must be between 0 and 24 hours"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses an octal mode such as `1777` or `0755`.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim(), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("invalid mode '{text}': use octal permission bits such as 1777 or 0755"))
}

/// `1.5 GiB`-style formatting.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let cases = [
            ("4096", 4096),
            ("512K", 512 << 10),
            ("512k", 512 << 10),
            ("64M", 64 << 20),
            ("64MB", 64 << 20),
            ("2G", 2 << 30),
            ("1.5GiB", 3 << 29),
            ("1T", 1 << 40),
            (" 10 M ", 10 << 20),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_size(text), Ok(SizeSpec::Bytes(bytes)), "{text}");
        }
        assert_eq!(parse_size("25%"), Ok(SizeSpec::Percent(25.0)));
        assert_eq!(SizeSpec::Percent(25.0).resolve(1000), 250);
        for bad in ["", "M", "12Q", "1.2.3G", "-5M", "0", "0%", "150%", "abc", "99999999999999999999", "20000000T"] {
            assert!(parse_size(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn counts_durations_modes() {
        assert_eq!(parse_count("100k"), Ok(102_400));
        assert_eq!(parse_count("5000"), Ok(5000));
        assert_eq!(parse_count("2M"), Ok(2 << 20));
        assert!(parse_count("1.5k").is_err() && parse_count("0").is_err() && parse_count("x").is_err());
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("-1s").is_err() && parse_duration("1h").is_err());
        assert_eq!(parse_mode("1777"), Ok(0o1777));
        assert!(parse_mode("888").is_err() && parse_mode("17777").is_err());
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(10), "10 B");
    }
}
