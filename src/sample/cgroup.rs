//! Which container and which Kubernetes pod a process belongs to, read from
//! its cgroup paths (`/proc/<pid>/cgroup`).
//!
//! Container runtimes name the cgroup of a container after its id, and the
//! kubelet names a pod's cgroup after the pod's uid, so the path alone tells
//! both, with no runtime socket to ask and no privilege beyond reading a
//! world-readable file. The forms recognised (cgroup v2, and v1 hierarchies
//! with either the systemd or the cgroupfs driver):
//!
//! - `…/docker-<id>.scope`, `…/cri-containerd-<id>.scope`, `…/crio-<id>.scope`,
//!   `…/libpod-<id>.scope` (the systemd driver), and `/docker/<id>` (cgroupfs);
//! - `…/kubepods-burstable-pod<uid>.slice` (and `-besteffort-`, or no QoS
//!   class for guaranteed pods) with the uid's `-` written `_`, which are
//!   turned back; and `/kubepods/burstable/pod<uid>/<id>` (cgroupfs).
//!
//! The innermost match wins (a container nested in another reports the inner
//! one). An id must be hexadecimal (12 to 128 digits) and a uid hexadecimal
//! with dashes, so that `docker-compose.scope` or a service named
//! `crio-wipe.service` never pass for a container. This module only parses
//! and reads; the labels and JSON fields are `report`'s.

use std::io::Read;

use serde::Serialize;

use super::ProcRoot;

/// A process's container and pod; both None for a process of the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Workload {
    /// The container id, as the runtime prints it in full (64 hex digits
    /// for docker, containerd and CRI-O).
    pub container_id: Option<String>,
    /// The Kubernetes pod uid, with dashes (as `kubectl get pod -o
    /// jsonpath='{.metadata.uid}'` prints it).
    pub pod_uid: Option<String>,
}

/// The `/proc/<pid>/cgroup` read cap: a few lines of paths in practice.
const MAX_CGROUP_FILE: u64 = 64 * 1024;

/// Read and parse the cgroup paths of `pid`. A process that is gone or
/// unreadable has no container (the file is world-readable, so only a race
/// with its exit ends here).
pub fn read(root: &ProcRoot, pid: i32) -> Workload {
    let path = root.pid_dir(pid).join("cgroup");
    let mut text = String::new();
    let ok = std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CGROUP_FILE).read_to_string(&mut text))
        .is_ok();
    if ok {
        parse_file(&text)
    } else {
        Workload::default()
    }
}

/// Parse the text of `/proc/<pid>/cgroup` (`hierarchy:controllers:path` a
/// line). The cgroup v2 line (`0::`) is looked at first; on a v1 or hybrid
/// host each hierarchy has its own path, and the first that names a
/// container (or a pod) is taken.
pub fn parse_file(text: &str) -> Workload {
    // (not the unified hierarchy, path): v2 first, then v1 in file order.
    let mut paths: Vec<(bool, &str)> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (h, c, p) = (f.next()?, f.next()?, f.next()?);
            Some((!(h == "0" && c.is_empty()), p))
        })
        .collect();
    paths.sort_by_key(|(v1, _)| *v1);
    let mut w = Workload::default();
    for (_, p) in paths {
        let one = parse_path(p);
        if w.container_id.is_none() {
            w.container_id = one.container_id;
        }
        if w.pod_uid.is_none() {
            w.pod_uid = one.pod_uid;
        }
    }
    w
}

/// Parse one cgroup path.
pub fn parse_path(path: &str) -> Workload {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let mut w = Workload::default();
    for (i, comp) in comps.iter().enumerate() {
        let parent = i.checked_sub(1).map(|j| comps[j]);
        if let Some(uid) = pod_uid(comp) {
            w.pod_uid = Some(uid);
        }
        if let Some(id) = container_id(comp, parent) {
            w.container_id = Some(id);
        }
    }
    w
}

/// The scope prefixes of the runtimes' systemd driver. Conmon's own scopes
/// (`crio-conmon-<id>`, `libpod-conmon-<id>`) hold the monitor, not the
/// container: their rest is not hexadecimal, so they never match.
const SCOPE_PREFIXES: &[&str] = &["docker-", "cri-containerd-", "crio-", "libpod-"];

fn container_id(comp: &str, parent: Option<&str>) -> Option<String> {
    if let Some(scope) = comp.strip_suffix(".scope") {
        return SCOPE_PREFIXES
            .iter()
            .find_map(|p| scope.strip_prefix(p))
            .filter(|id| is_container_id(id))
            .map(str::to_string);
    }
    // cgroupfs driver: a bare id under `docker` or under a pod's cgroup.
    let parent = parent?;
    let under_runtime = parent == "docker" || pod_uid(parent).is_some();
    (under_runtime && is_container_id(comp)).then(|| comp.to_string())
}

fn pod_uid(comp: &str) -> Option<String> {
    // systemd driver: kubepods-pod<uid>.slice, kubepods-<qos>-pod<uid>.slice.
    if let Some(slice) = comp.strip_suffix(".slice") {
        let rest = slice.strip_prefix("kubepods-")?;
        let uid = ["", "burstable-", "besteffort-"]
            .iter()
            .find_map(|q| rest.strip_prefix(q)?.strip_prefix("pod"))?;
        let uid = uid.replace('_', "-");
        return is_pod_uid(&uid).then_some(uid);
    }
    // cgroupfs driver: /kubepods[/<qos>]/pod<uid>.
    let uid = comp.strip_prefix("pod")?;
    is_pod_uid(uid).then(|| uid.to_string())
}

