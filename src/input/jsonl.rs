//! fdwatch JSON Lines: each line a sample object (`--json` output or a
//! `--record` file, docs/json-schema.md); only the sample is read, the
//! recorded verdict is ignored (it is recomputed). Read line by line, at most
//! `MAX_LINE` bytes a line.

use serde::Deserialize;

use super::{InputError, Key, LineRead, Lines, Raw, Step};
use crate::sample::{Sample, SCHEMA_VERSION};

pub(crate) struct Reader {
    lines: Lines,
    /// Non-empty lines and samples read so far.
    total: usize,
    samples: usize,
    /// A line that failed as if cut short: truncated if it is the last.
    pending: Option<(usize, String)>,
    /// Corrupt lines: how many, the first few line numbers, the first error.
    corrupt: usize,
    corrupt_lines: Vec<usize>,
    first_error: Option<String>,
    finished: bool,
    /// Warnings said at the end.
    queue: Vec<String>,
}

/// Just the schema, to name an unknown one even when the rest does not parse.
#[derive(Deserialize)]
struct SchemaOnly {
    schema: u32,
}

impl Reader {
    pub fn new(lines: Lines) -> Reader {
        Reader {
            lines,
            total: 0,
            samples: 0,
            pending: None,
            corrupt: 0,
            corrupt_lines: Vec::new(),
            first_error: None,
            finished: false,
            queue: Vec::new(),
        }
    }

    fn corrupt_line(&mut self, n: usize, e: String) {
        self.corrupt += 1;
        if self.corrupt_lines.len() < 5 {
            self.corrupt_lines.push(n);
        }
        self.first_error.get_or_insert(e);
    }

    pub fn next(&mut self, path: &str) -> Result<Step, InputError> {
        if self.finished {
            return Ok(self.queued());
        }
        loop {
            let newline = match self.lines.read().map_err(|e| self.lines.io(path, e))? {
                LineRead::Eof => return self.end(path),
                LineRead::TooLong => return Err(self.lines.too_long(path)),
                LineRead::Line { newline } => newline,
            };
            let n = self.lines.number;
            if self.lines.buf.trim_ascii().is_empty() {
                continue;
            }
            self.total += 1;
            // The line held back is followed by another: corrupt, not cut short.
            if let Some((at, e)) = self.pending.take() {
                self.corrupt_line(at, e);
            }
            let line = self.lines.buf.trim_ascii();
            let e = match serde_json::from_slice::<Box<Sample>>(line) {
                Ok(sample) => {
                    self.samples += 1;
                    return Ok(Step::Sample(Raw {
                        key: Key::Process(sample.pid, sample.start_time),
                        sample,
                        line: n,
                        point: false,
                    }));
                }
                Err(e) => e,
            };
            if let Ok(s) = serde_json::from_slice::<SchemaOnly>(line) {
                if s.schema != SCHEMA_VERSION {
                    return Err(InputError::Malformed {
                        path: path.into(),
                        line: n,
                        detail: format!(
                            "sample schema {}: this fdwatch reads schema {SCHEMA_VERSION} (docs/json-schema.md)",
                            s.schema
                        ),
                    });
                }
            }
            let object = line.starts_with(b"{");
            if object && !newline {
                // A recording cut short by a crash or a kill: the rest is good.
                return Ok(Step::Warning(format!(
                    "{path}: line {n} is truncated (the recording was cut short?); skipped it"
                )));
            }
            if object && e.is_eof() {
                self.pending = Some((n, e.to_string()));
                continue;
            }
            if self.samples == 0 && (!object || self.total == 1) {
                return Err(InputError::WrongKind {
                    path: path.into(),
                    expected: super::Format::Jsonl.expected().into(),
                    detail: format!(" (line {n}: {e})"),
                });
            }
            // Corrupt lines in the middle (a disk error, two writers
            // interleaved): skipped and said, as long as they are few.
            self.corrupt_line(n, e.to_string());
        }
    }

    fn end(&mut self, path: &str) -> Result<Step, InputError> {
        self.finished = true;
        if let (Some(e), Some(&first)) = (&self.first_error, self.corrupt_lines.first()) {
            if self.corrupt > max_corrupt(self.total) {
                return Err(InputError::Malformed {
                    path: path.into(),
                    line: first,
                    detail: format!(
                        "not an fdwatch sample: {e} ({} of {} lines are not samples)",
                        self.corrupt, self.total
                    ),
                });
            }
            let at: Vec<String> = self.corrupt_lines.iter().map(|n| n.to_string()).collect();
            let more = if self.corrupt > at.len() { ", ..." } else { "" };
            self.queue.push(format!(
                "{path}: skipped {} corrupt line(s) (line {}{more}: {e})",
                self.corrupt,
                at.join(", ")
            ));
        }
        if let Some((n, _)) = self.pending.take() {
            self.queue.push(format!(
                "{path}: line {n} is truncated (the recording was cut short?); skipped it"
            ));
        }
        Ok(self.queued())
    }

    fn queued(&mut self) -> Step {
        match self.queue.pop() {
            Some(w) => Step::Warning(w),
            None => Step::Done,
        }
    }
}

/// How many corrupt lines a recording of `total` lines may have and still be
/// read: one in ten, and at least one.
fn max_corrupt(total: usize) -> usize {
    (total / 10).max(1)
}
