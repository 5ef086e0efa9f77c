//! Smoothing of noisy per-step curves (training loss): a bias-corrected exponential moving average, the same
//! smoothing TensorBoard applies, with a span that grows with the number of points.

/// The EMA span used for `n` points: about 1/30 of the run, at least 1 (no smoothing) and at most 200.
pub fn span_for(n: usize) -> usize {
    (n / 30).clamp(1, 200)
}

/// Bias-corrected EMA of `points` (x kept) with smoothing factor `1 − 1/span`; non-finite values are skipped.
pub fn ema(points: &[(f64, f64)], span: usize) -> Vec<(f64, f64)> {
    let beta = 1.0 - 1.0 / span.max(1) as f64;
    let (mut avg, mut weight) = (0.0, 0.0);
    let mut out = Vec::with_capacity(points.len());
    for &(x, y) in points {
        if !y.is_finite() {
            continue;
        }
        avg = beta * avg + (1.0 - beta) * y;
        weight = beta * weight + (1.0 - beta);
        out.push((x, avg / weight));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ema_is_bias_corrected_and_hand_checked() {
        // span 2: beta 0.5. Values 4, 0, 2:
        // avg 2, w .5 → 4; avg 1, w .75 → 1.333…; avg 1.5, w .875 → 1.714…
        let got = ema(&[(1.0, 4.0), (2.0, 0.0), (3.0, f64::NAN), (4.0, 2.0)], 2);
        let want = [(1.0, 4.0), (2.0, 4.0 / 3.0), (4.0, 1.5 / 0.875)];
        assert_eq!(got.len(), 3);
        for (g, w) in got.iter().zip(want) {
            assert_eq!(g.0, w.0);
            assert!((g.1 - w.1).abs() < 1e-12, "{g:?} vs {w:?}");
        }
        assert_eq!(ema(&[(0.0, 3.0), (1.0, 5.0)], 1), [(0.0, 3.0), (1.0, 5.0)]);
        assert_eq!(span_for(10), 1);
        assert_eq!(span_for(3000), 100);
    }
}
