//! Median and range of repeated measurements, and the formatting the tables use.

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Summary {
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Some(Self { median, min: v[0], max: v[n - 1], n })
    }
}

/// Seconds as `1.23 s` / `45.6 ms`, with the range: `1.23 s (1.20-1.31)`.
pub fn secs_range(s: &Summary) -> String {
    let (scale, unit) = if s.median >= 1.0 { (1.0, "s") } else { (1000.0, "ms") };
    let f = |x: f64| {
        let x = x * scale;
        if x >= 100.0 {
            format!("{x:.0}")
        } else if x >= 10.0 {
            format!("{x:.1}")
        } else {
            format!("{x:.2}")
        }
    };
    format!("{} {unit} ({}-{})", f(s.median), f(s.min), f(s.max))
}

pub fn mib(bytes: f64) -> String {
    if bytes >= (10u64 << 30) as f64 {
        format!("{:.1} GiB", bytes / (1u64 << 30) as f64)
    } else {
        format!("{:.0} MiB", bytes / (1u64 << 20) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_range() {
        let s = Summary::of(&[3.0, 1.0, 2.0, f64::NAN]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(Summary::of(&[4.0, 1.0]).unwrap().median, 2.5);
        assert!(Summary::of(&[]).is_none());
        assert_eq!(
            secs_range(&Summary::of(&[0.0123, 0.0137, 0.0150]).unwrap()),
            "13.7 ms (12.3-15.0)"
        );
        assert_eq!(secs_range(&Summary::of(&[1.5, 2.5]).unwrap()), "2.00 s (1.50-2.50)");
    }
}
