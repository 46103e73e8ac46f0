//! JSON Lines: one object per sample, the schema of docs/json-schema.md.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Change, Rates, View};
use crate::diagnose::Verdict;
use crate::sample::{FdKind, Sample};

/// One line of `--json` output and of a `--record` file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    #[serde(flatten)]
    pub sample: Sample,
    #[serde(default)]
    pub change: Option<Change>,
    #[serde(default)]
    pub kind_changes: BTreeMap<FdKind, Change>,
    #[serde(default)]
    pub rates: Option<Rates>,
    #[serde(default)]
    pub verdict: Option<Verdict>,
    /// `--stacks`: the top leak and churn sites (absent without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stacks: Option<super::stacks::Brief>,
}

impl Record {
    pub fn from_view(view: &View) -> Record {
        Record {
            sample: view.sample.clone(),
            change: Some(view.total_change()),
            kind_changes: view.kind_changes(),
            rates: Some(view.rates()),
            verdict: Some(view.verdict.clone()),
            stacks: view.stacks.map(super::stacks::brief),
        }
    }
}

/// One JSON object, no trailing newline.
pub fn line(view: &View) -> String {
    serde_json::to_string(&Record::from_view(view))
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