fn is_container_id(s: &str) -> bool {
    (12..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A UUID (`8-4-4-4-12`), or the 32 hex digits the kubelet gives a static
/// pod (a hash of its manifest).
fn is_pod_uid(s: &str) -> bool {
    let hex = s.bytes().filter(u8::is_ascii_hexdigit).count();
    let dashes = s.bytes().filter(|b| *b == b'-').count();
    hex == 32 && hex + dashes == s.len() && (dashes == 0 || dashes == 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3c1a0b5f8d9e2a7c4b6d8e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d";
    const UID: &str = "9a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";

    fn uid_(u: &str) -> String {
        u.replace('-', "_")
    }

    #[test]
    fn paths_of_every_runtime_and_driver() {
        type Expect = (Option<&'static str>, Option<&'static str>);
        let none: Expect = (None, None);
        let cases: Vec<(String, Expect)> = vec![
            // cgroup v2 / systemd driver, Kubernetes with each runtime and QoS class.
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID}.scope",
                    uid_(UID)
                ),
                (Some(ID), Some(UID)),
            ),
            (
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/crio-{ID}.scope",
                    uid_(UID)
                ),
                (Some(ID), Some(UID)),
            ),
            (
                format!("/kubepods.slice/kubepods-pod{}.slice/docker-{ID}.scope", uid_(UID)),
                (Some(ID), Some(UID)),
            ),
            // The pod's cgroup itself (the pause container's parent).
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice", uid_(UID)),
                (None, Some(UID)),
            ),
            // cgroupfs driver (cgroup v1 and v2).
            (format!("/kubepods/burstable/pod{UID}/{ID}"), (Some(ID), Some(UID))),
            (format!("/kubepods/pod{UID}/{ID}"), (Some(ID), Some(UID))),
            (format!("/kubepods/besteffort/pod{UID}"), (None, Some(UID))),
            // Docker and Podman without Kubernetes.
            (format!("/system.slice/docker-{ID}.scope"), (Some(ID), None)),
            (format!("/docker/{ID}"), (Some(ID), None)),
            (format!("/machine.slice/libpod-{ID}.scope"), (Some(ID), None)),
            (format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"), (Some(ID), None)),
            // A static pod's uid: 32 hex digits, no dashes.
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0123456789abcdef0123456789abcdef.slice/cri-containerd-{ID}.scope"),
                (Some(ID), Some("0123456789abcdef0123456789abcdef")),
            ),
            // Nested: the innermost container.
            (format!("/docker/{}/docker/{ID}", "a".repeat(64)), (Some(ID), None)),
            // Look-alikes that are not containers.
            ("/".into(), none),
            ("/system.slice/docker.service".into(), none),
            ("/system.slice/docker-compose.scope".into(), none),
            ("/system.slice/crio-wipe.service".into(), none),
            (format!("/machine.slice/libpod-conmon-{ID}.scope"), none),
            (format!("/system.slice/crio-conmon-{ID}.scope"), none),
            ("/user.slice/user-1000.slice/session-3.scope".into(), none),
            ("/process_api/c23ac345d4ecfacf38cf4248b2e7e395".into(), none),
            ("/docker/short".into(), none),
            (format!("/elsewhere/{ID}"), none),
            ("/kubepods/burstable/podnot-a-uid".into(), none),
            ("/kubepods.slice/kubepods-burstable.slice".into(), none),
            (format!("/kubepods.slice/kubepods-burstable-pod{}x.slice", uid_(UID)), none),
        ];
        for (path, (id, uid)) in cases {
            let w = parse_path(&path);
            assert_eq!(
                (w.container_id.as_deref(), w.pod_uid.as_deref()),
                (id, uid),
                "{path}"
            );
        }
    }

    #[test]
    fn whole_files() {
        // cgroup v1 (hybrid): several hierarchies, one path naming the container.
        let v1 = format!(
            "12:pids:/kubepods/burstable/pod{UID}/{ID}\n4:memory:/kubepods/burstable/pod{UID}/{ID}\n1:name=systemd:/kubepods/burstable/pod{UID}/{ID}\n0::/\n"
        );
        let w = parse_file(&v1);
        assert_eq!(w.container_id.as_deref(), Some(ID));
        assert_eq!(w.pod_uid.as_deref(), Some(UID));
        // A v1 path that looks like nothing, the container in the v2 line.
        let hybrid = format!(
            "4:memory:/process_api/c23ac345d4ecfacf38cf4248b2e7e395\n0::/system.slice/docker-{ID}.scope\n"
        );
        assert_eq!(parse_file(&hybrid).container_id.as_deref(), Some(ID));
        // Pure v2, a host process.
        assert_eq!(parse_file("0::/user.slice\n"), Workload::default());
        // Garbage and empty text.
        assert_eq!(parse_file(""), Workload::default());
        assert_eq!(parse_file("no colons here\n::\n"), Workload::default());
    }

    #[test]
    fn reads_through_the_proc_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("42")).unwrap();
        std::fs::write(
            dir.path().join("42/cgroup"),
            format!("0::/system.slice/docker-{ID}.scope\n"),
        )
        .unwrap();
        let root = ProcRoot::new(dir.path());
        assert_eq!(read(&root, 42).container_id.as_deref(), Some(ID));
        assert_eq!(read(&root, 43), Workload::default());
    }
}
