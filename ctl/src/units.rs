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
