//! Parsing sizes (`-m 64m`) and CPU counts (`--cpus 0.5`) as Docker does.

/// `512`, `64k`, `64m`, `1g` (binary units; `b` allowed) → bytes.
pub fn parse_memory(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| {
        format!("invalid size {s:?}: use a number with an optional unit b, k, m or g")
    })?;
    if !n.is_finite() || n <= 0.0 {
        return Err(format!("invalid size {s:?}: it must be positive"));
    }
    Ok((n * mult as f64) as i64)
}

/// A Go duration as Docker takes it (`30s`, `1m30s`, `200ms`, `1.5h`; `0` alone) →
/// nanoseconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let bad = || {
        format!("invalid duration {s:?}: use a number with a unit (ns, us, ms, s, m, h), e.g. 30s or 1m30s")
    };
    let t = s.trim();
    if t == "0" {
        return Ok(0);
    }
    let (neg, mut rest) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t),
    };
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += n * mult;
        rest = &rest[unit_len..];
    }
    if total > i64::MAX as f64 {
        return Err(bad());
    }
    Ok(if neg { -(total as i64) } else { total as i64 })
}

/// `0.5` → 500000000 nano-CPUs.
pub fn parse_cpus(s: &str) -> Result<i64, String> {
    let n: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid --cpus {s:?}: use a number like 1.5"))?;
    if !n.is_finite() || n <= 0.0 {
        return Err(format!("invalid --cpus {s:?}: it must be positive"));
    }
    Ok((n * 1e9).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(30_000_000_000));
        assert_eq!(parse_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_duration("200ms"), Ok(200_000_000));
        assert_eq!(parse_duration("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("-1s"), Ok(-1_000_000_000));
        for bad in ["30", "1x", "s", "", "1m3"] {
            assert!(
                parse_duration(bad)
                    .unwrap_err()
                    .contains("invalid duration"),
                "{bad}"
            );
        }
    }

    #[test]
    fn sizes_and_cpus() {
        assert_eq!(parse_memory("64m").unwrap(), 64 << 20);
        assert_eq!(parse_memory("64MB").unwrap(), 64 << 20);
        assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
        assert_eq!(parse_memory("4096").unwrap(), 4096);
        assert_eq!(parse_memory("100b").unwrap(), 100);
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("-1m").is_err());
        assert_eq!(parse_cpus("0.5").unwrap(), 500_000_000);
        assert!(parse_cpus("0").is_err());
    }
}
