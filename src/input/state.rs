//! `fdwatch check --state` files: one series per process history.

use super::{InputError, RawSeries};
use crate::state::{StateFile, FORMAT, VERSION};

pub(crate) fn parse(name: &str, text: &str) -> Result<Vec<RawSeries>, InputError> {
    let wrong = |detail: String| InputError::WrongKind {
        path: name.into(),
        expected: super::Format::State.expected().into(),
        detail,
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| wrong(format!(" ({e})")))?;
    let format = value.get("format").and_then(|f| f.as_str());
    if format != Some(FORMAT) {
        return Err(wrong(match format {
            Some(f) => format!(" (format is '{f}')"),
            None => " (no \"format\" field)".into(),
        }));
    }
    let state: StateFile = serde_json::from_value(value).map_err(|e| wrong(format!(" ({e})")))?;
    if state.version != VERSION {
        return Err(wrong(format!(
            " (state version {}; this fdwatch reads {VERSION})",
            state.version
        )));
    }
    let mut out = Vec::new();
    for h in state.processes {
        // A history is one process by construction; split anyway so a
        // hand-edited file with mixed start times is still told apart.
        for mut raw in super::split_by_process(h.samples) {
            if raw.samples.first().is_some_and(|s| s.comm.is_empty()) {
                raw.name = format!("pid {} ({})", h.pid, h.comm);
            }
            out.push(raw);
        }
    }
    Ok(out)
}
