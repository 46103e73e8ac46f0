//! The JSON of a Prometheus range query (`/api/v1/query_range`) on
//! `process_open_fds`, optionally with `process_max_fds`: one series per label
//! set, the max_fds series of the same labels (minus `__name__`) as its soft limit.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{minimal_sample, InputError, RawSeries};

/// A series' labels without `__name__`: what pairs open fds with their limit.
type Labels = BTreeMap<String, String>;

#[derive(Deserialize)]
struct Response {
    status: String,
    #[serde(default)]
    error: Option<String>,
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<Matrix>,
}

#[derive(Deserialize)]
struct Matrix {
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

fn value(s: &str) -> Option<f64> {
    // Prometheus sends values as strings, "NaN" and "+Inf" included.
    s.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0)
}

pub(crate) fn parse(name: &str, text: &str) -> Result<Vec<RawSeries>, InputError> {
    let wrong = |detail: String| InputError::WrongKind {
        path: name.into(),
        expected: super::Format::Prometheus.expected().into(),
        detail,
    };
    let resp: Response = serde_json::from_str(text).map_err(|e| wrong(format!(" ({e})")))?;
    if resp.status != "success" {
        return Err(wrong(format!(
            " (status '{}'{})",
            resp.status,
            resp.error.map(|e| format!(": {e}")).unwrap_or_default()
        )));
    }
    let data = resp.data.ok_or_else(|| wrong(" (no \"data\")".into()))?;
    if data.result_type != "matrix" {
        return Err(wrong(format!(
            " (resultType '{}': an instant query; run a range query, /api/v1/query_range)",
            data.result_type
        )));
    }
    let mut open: Vec<(Labels, Vec<(f64, String)>)> = Vec::new();
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
    let mut out = Vec::new();
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
        // No process name in a metric: its labels say which process it is.
        let comm = shown.clone();
        let pid = labels.get("pid").and_then(|p| p.parse().ok()).unwrap_or(0);
        let mut notes = Vec::new();
        if limits.is_none() {
            notes.push(
                "no process_max_fds series with these labels: no soft limit, so no forecast to it"
                    .into(),
            );
        }
        let mut skipped = 0;
        let mut samples = Vec::with_capacity(values.len());
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
                    .map(|i| l[i].1 as u64)
            });
            samples.push(minimal_sample(pid, &comm, *t, fds.round() as u64, soft));
        }
        if skipped > 0 {
            notes.push(format!("{skipped} non-numeric value(s) (NaN, Inf) skipped"));
        }
        out.push(RawSeries {
            name: shown,
            labels,
            samples,
            notes,
        });
    }
    Ok(out)
}
