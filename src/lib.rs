//! fdwatch: tells an operator that a Linux process is going to run out of file
//! descriptors before it does, and why.
//!
//! Data flows one way: [`sample`] reads the kernel, [`trend`] is pure math on
//! series, [`diagnose`] turns samples and trends into verdicts, [`report`] only
//! formats, and [`cmd`] holds one small driver loop per mode.

pub mod bpf;
pub mod cli;
pub mod cmd;
pub mod diagnose;
pub mod host;
pub mod input;
pub mod monitor;
pub mod report;
pub mod safe_fs;
pub mod sample;
pub mod stacks;
pub mod state;
pub mod syscalls;
pub mod trend;
pub mod workload;
