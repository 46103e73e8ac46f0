//! `fdwatch check --state` files: one series per process history. One JSON
//! document, parsed whole (at most `MAX_DOCUMENT` bytes; fdwatch keeps its
//! own far smaller), its samples handed on one at a time.

use super::{InputError, Key, Raw, Step};
use crate::state::{ProcessHistory, StateFile, FORMAT, VERSION};

pub(crate) struct Reader {
    processes: std::vec::IntoIter<ProcessHistory>,
    current: Option<(String, std::vec::IntoIter<crate::sample::Sample>)>,
}

impl Reader {
    pub fn new(name: &str, bytes: &[u8]) -> Result<Reader, InputError> {
        let wrong = |detail: String| InputError::WrongKind {
            path: name.into(),
            expected: super::Format::State.expected().into(),
            detail,
        };
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| wrong(format!(" ({e})")))?;
        let format = value.get("format").and_then(|f| f.as_str());
        if format != Some(FORMAT) {
            return Err(wrong(match format {
                Some(f) => format!(" (format is '{f}')"),
                None => " (no \"format\" field)".into(),
            }));
        }
        if let Some(v) = value.get("version").and_then(|v| v.as_u64()) {
            if v != u64::from(VERSION) {
                return Err(InputError::Invalid {
                    path: name.into(),
                    detail: format!("state file version {v}: this fdwatch reads {VERSION}"),
                });
            }
        }
        let state: StateFile =
            serde_json::from_value(value).map_err(|e| wrong(format!(" ({e})")))?;
        Ok(Reader {
            processes: state.processes.into_iter(),
            current: None,
        })
    }

    pub fn next(&mut self) -> Step {
        loop {
            if let Some((comm, samples)) = &mut self.current {
                if let Some(mut sample) = samples.next() {
                    if sample.comm.is_empty() {
                        sample.comm = comm.clone();
                    }
                    // A history is one process by construction; the key
                    // still tells a hand-edited file's mixed start times apart.
                    return Step::Sample(Raw {
                        key: Key::Process(sample.pid, sample.start_time),
                        sample: Box::new(sample),
                        line: 0,
                        point: true,
                    });
                }
            }
            let Some(h) = self.processes.next() else {
                return Step::Done;
            };
            self.current = Some((h.comm, h.samples.into_iter()));
        }
    }
}
