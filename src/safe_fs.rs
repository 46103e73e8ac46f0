//! Every file fdwatch writes (state, its lock, `--output`, `--record`,
//! `--report`, `--junit`, `--plot`) is opened here, so that fdwatch run as
//! root on a shared host cannot be made to create or overwrite a file it did
//! not mean to (docs/security.md states the policy).
//!
//! The directory part of a path is walked one component at a time from a
//! pinned directory fd; a symbolic link on the way is followed only when it
//! belongs to root or to the caller. The directory reached must pass
//! [`dir_policy`]. Everything after that happens relative to that directory
//! fd: the final name is opened with `O_NOFOLLOW`, temporary files get an
//! unpredictable name and `O_EXCL`, and `renameat` replaces the entry without
//! following it. An existing file written into (lock, recording) or read back
//! (state) must be a regular file with one link, owned by root or the caller.
//!
//! This module only opens, reads and writes bytes: it must not know what the
//! bytes are (no JSON, no wording of reports), and it never waits (a read of a
//! FIFO or a device is refused, not attempted).

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Symbolic links followed in the directory part of one path (the kernel's own limit).
const MAX_SYMLINKS: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum SafeFsError {
    #[error("refusing to write in {dir}: {why} (see docs/security.md)")]
    UnsafeDir { dir: String, why: String },
    #[error("refusing {path}: it is a symbolic link, and fdwatch never follows one when writing")]
    Symlink { path: String },
    #[error("refusing {path}: the symbolic link {link} on the way belongs to uid {uid}, not to root or the caller")]
    ForeignSymlink {
        path: String,
        link: String,
        uid: u32,
    },
    #[error("refusing {path}: it is {kind}, not a regular file")]
    NotRegular { path: String, kind: &'static str },
    #[error("refusing {path}: it belongs to uid {uid}, not to root or the caller (uid {me})")]
    ForeignFile { path: String, uid: u32, me: u32 },
    #[error("refusing {path}: it has {links} hard links (a link to another file?)")]
    HardLinked { path: String, links: u64 },
    #[error("refusing {path}: it is {size} bytes, over the {cap}-byte cap")]
    TooLarge { path: String, size: u64, cap: u64 },
    #[error("{path}: no file name")]
    NoName { path: String },
    /// `err` is not a `source`: the message already carries it, and a
    /// source would be printed twice by `{:#}`.
    #[error("cannot {op} {path}: {err}")]
    Io {
        op: &'static str,
        path: String,
        err: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, SafeFsError>;

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SafeFsError + 'a {
    move |err| SafeFsError::Io {
        op,
        path: path.display().to_string(),
        err,
    }
}

fn errno_io(e: nix::errno::Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// May fdwatch, running as `me`, create and replace files in a directory
/// with this `mode` and `owner`? `Err` says why not, in a few words.
///
/// A directory only its owner can write is safe when the owner is root or
/// the caller. A directory others can write is safe only when it is sticky
/// (they cannot rename or remove our entries) and owned by root or the
/// caller (so its owner cannot either): `/tmp` qualifies; a 0777 or
/// group-writable directory does not.
pub fn dir_policy(mode: u32, owner: u32, me: u32) -> std::result::Result<(), String> {
    if owner != 0 && owner != me {
        return Err(format!(
            "it belongs to uid {owner}, not to root or the caller (uid {me})"
        ));
    }
    let others_write = mode & 0o022 != 0;
    let sticky = mode & 0o1000 != 0;
    if others_write && !sticky {
        let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
            (true, true) => "group and others",
            (true, false) => "its group",
            _ => "others",
        };
        return Err(format!(
            "it is writable by {who} (mode {:04o}) and not sticky",
            mode & 0o7777
        ));
    }
    Ok(())
}

fn kind_name(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => "a directory",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFSOCK => "a socket",
        libc::S_IFLNK => "a symbolic link",
        _ => "not a regular file",
    }
}

/// A directory opened and checked once; every name in it is opened relative
/// to this fd, so swapping the path afterwards changes nothing.
pub struct SafeDir {
    fd: OwnedFd,
    path: PathBuf,
}

fn open_at(
    dir: Option<&OwnedFd>,
    name: &OsStr,
    flags: libc::c_int,
    mode: u32,
) -> std::io::Result<OwnedFd> {
    let c = CString::new(name.as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let dirfd = dir.map(|d| d.as_raw_fd()).unwrap_or(libc::AT_FDCWD);
    loop {
        // SAFETY: a valid C string and a dir fd we hold (or AT_FDCWD).
        let fd = unsafe { libc::openat(dirfd, c.as_ptr(), flags | libc::O_CLOEXEC, mode) };
        if fd >= 0 {
            // SAFETY: a fresh fd nobody else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn fstat(fd: &OwnedFd) -> std::io::Result<libc::stat> {
    nix::sys::stat::fstat(fd.as_raw_fd()).map_err(errno_io)
}

impl SafeDir {
    /// Open the directory that holds `path` and check [`dir_policy`] on it.
    /// Returns it with the final name, which is never resolved here.
    pub fn for_file(path: &Path) -> Result<(SafeDir, OsString)> {
        let name = match path.components().next_back() {
            Some(Component::Normal(n)) => n.to_os_string(),
            _ => {
                return Err(SafeFsError::NoName {
                    path: path.display().to_string(),
                })
            }
        };
        let parent = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let fd = walk_dir(parent, path)?;
        let st = fstat(&fd).map_err(io("inspect", parent))?;
        dir_policy(st.st_mode, st.st_uid, euid()).map_err(|why| SafeFsError::UnsafeDir {
            dir: parent.display().to_string(),
            why,
        })?;
        Ok((
            SafeDir {
                fd,
                path: parent.to_path_buf(),
            },
            name,
        ))
    }

    fn show(&self, name: &OsStr) -> String {
        self.path.join(name).display().to_string()
    }

    /// Open `name` for writing (creating it 0644 & umask if missing), never
    /// through a symlink, and check what was opened.
    fn open_existing_or_new(&self, name: &OsStr, flags: libc::c_int) -> Result<File> {
        let shown = self.show(name);
        let fd = open_at(
            Some(&self.fd),
            name,
            flags | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_NONBLOCK,
            0o644,
        )
        .map_err(|e| self.open_error(e, name))?;
        check_file(&fd, &shown)?;
        let f = File::from(fd);
        clear_nonblock(&f);
        Ok(f)
    }

    fn open_error(&self, e: std::io::Error, name: &OsStr) -> SafeFsError {
        let shown = self.show(name);
        // O_NOFOLLOW on a symlink: ELOOP, or EACCES with O_CREAT in a sticky
        // directory (the kernel's protected_symlinks): ask what the name is.
        let is_link = || {
            nix::sys::stat::fstatat(
                Some(self.fd.as_raw_fd()),
                name,
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK)
        };
        match e.raw_os_error() {
            Some(libc::ELOOP) => SafeFsError::Symlink { path: shown },
            Some(libc::EACCES) | Some(libc::EPERM) if is_link() => {
                SafeFsError::Symlink { path: shown }
            }
            // A FIFO with no reader opened for writing.
            Some(libc::ENXIO) => SafeFsError::NotRegular {
                path: shown,
                kind: "a FIFO",
            },
            _ => SafeFsError::Io {
                op: "open",
                path: shown,
                err: e,
            },
        }
    }

    /// Create a temporary file with an unpredictable name, exclusively.
    fn create_temp(&self, name: &OsStr) -> Result<(File, OsString)> {
        let mut last = None;
        for _ in 0..8 {
            let mut tmp = OsString::from(".");
            tmp.push(name);
            tmp.push(format!(".{}.tmp", random_hex()));
            match open_at(
                Some(&self.fd),
                &tmp,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                0o644,
            ) {
                Ok(fd) => return Ok((File::from(fd), tmp)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(self.open_error(e, &tmp)),
            }
        }
        Err(SafeFsError::Io {
            op: "create a temporary file next to",
            path: self.show(name),
            err: last.unwrap_or_else(|| std::io::Error::from_raw_os_error(libc::EEXIST)),
        })
    }

    fn rename(&self, from: &OsStr, to: &OsStr) -> std::io::Result<()> {
        nix::fcntl::renameat(
            Some(self.fd.as_raw_fd()),
            from,
            Some(self.fd.as_raw_fd()),
            to,
        )
        .map_err(errno_io)
    }

    fn unlink(&self, name: &OsStr) {
        let _ = nix::unistd::unlinkat(
            Some(self.fd.as_raw_fd()),
            name,
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
    }

    /// Flush the directory entry of a rename to disk (best effort: some
    /// file systems refuse fsync on a directory).
    fn sync(&self) {
        if let Ok(d) = open_at(
            Some(&self.fd),
            OsStr::new("."),
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
        ) {
            let _ = File::from(d).sync_all();
        }
    }
}

/// The names to open one by one to walk `path` (the root and `.` are where
/// the walk starts, not steps).
fn steps(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        _ => None,
    })
}

/// Walk `dir` one component at a time from `/` or the working directory.
fn walk_dir(dir: &Path, whole: &Path) -> Result<OwnedFd> {
    let me = euid();
    let shown = || whole.display().to_string();
    let open_root = |abs: bool| {
        open_at(
            None,
            OsStr::new(if abs { "/" } else { "." }),
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )
        .map_err(io("open", dir))
    };
    let mut cur = open_root(dir.is_absolute())?;
    let mut todo: std::collections::VecDeque<OsString> = steps(dir).collect();
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        let fd =
            open_at(Some(&cur), &c, libc::O_PATH | libc::O_NOFOLLOW, 0).map_err(io("open", dir))?;
        let st = fstat(&fd).map_err(io("inspect", dir))?;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => cur = fd,
            libc::S_IFLNK => {
                if st.st_uid != 0 && st.st_uid != me {
                    return Err(SafeFsError::ForeignSymlink {
                        path: shown(),
                        link: c.to_string_lossy().into_owned(),
                        uid: st.st_uid,
                    });
                }
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(SafeFsError::Io {
                        op: "resolve",
                        path: shown(),
                        err: std::io::Error::from_raw_os_error(libc::ELOOP),
                    });
                }
                let target = read_link(&fd).map_err(io("read the link in", dir))?;
                let target = Path::new(&target);
                if target.is_absolute() {
                    cur = open_root(true)?;
                }
                let mut parts: Vec<OsString> = steps(target).collect();
                parts.extend(todo.drain(..));
                todo = parts.into();
            }
            _ => {
                return Err(SafeFsError::Io {
                    op: "open the directory of",
                    path: shown(),
                    err: std::io::Error::from_raw_os_error(libc::ENOTDIR),
                })
            }
        }
    }
    Ok(cur)
}

fn read_link(fd: &OwnedFd) -> std::io::Result<OsString> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: an O_PATH fd of a symlink and an empty path read the link itself
    // (Linux 2.6.39+); the buffer is as long as we say.
    let n = unsafe {
        libc::readlinkat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(OsStr::from_bytes(&buf).to_os_string())
}

/// A file fdwatch writes into or reads back must be regular, singly linked
/// and owned by root or the caller.
fn check_file(fd: &OwnedFd, shown: &str) -> Result<()> {
    let st = fstat(fd).map_err(|err| SafeFsError::Io {
        op: "inspect",
        path: shown.into(),
        err,
    })?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(SafeFsError::NotRegular {
            path: shown.into(),
            kind: kind_name(st.st_mode),
        });
    }
    let me = euid();
    if st.st_uid != 0 && st.st_uid != me {
        return Err(SafeFsError::ForeignFile {
            path: shown.into(),
            uid: st.st_uid,
            me,
        });
    }
    if st.st_nlink > 1 {
        return Err(SafeFsError::HardLinked {
            path: shown.into(),
            links: st.st_nlink as u64,
        });
    }
    Ok(())
}

fn clear_nonblock(f: &File) {
    // SAFETY: fcntl flag changes on an fd we own.
    unsafe {
        let fl = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(f.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK);
        }
    }
}

