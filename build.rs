//! Build facts for `fdwatch_build_info` (serve): the compiler's version
//! always, the source revision when the build is told it
//! (`FDWATCH_REVISION=$(git rev-parse HEAD) cargo build`, as scripts/dist.sh
//! and the Dockerfile may do), never guessed.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=FDWATCH_REVISION");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    if let Ok(out) = Command::new(rustc).arg("-V").output() {
        let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !v.is_empty() {
            println!("cargo:rustc-env=FDWATCH_RUSTC={v}");
        }
    }
    if let Ok(rev) = std::env::var("FDWATCH_REVISION") {
        let rev = rev.trim();
        if !rev.is_empty()
            && rev
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            println!("cargo:rustc-env=FDWATCH_REVISION={rev}");
        }
    }
}
