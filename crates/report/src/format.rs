//! Number formatting for tables and headers: caption scores ×100, parameter counts, bytes, durations.

/// Placeholder for a missing value.
pub const MISSING: &str = "—";

/// The captioning convention: scores ×100 with two decimals (BLEU-4 0.4531 → "45.31", CIDEr 2.5312 → "253.12").
pub fn score(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{:.2}", v * 100.0),
        Some(_) => "NaN".to_string(),
        None => MISSING.to_string(),
    }
}

/// Signed difference of two scores in points ×100 ("+12.50", "−3.10").
pub fn score_delta(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if a.is_finite() && b.is_finite() => {
            let d = (a - b) * 100.0;
            if d < 0.0 {
                format!("−{:.2}", -d)
            } else {
                format!("+{d:.2}")
            }
        }
        _ => MISSING.to_string(),
    }
}

/// A fraction as a percentage with one decimal ("0.875" → "87.5 %").
pub fn percent(fraction: Option<f64>) -> String {
    match fraction {
        Some(f) if f.is_finite() => format!("{:.1} %", f * 100.0),
        _ => MISSING.to_string(),
    }
}

/// A share that may be tiny (LoRA trains 0.03 % of a model): three significant digits.
pub fn share(part: u64, total: u64) -> String {
    if total == 0 {
        return MISSING.to_string();
    }
    let p = part as f64 / total as f64 * 100.0;
    format!("{} %", significant(p, 3))
}

/// A count with a unit suffix: 2_923_466_480 → "2.92 B", 1_234 → "1.23 k", 999 → "999".
pub fn count(n: u64) -> String {
    let units = [(1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")];
    for (scale, unit) in units {
        if n as f64 >= scale {
            return format!("{} {unit}", significant(n as f64 / scale, 3));
        }
    }
    n.to_string()
}

/// A count with thousands separators: 1234567 → "1,234,567".
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in binary units: 1.5 × 2^30 → "1.50 GiB".
pub fn bytes(b: f64) -> String {
    if !b.is_finite() {
        return MISSING.to_string();
    }
    let units = [(1u64 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (scale, unit) in units {
        if b.abs() >= scale as f64 {
            return format!("{:.2} {unit}", b / scale as f64);
        }
    }
    format!("{b:.0} B")
}

/// A duration: "42.0 s", "12 min 05 s", "3 h 07 min".
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return MISSING.to_string();
    }
    if seconds < 60.0 {
        return format!("{seconds:.1} s");
    }
    let total = seconds.round() as u64;
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    if h == 0 {
        format!("{m} min {s:02} s")
    } else {
        format!("{h} h {m:02} min")
    }
}

/// A general number with `digits` significant digits, in scientific notation when very small or large
/// (learning rates, losses, gradient norms).
pub fn significant(x: f64, digits: usize) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    if x == 0.0 {
        return "0".to_string();
    }
    let magnitude = x.abs().log10().floor() as i32;
    if !(-3..6).contains(&magnitude) {
        return format!("{:.*e}", digits.saturating_sub(1), x);
    }
    let decimals = (digits as i32 - 1 - magnitude).max(0) as usize;
    format!("{x:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_follow_the_x100_convention() {
        assert_eq!(score(Some(0.45312)), "45.31");
        assert_eq!(score(Some(2.53125)), "253.12");
        assert_eq!(score(Some(0.0)), "0.00");
        assert_eq!(score(None), "—");
        assert_eq!(score(Some(f64::NAN)), "NaN");
        assert_eq!(score_delta(Some(0.5), Some(0.375)), "+12.50");
        assert_eq!(score_delta(Some(0.25), Some(0.5)), "−25.00");
        assert_eq!(score_delta(None, Some(0.5)), "—");
    }

    #[test]
    fn counts_bytes_durations() {
        assert_eq!(count(2_923_466_480), "2.92 B");
        assert_eq!(count(20_480), "20.5 k");
        assert_eq!(count(999), "999");
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(grouped(12), "12");
        assert_eq!(share(1_000, 2_923_466_480), "3.42e-5 %");
        assert_eq!(share(1, 4), "25.0 %");
        assert_eq!(share(1, 0), "—");
        assert_eq!(bytes(1.5 * (1u64 << 30) as f64), "1.50 GiB");
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(duration(42.04), "42.0 s");
        assert_eq!(duration(725.0), "12 min 05 s");
        assert_eq!(duration(3.0 * 3600.0 + 7.0 * 60.0 + 10.0), "3 h 07 min");
        assert_eq!(percent(Some(0.875)), "87.5 %");
    }

    #[test]
    fn significant_digits() {
        assert_eq!(significant(2.345678, 4), "2.346");
        assert_eq!(significant(0.0003, 2), "3.0e-4");
        assert_eq!(significant(0.0123, 3), "0.0123");
        assert_eq!(significant(123456.0, 3), "123456");
        assert_eq!(significant(1234567.0, 3), "1.23e6");
        assert_eq!(significant(-0.5, 2), "-0.50");
    }
}