/// 128 bits from the kernel's random pool (never blocks once the pool is
/// initialised at boot); the clock and pid as a last resort.
fn random_hex() -> String {
    let mut b = [0u8; 16];
    // SAFETY: the buffer is as long as we say.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), libc::GRND_NONBLOCK) };
    if n != b.len() as isize {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = (t ^ ((std::process::id() as u128) << 64)).to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Replace `path` with `bytes` atomically: a new temporary file in the same
/// directory (unpredictable name, `O_EXCL`), fsync, `renameat` over the name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let (dir, name) = SafeDir::for_file(path)?;
    dir.write_atomic(&name, bytes)
}

impl SafeDir {
    pub fn write_atomic(&self, name: &OsStr, bytes: &[u8]) -> Result<()> {
        let (mut f, tmp) = self.create_temp(name)?;
        let shown = self.show(name);
        let done = f
            .write_all(bytes)
            .and_then(|_| f.sync_all())
            .and_then(|_| self.rename(&tmp, name));
        if let Err(err) = done {
            self.unlink(&tmp);
            return Err(SafeFsError::Io {
                op: "write",
                path: shown,
                err,
            });
        }
        self.sync();
        Ok(())
    }

    /// Rename `from` to `to` inside this directory (neither is followed).
    pub fn rename_entry(&self, from: &OsStr, to: &OsStr) -> Result<()> {
        self.rename(from, to).map_err(|err| SafeFsError::Io {
            op: "rename",
            path: self.show(from),
            err,
        })
    }

    /// Open (or create) `name` for appending.
    pub fn open_append(&self, name: &OsStr) -> Result<File> {
        self.open_existing_or_new(name, libc::O_WRONLY | libc::O_APPEND)
    }

    /// Open (or create) a lock file, read-write, without truncating it.
    pub fn open_lock(&self, name: &OsStr) -> Result<File> {
        self.open_existing_or_new(name, libc::O_RDWR)
    }

    /// Read `name` whole if it exists (`None` when it does not), refusing a
    /// symlink, anything but a regular file, and more than `cap` bytes.
    pub fn read_capped(&self, name: &OsStr, cap: u64) -> Result<Option<Vec<u8>>> {
        let shown = self.show(name);
        let fd = match open_at(
            Some(&self.fd),
            name,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
            0,
        ) {
            Ok(fd) => fd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.open_error(e, name)),
        };
        check_file(&fd, &shown)?;
        read_regular(File::from(fd), &shown, cap).map(Some)
    }

    pub fn display(&self) -> String {
        self.path.display().to_string()
    }
}

