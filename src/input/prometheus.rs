//! The JSON of a Prometheus range query (`/api/v1/query_range`) on
//! `process_open_fds`, optionally with `process_max_fds`: one series per label
//! set, the max_fds series of the same labels (minus `__name__`) as its soft limit.
//!
//! The answer is one JSON document, parsed whole (at most `MAX_DOCUMENT`
//! bytes) into plain (time, value) points; samples are made from them one at
//! a time as the reader is iterated.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{minimal_sample, InputError, Key, Raw, Step};

/// A series' labels without `__name__`: what pairs open fds with their limit.
type Labels = BTreeMap<String, String>;

#[derive(Deserialize)]
struct Response<'a> {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(borrow)]
    data: Option<Data<'a>>,
}

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(rename = "resultType")]
    result_type: String,
    #[serde(borrow)]
    result: Vec<Matrix<'a>>,
}

#[derive(Deserialize)]
struct Matrix<'a> {
    metric: BTreeMap<String, String>,
    // Values are short strings without escapes ("812", "NaN"): borrowed,
    // a large answer is not copied a second time.
    #[serde(default, borrow)]
    values: Vec<(f64, &'a str)>,
}

fn value(s: &str) -> Option<f64> {
    // Prometheus sends values as strings, "NaN" and "+Inf" included.
    s.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0)
}

struct OneSeries {
    name: String,
    labels: Labels,
    notes: Vec<String>,
    pid: i32,
    /// (time, open fds, soft limit then) in the answer's order.
    points: Vec<(f64, f64, Option<u64>)>,
}

pub(crate) struct Reader {
    series: Vec<OneSeries>,
    /// The series being read, and whether it was announced; the next point.
    at: usize,
    announced: bool,
    point: usize,
}

impl Reader {
    pub fn new(name: &str, bytes: &[u8]) -> Result<Reader, InputError> {
        let wrong = |detail: String| InputError::WrongKind {
            path: name.into(),
            expected: super::Format::Prometheus.expected().into(),
            detail,
        };
        let resp: Response = serde_json::from_slice(bytes).map_err(|e| wrong(format!(" ({e})")))?;
        if resp.status != "success" {
            // Prometheus's own words are the useful part of an error answer.
            return Err(InputError::Invalid {
                path: name.into(),
                detail: format!(
                    "Prometheus answered status '{}'{}{}",
                    resp.status,
                    resp.error_type
                        .map(|t| format!(" ({t})"))
                        .unwrap_or_default(),
                    resp.error.map(|e| format!(": {e}")).unwrap_or_default()
                ),
            });
        }
        let data = resp.data.ok_or_else(|| wrong(" (no \"data\")".into()))?;
        if data.result_type != "matrix" {
            return Err(wrong(format!(
                " (resultType '{}': an instant query; run a range query, /api/v1/query_range)",
                data.result_type
            )));
        }
        let mut open: Vec<(Labels, Vec<(f64, &str)>)> = Vec::new();
        let mut max: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        for m in data.result {
            let mut labels = m.metric;
            let metric = labels.remove("__name__");
            match metric.as_deref() {
                Some("process_max_fds") => {
                    let mut v: Vec<(f64, f64)> = m
                        .values
                        .iter()
                        .filter_map(|(t, s)| value(s).map(|v| (*t, v)))
                        .collect();
                    v.sort_by(|a, b| a.0.total_cmp(&b.0));
                    max.insert(labels, v);
                }
                // process_open_fds, or an expression that dropped the name.
                _ => open.push((labels, m.values)),
            }
        }
        if open.is_empty() {
            return Err(wrong(" (no process_open_fds series in the result)".into()));
        }
        if open.len() > super::MAX_SERIES {
            return Err(InputError::Invalid {
                path: name.into(),
                detail: format!(
                    "more than {} series (processes or label sets) in one input",
                    super::MAX_SERIES
                ),
            });
        }
        let mut series = Vec::with_capacity(open.len());
        for (labels, values) in open {
            let limits = max.get(&labels);
            let shown = format!(
                "{{{}}}",
                labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{v}\""))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let pid = labels.get("pid").and_then(|p| p.parse().ok()).unwrap_or(0);
            let mut notes = Vec::new();
            if limits.is_none() {
                notes.push(
                    "no process_max_fds series with these labels: no soft limit, so no forecast to it"
                        .into(),
                );
            }
            let mut skipped = 0;
            let mut points = Vec::with_capacity(values.len());
            for (t, s) in &values {
                let Some(fds) = value(s) else {
                    skipped += 1;
                    continue;
                };
                // The limit in force at t: the latest max_fds point at or before it.
                let soft = limits.and_then(|l| {
                    let i = l.partition_point(|p| p.0 <= *t);
                    i.checked_sub(1)
                        .or((!l.is_empty()).then_some(0))
                        .and_then(|i| l.get(i))
                        .map(|p| p.1 as u64)
                });
                points.push((*t, fds, soft));
            }
            if skipped > 0 {
                notes.push(format!("{skipped} non-numeric value(s) (NaN, Inf) skipped"));
            }
            series.push(OneSeries {
                name: shown,
                labels,
                notes,
                pid,
                points,
            });
        }
        Ok(Reader {
            series,
            at: 0,
            announced: false,
            point: 0,
        })
    }

    pub fn next(&mut self) -> Step {
        loop {
            let Some(s) = self.series.get_mut(self.at) else {
                return Step::Done;
            };
            if !self.announced {
                self.announced = true;
                return Step::Series(
                    self.at,
                    s.name.clone(),
                    std::mem::take(&mut s.labels),
                    std::mem::take(&mut s.notes),
                );
            }
            if let Some(&(t, fds, soft)) = s.points.get(self.point) {
                self.point += 1;
                // No process name in a metric: its labels say which process it is.
                return Step::Sample(Raw {
                    key: Key::Numbered(self.at),
                    // Saturating: a count past MAX_FDS is refused by `validate`.
                    sample: Box::new(minimal_sample(s.pid, &s.name, t, fds.round() as u64, soft)),
                    line: self.point,
                    point: true,
                });
            }
            // This series is done: free its points.
            s.points = Vec::new();
            self.at += 1;
            self.announced = false;
            self.point = 0;
        }
    }
}
