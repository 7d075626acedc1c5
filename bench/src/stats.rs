//! Order statistics of a set of samples (milliseconds).

use serde_json::{Value, json};

/// A JSON object that keeps its keys in insertion order (the output lines).
#[derive(Clone, Debug, Default)]
pub struct Line(Vec<(String, Value)>);

impl Line {
    /// Adds a field.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        self.0.push((key.into(), value.into()));
    }
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("{")?;
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}:{v}", Value::String(k.clone()))?;
        }
        f.write_str("}")
    }
}

/// Median, tail and extremes of a set of samples. Percentiles are nearest-rank: `pXX` is the
/// smallest sample with at least XX % of the samples at or below it, so with fewer than 100
/// samples `p99` is the largest one.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Samples.
    pub n: usize,
    /// Smallest.
    pub min: f64,
    /// Median (nearest rank).
    pub p50: f64,
    /// 90th percentile (nearest rank).
    pub p90: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

/// The nearest-rank `q`-quantile (0 < q ≤ 1) of sorted samples.
pub fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty(), "no samples");
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Summary {
    /// Summarises the samples; `None` if there are none.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        Some(Summary {
            n: s.len(),
            min: s[0],
            p50: nearest_rank(&s, 0.50),
            p90: nearest_rank(&s, 0.90),
            p99: nearest_rank(&s, 0.99),
            max: s[s.len() - 1],
            mean: s.iter().sum::<f64>() / s.len() as f64,
        })
    }
}

/// Rounds to 3 decimals (microsecond resolution for milliseconds) for the JSON output.
pub fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `{prefix}_p50_ms`, `_p90_ms`, `_p99_ms`, `_min_ms`, `_max_ms`, `_mean_ms` fields (`null`
/// when there are no samples) into `obj`.
pub fn put(obj: &mut Line, prefix: &str, s: Option<&Summary>) {
    let f = |get: fn(&Summary) -> f64| s.map_or(Value::Null, |s| json!(r3(get(s))));
    obj.insert(format!("{prefix}p50_ms"), f(|s| s.p50));
    obj.insert(format!("{prefix}p90_ms"), f(|s| s.p90));
    obj.insert(format!("{prefix}p99_ms"), f(|s| s.p99));
    obj.insert(format!("{prefix}min_ms"), f(|s| s.min));
    obj.insert(format!("{prefix}max_ms"), f(|s| s.max));
    obj.insert(format!("{prefix}mean_ms"), f(|s| s.mean));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<f64> = (1..=100).map(f64::from).collect();
        let sum = Summary::of(&s).unwrap();
        assert_eq!((sum.p50, sum.p90, sum.p99), (50.0, 90.0, 99.0));
        assert_eq!((sum.min, sum.max, sum.mean), (1.0, 100.0, 50.5));
        let few = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((few.p50, few.p99), (2.0, 3.0));
        assert_eq!(Summary::of(&[7.0]).unwrap().p99, 7.0);
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn lines_keep_their_order() {
        let mut l = Line::default();
        l.insert("patients", 3);
        l.insert("a", json!(null));
        put(&mut l, "relay_", Summary::of(&[1.0, 2.0]).as_ref());
        let text = l.to_string();
        assert!(
            text.starts_with(r#"{"patients":3,"a":null,"relay_p50_ms":1.0,"#),
            "{text}"
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["relay_p99_ms"], json!(2.0));
    }
}