/// Read a regular file, at most `cap` bytes (a file that grows while being
/// read is cut at the cap and refused too).
fn read_regular(f: File, shown: &str, cap: u64) -> Result<Vec<u8>> {
    let size = f
        .metadata()
        .map(|m| m.len())
        .map_err(|err| SafeFsError::Io {
            op: "inspect",
            path: shown.into(),
            err,
        })?;
    if size > cap {
        return Err(SafeFsError::TooLarge {
            path: shown.into(),
            size,
            cap,
        });
    }
    let mut buf = Vec::with_capacity(size as usize);
    f.take(cap + 1)
        .read_to_end(&mut buf)
        .map_err(|err| SafeFsError::Io {
            op: "read",
            path: shown.into(),
            err,
        })?;
    if buf.len() as u64 > cap {
        return Err(SafeFsError::TooLarge {
            path: shown.into(),
            size: buf.len() as u64,
            cap,
        });
    }
    Ok(buf)
}

/// Open `path` for appending (`--record`): the safe directory walk, no
/// symlink, a regular file only (a FIFO would block the watch).
pub fn open_append(path: &Path) -> Result<File> {
    let (dir, name) = SafeDir::for_file(path)?;
    dir.open_append(&name)
}

/// Read a small file someone else keeps (a pidfile): symlinks are followed
/// (reading is harmless), but only a regular file is read, and at most `cap`
/// bytes, without ever waiting (a FIFO or a device is refused at once).
pub fn read_small(path: &Path, cap: u64) -> Result<Vec<u8>> {
    let fd = open_at(
        None,
        path.as_os_str(),
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
        0,
    )
    .map_err(io("read", path))?;
    let shown = path.display().to_string();
    let st = fstat(&fd).map_err(io("inspect", path))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(SafeFsError::NotRegular {
            path: shown,
            kind: kind_name(st.st_mode),
        });
    }
    let mut buf = Vec::new();
    File::from(fd)
        .take(cap)
        .read_to_end(&mut buf)
        .map_err(io("read", path))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn directory_policy_table() {
        let me = 1000;
        // (mode, owner, allowed)
        let cases = [
            (0o040755, 0, true),      // /var/lib/fdwatch
            (0o040700, me, true),     // the caller's own directory
            (0o041777, 0, true),      // /tmp: sticky, root's
            (0o041777, me, true),     // sticky, the caller's
            (0o041777, 65534, false), // sticky but another user's: they can swap our files
            (0o040777, 0, false),     // world-writable, not sticky
            (0o040775, 0, false),     // group-writable, not sticky
            (0o040757, me, false),    // others may write
            (0o040755, 65534, false), // another user's directory
            (0o043775, 0, true),      // setgid + sticky group dir of root's
        ];
        for (mode, owner, ok) in cases {
            assert_eq!(
                dir_policy(mode, owner, me).is_ok(),
                ok,
                "mode {mode:o} owner {owner}: {:?}",
                dir_policy(mode, owner, me)
            );
        }
        let why = dir_policy(0o040777, 0, me).unwrap_err();
        assert!(
            why.contains("mode 0777") && why.contains("not sticky"),
            "{why}"
        );
    }

    #[test]
    fn atomic_write_never_follows_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let out = d.path().join("out.prom");
        std::os::unix::fs::symlink(&victim, &out).unwrap();
        // The target name is a symlink: rename replaces the link, never the victim.
        write_atomic(&out, b"new\n").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(&out).unwrap(), b"new\n");
        assert!(!std::fs::symlink_metadata(&out)
            .unwrap()
            .file_type()
            .is_symlink());
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn append_and_lock_refuse_symlinks_and_fifos() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let link = d.path().join("rec.jsonl");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let e = open_append(&link).unwrap_err();
        assert!(matches!(e, SafeFsError::Symlink { .. }), "{e}");
        let (dir, _) = SafeDir::for_file(&link).unwrap();
        let e = dir.open_lock(OsStr::new("rec.jsonl")).unwrap_err();
        assert!(matches!(e, SafeFsError::Symlink { .. }), "{e}");
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = open_append(&fifo).unwrap_err();
        assert!(e.to_string().contains("a FIFO, not a regular file"), "{e}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        // A hard link to another file is refused too.
        let hard = d.path().join("hard");
        std::fs::hard_link(&victim, &hard).unwrap();
        let e = open_append(&hard).unwrap_err();
        assert!(matches!(e, SafeFsError::HardLinked { .. }), "{e}");
    }

    #[test]
    fn world_writable_directory_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let shared = d.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = write_atomic(&shared.join("x"), b"x").unwrap_err();
        assert!(
            e.to_string()
                .contains("writable by group and others (mode 0777)"),
            "{e}"
        );
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        write_atomic(&shared.join("x"), b"x").unwrap();
    }

    #[test]
    fn reads_are_capped_and_never_wait() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("big");
        std::fs::File::create(&f).unwrap().set_len(1000).unwrap();
        let (dir, name) = SafeDir::for_file(&f).unwrap();
        assert!(matches!(
            dir.read_capped(&name, 999).unwrap_err(),
            SafeFsError::TooLarge { size: 1000, .. }
        ));
        assert_eq!(dir.read_capped(&name, 1000).unwrap().unwrap().len(), 1000);
        assert!(dir
            .read_capped(OsStr::new("missing"), 10)
            .unwrap()
            .is_none());
        assert_eq!(read_small(&f, 64).unwrap().len(), 64);
        let e = read_small(Path::new("/dev/zero"), 64).unwrap_err();
        assert!(e.to_string().contains("a character device"), "{e}");
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = read_small(&fifo, 64).unwrap_err();
        assert!(e.to_string().contains("a FIFO"), "{e}");
    }

    #[test]
    fn trusted_symlinks_in_the_directory_part_are_followed() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink("real", d.path().join("alias")).unwrap();
        write_atomic(&d.path().join("alias/../alias/out"), b"ok").unwrap();
        assert_eq!(std::fs::read(real.join("out")).unwrap(), b"ok");
    }
}
