//! An agent's `/metrics`, read by the benchmarks: single series, and the agent's side of a
//! write's latency from its histograms, as the difference between two scrapes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

/// The text of `GET /metrics` at `addr`.
pub fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text)
}

/// The value of `series` (a name with its labels, if any) in a scrape.
pub fn value(text: &str, series: &str) -> anyhow::Result<f64> {
    let v = text
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .ok_or_else(|| anyhow::anyhow!("{series} not served"))?;
    Ok(v.parse()?)
}

/// Every sample of counter or gauge `name` in a scrape, by the value of its label `label`.
pub fn labelled(text: &str, name: &str, label: &str) -> anyhow::Result<Vec<(String, f64)>> {
    let prefix = format!("{name}{{{label}=\"");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| {
            let (v, n) = rest
                .split_once("\"} ")
                .ok_or_else(|| anyhow::anyhow!("malformed sample of {name}: {rest:?}"))?;
            Ok((v.to_string(), n.parse()?))
        })
        .collect()
}

/// `series` at `addr` now.
pub fn metric(addr: SocketAddr, series: &str) -> anyhow::Result<f64> {
    value(&scrape(addr)?, series)
}

/// One latency histogram: cumulative counts per upper bound (seconds), sum and count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

impl Histogram {
    /// Histogram `name` (without `_bucket`) in a scrape.
    pub fn parse(text: &str, name: &str) -> anyhow::Result<Histogram> {
        let prefix = format!("{name}_bucket{{le=\"");
        let mut buckets = Vec::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(&prefix) else {
                continue;
            };
            let (le, count) = rest
                .split_once("\"} ")
                .ok_or_else(|| anyhow::anyhow!("malformed bucket line {line:?}"))?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse()?
            };
            buckets.push((le, count.parse()?));
        }
        anyhow::ensure!(!buckets.is_empty(), "{name} not served");
        Ok(Histogram {
            buckets,
            sum: value(text, &format!("{name}_sum"))?,
            count: value(text, &format!("{name}_count"))?,
        })
    }

    /// What was observed after `earlier` was scraped.
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        Histogram {
            buckets: self
                .buckets
                .iter()
                .zip(&earlier.buckets)
                .map(|((le, n), (_, m))| (*le, n - m))
                .collect(),
            sum: self.sum - earlier.sum,
            count: self.count - earlier.count,
        }
    }

    /// The mean, in milliseconds.
    pub fn mean_ms(&self) -> f64 {
        if self.count == 0.0 {
            0.0
        } else {
            self.sum / self.count * 1000.0
        }
    }

    /// The bucket bound at or under which a fraction `q` of the observations fell, in
    /// milliseconds (a bound, as coarse as the buckets).
    pub fn quantile_bound_ms(&self, q: f64) -> f64 {
        let want = self.count * q;
        self.buckets
            .iter()
            .find(|(_, n)| *n >= want)
            .map_or(f64::INFINITY, |(le, _)| le * 1000.0)
    }

    /// `mean X ms, p50 <= W ms, p99 <= Y ms, max <= Z ms (N)`.
    pub fn describe(&self) -> String {
        format!(
            "mean {:5.2} ms  p50 <= {} ms  p99 <= {} ms  max <= {} ms  ({} observations)",
            self.mean_ms(),
            self.quantile_bound_ms(0.5),
            self.quantile_bound_ms(0.99),
            self.quantile_bound_ms(1.0),
            self.count
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = "\
# TYPE x_seconds histogram
x_seconds_bucket{le=\"0.001\"} 2
x_seconds_bucket{le=\"0.005\"} 9
x_seconds_bucket{le=\"+Inf\"} 10
x_seconds_sum 0.05
x_seconds_count 10
";

    #[test]
    fn histograms_parse_and_subtract() {
        let h = Histogram::parse(SCRAPE, "x_seconds").unwrap();
        assert_eq!(h.mean_ms(), 5.0);
        assert_eq!(h.quantile_bound_ms(0.5), 5.0);
        assert_eq!(h.quantile_bound_ms(0.2), 1.0);
        assert_eq!(h.quantile_bound_ms(0.99), f64::INFINITY);
        let none = h.since(&h);
        assert_eq!((none.count, none.mean_ms()), (0.0, 0.0));
        assert!(Histogram::parse(SCRAPE, "y_seconds").is_err());
    }

    #[test]
    fn labelled_samples_parse() {
        let text = "# TYPE c counter\nc_total{op=\"a\"} 3\nc_total{op=\"b\"} 4.5\nd_total 1\n";
        assert_eq!(
            labelled(text, "c_total", "op").unwrap(),
            vec![("a".to_string(), 3.0), ("b".to_string(), 4.5)]
        );
        assert!(labelled("c_total{op=\"a\" 3", "c_total", "op").is_err());
    }
}
