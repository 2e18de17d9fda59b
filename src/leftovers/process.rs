//! OS processes as `/proc` shows them: whether one lives, when it started,
//! which process group it is in, where its working directory is; and ending
//! a set of them (SIGTERM, a short grace, SIGKILL, a bounded wait).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// The fields of `/proc/PID/stat` after the command's closing parenthesis
/// (state, ppid, pgrp, ...), or `None` when there is no such process or it
/// is a zombie (dead, only waiting to be reaped).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    if pid == 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<String> = rest.split_whitespace().map(str::to_string).collect();
    (fields.first()? != "Z").then_some(fields)
}

/// Whether `pid` is a living process (a zombie is not).
pub fn alive(pid: u32) -> bool {
    stat_fields(pid).is_some()
}

/// When a living `pid` started, in clock ticks since boot (field 22 of
/// `/proc/PID/stat`): with the pid, it names one process for good, even
/// after the pid is reused.
pub fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// The process group of a living `pid`.
fn group(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(2)?.parse().ok()
}

/// Every living process, by pid.
fn all() -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|pid| alive(*pid))
        .collect()
}

/// Whether any living process is in process group `pgid`.
pub fn group_alive(pgid: u32) -> bool {
    pgid != 0 && all().into_iter().any(|pid| group(pid) == Some(pgid))
}

/// Every living process (but this one) whose working directory is `dir` or
/// under it: the Erlang VM of a node runs in its directory, and every
/// process of a Postfix relay in its queue directory.
pub fn working_in(dir: &Path) -> Vec<u32> {
    let me = std::process::id();
    all()
        .into_iter()
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
        })
        .collect()
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: sending a signal has no memory-safety preconditions; pid 0 (this
    // process's own group) is never addressed.
    if pid != 0 {
        unsafe {
            libc::kill(pid as libc::pid_t, sig);
        }
    }
}

fn signal_group(pgid: u32, sig: libc::c_int) {
    // SAFETY: as in `signal`; a negative pid addresses the group, and pgid 0
    // or 1 (this process's group, every process) is never addressed.
    if pgid > 1 {
        unsafe {
            libc::kill(-(pgid as libc::pid_t), sig);
        }
    }
}

/// Ends `pids` and the process groups they lead: SIGTERM, up to `grace`
/// for them to go, then SIGKILL, waiting up to `deadline` more. Returns
/// whether all are gone.
pub fn end(pids: &[u32], grace: Duration, deadline: Duration) -> bool {
    let groups: BTreeSet<u32> = pids
        .iter()
        .copied()
        .filter(|pid| group(*pid) == Some(*pid))
        .collect();
    end_all(&groups, pids, grace, deadline)
}

/// Ends every process of group `pgid` (whether or not its leader still
/// lives), as [`end`] does.
pub fn end_group(pgid: u32, grace: Duration, deadline: Duration) -> bool {
    end_all(&BTreeSet::from([pgid]), &[], grace, deadline)
}

fn end_all(groups: &BTreeSet<u32>, pids: &[u32], grace: Duration, deadline: Duration) -> bool {
    if !pids.iter().any(|p| alive(*p)) && !groups.iter().any(|g| group_alive(*g)) {
        return true;
    }
    let gone = || !pids.iter().any(|p| alive(*p)) && !groups.iter().any(|g| group_alive(*g));
    for sig in [libc::SIGTERM, libc::SIGKILL] {
        for g in groups {
            signal_group(*g, sig);
        }
        for p in pids {
            signal(*p, sig);
        }
        let wait = if sig == libc::SIGTERM {
            grace
        } else {
            deadline
        };
        let started = Instant::now();
        while !gone() && started.elapsed() < wait {
            std::thread::sleep(Duration::from_millis(50));
        }
        if gone() {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_lives_has_a_start_time_and_works_where_it_is() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(start_time(me).is_some());
        assert!(group(me).is_some());
        assert!(!alive(0));
    }

    #[test]
    fn a_process_group_is_ended_and_found_by_its_directory() {
        use std::os::unix::process::CommandExt;
        let dir = std::env::temp_dir().join(format!("dlab-proc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dir = dir.canonicalize().unwrap();
        // A shell that ignores SIGTERM, with a child of its own: only SIGKILL
        // to the group ends both.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "trap '' TERM; sleep 60 & wait"])
            .current_dir(&dir)
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        while working_in(&dir).len() < 2 {
            assert!(Instant::now() < deadline, "the shell and its sleep start");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(working_in(&dir).contains(&pid));
        assert!(group_alive(pid));
        let reaper = std::thread::spawn(move || child.wait());
        assert!(end(
            &[pid],
            Duration::from_millis(200),
            Duration::from_secs(10)
        ));
        reaper.join().unwrap().unwrap();
        assert!(!group_alive(pid));
        assert!(working_in(&dir).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
