//! Process plumbing for the local runner: signals, liveness and identity of processes.
//!
//! Owns the one `unsafe` call of the build runner ([`signal`], a direct `kill(2)`).
//! Invariant: a pid alone never identifies a build process — liveness checks compare the
//! process start time recorded with the pid (from `/proc/<pid>/stat`) so a reused pid,
//! e.g. after a reboot, is not mistaken for a running build; zombies count as dead.
//!
//! A build process owns its whole tree: it makes itself a child subreaper
//! ([`become_subreaper`]), so whatever a build starts — even in a new session or process
//! group, even after its parent died (the agent of a killed worker) — stays its
//! descendant, and [`end_tree`] ends every descendant before the build is recorded
//! finished.

use std::io;

pub use libc::{SIGKILL, SIGTERM};

/// Send `sig` to `target` (a pid, or `-pgid` for a whole process group). Signal 0 only
/// checks that the target exists.
#[allow(unsafe_code)]
pub fn signal(target: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill(2) takes two plain integers, touches no memory of ours and has no
    // preconditions; the worst outcome is an error code, which we return.
    let rc = unsafe { libc::kill(target, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Send `sig` to the process group `pgid`; a group that no longer exists is not an error.
pub fn signal_group(pgid: i32, sig: i32) -> io::Result<()> {
    if pgid <= 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to signal process group {pgid}"),
        ));
    }
    match signal(-pgid, sig) {
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        other => other,
    }
}

/// Make this process a child subreaper (Linux): orphaned descendants are re-parented to
/// it instead of to init, so [`descendants`] still finds them.
pub fn become_subreaper() -> io::Result<()> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).map_err(io::Error::from)
}

/// The live (non-zombie) descendants of `root`, from `/proc` (empty without `/proc`).
pub fn descendants(root: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut parent_of: Vec<(i32, i32)> = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some((state, ppid)) = proc_parent(pid)
            && !matches!(state, 'Z' | 'X')
        {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|(_, ppid)| *ppid == p)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// End every descendant of `root`: SIGTERM, up to `grace` for them to exit, then SIGKILL
/// whatever is left (including processes that ignore SIGTERM or appeared meanwhile).
pub async fn end_tree(root: i32, grace: std::time::Duration) {
    let first = descendants(root);
    if first.is_empty() {
        return;
    }
    for pid in &first {
        let _ = signal(*pid, SIGTERM);
    }
    let give_up = tokio::time::Instant::now() + grace;
    while !descendants(root).is_empty() && tokio::time::Instant::now() < give_up {
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    // New descendants may appear while older ones die: sweep until none is left.
    for _ in 0..50 {
        let left = descendants(root);
        if left.is_empty() {
            return;
        }
        for pid in left {
            let _ = signal(pid, SIGKILL);
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// (state, parent pid) of `pid` from `/proc/<pid>/stat`.
fn proc_parent(pid: i32) -> Option<(char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether any process is still in group `pgid`.
pub fn group_exists(pgid: i32) -> bool {
    pgid > 1 && signal(-pgid, 0).is_ok()
}

/// The fields of `/proc/<pid>/stat` after the command name: (state, start time in clock
/// ticks since boot). `None` when the process does not exist (or there is no `/proc`).
fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid pgrp … starttime(22nd field) …"; comm may contain spaces and ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

fn have_proc() -> bool {
    std::path::Path::new("/proc/self/stat").exists()
}

/// The start time of a live process (`None` when it is gone or a zombie).
pub fn start_time(pid: i32) -> Option<u64> {
    match proc_stat(pid) {
        Some((state, start)) if !matches!(state, 'Z' | 'X') => Some(start),
        _ => None,
    }
}

/// Whether `pid` is a live (non-zombie) process and, when `started` is known, the same
/// process that was recorded (its start time matches).
pub fn is_alive(pid: i32, started: Option<u64>) -> bool {
    if pid <= 0 {
        return false;
    }
    if !have_proc() {
        return signal(pid, 0).is_ok();
    }
    match (start_time(pid), started) {
        (None, _) => false,
        (Some(now), Some(then)) => now == then,
        (Some(_), None) => true,
    }
}

/// This boot's id (Linux), so a process group recorded before a reboot is never signalled.
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_identified() {
        let me = i32::try_from(std::process::id()).unwrap();
        let started = start_time(me);
        assert!(started.is_some());
        assert!(is_alive(me, started));
        assert!(!is_alive(me, started.map(|s| s + 1)));
        assert!(!is_alive(0, None));
    }

    #[test]
    fn a_reaped_child_is_dead_and_a_zombie_is_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        // Until reaped, the exited child is a zombie: not alive.
        for _ in 0..200 {
            if !is_alive(pid, None) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!is_alive(pid, None));
        child.wait().unwrap();
        assert!(!is_alive(pid, None));
    }

    #[test]
    fn signals_reach_a_process_group() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        assert!(group_exists(pid));
        signal_group(pid, SIGKILL).unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success());
        assert!(!group_exists(pid));
        // A group that is gone is not an error; pid 1 and below are refused.
        signal_group(pid, SIGTERM).unwrap();
        assert!(signal_group(1, SIGTERM).is_err());
        assert!(boot_id().is_some());
    }
}
