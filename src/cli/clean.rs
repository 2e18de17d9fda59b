//! `dlab clean`: removes run directories under `.dlab/runs/`. It looks at
//! nothing else under `.dlab/`: the node and the relay of `dlab up`
//! (`.dlab/broker`, `.dlab/relay`) are never touched. A run still in use (a
//! process has a file open in it, or its private relay runs) is kept.

use super::EXIT_OK;
use anyhow::{Context, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Removes the runs under `home/runs` last written longer than `older_than`
/// ago (`None`: every run), printing each and the space freed.
pub fn clean(home: &Path, older_than: Option<Duration>) -> Result<i32> {
    let runs = home.join("runs");
    let entries = match std::fs::read_dir(&runs) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("dlab clean: no runs in {}; nothing removed", runs.display());
            return Ok(EXIT_OK);
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", runs.display())),
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    let busy = in_use(&runs);
    let now = SystemTime::now();
    let (mut removed, mut freed, mut kept, mut failed) = (0u64, 0u64, 0u64, 0u64);
    for path in paths {
        let name = path.display();
        if path.file_name().is_some_and(|n| busy.contains(n))
            || crate::relay::Relay::attach(&path.join("relay")).is_some()
        {
            println!("kept     {name}: in use (a run in progress?)");
            kept += 1;
            continue;
        }
        let (bytes, newest) = usage(&path);
        let age = now.duration_since(newest).unwrap_or_default();
        if older_than.is_some_and(|limit| age < limit) {
            kept += 1;
            continue;
        }
        let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        let result = if is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match result {
            Ok(()) => {
                println!(
                    "removed  {name}  {}  last written {} ago",
                    size(bytes),
                    ago(age)
                );
                removed += 1;
                freed += bytes;
            }
            Err(e) => {
                eprintln!("dlab clean: cannot remove {name}: {e}");
                failed += 1;
            }
        }
    }
    println!(
        "dlab clean: removed {removed} run(s), {} freed; {kept} kept{}",
        size(freed),
        match older_than {
            Some(limit) => format!(" (newer than {} or in use)", ago(limit)),
            None => " (in use)".to_string(),
        }
    );
    Ok(if failed > 0 {
        super::EXIT_USAGE
    } else {
        EXIT_OK
    })
}

/// Bytes under `path` (not following symlinks) and the newest modification
/// time among it and everything under it.
fn usage(path: &Path) -> (u64, SystemTime) {
    let mut bytes = 0;
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        bytes += meta.len();
        if let Ok(m) = meta.modified() {
            newest = newest.max(m);
        }
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&p) {
                stack.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
            }
        }
    }
    (bytes, newest)
}

/// The names of the run directories (children of `runs`) in which some
/// process has a file open or its working directory, read from `/proc`.
fn in_use(runs: &Path) -> HashSet<std::ffi::OsString> {
    let runs = std::fs::canonicalize(runs).unwrap_or_else(|_| runs.to_path_buf());
    let mut busy = HashSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return busy;
    };
    for proc in procs.filter_map(Result::ok) {
        let dir = proc.path();
        let mut targets: Vec<PathBuf> = std::fs::read_link(dir.join("cwd")).into_iter().collect();
        if let Ok(fds) = std::fs::read_dir(dir.join("fd")) {
            targets.extend(
                fds.filter_map(Result::ok)
                    .filter_map(|fd| std::fs::read_link(fd.path()).ok()),
            );
        }
        for t in targets {
            if let Ok(rest) = t.strip_prefix(&runs) {
                if let Some(first) = rest.components().next() {
                    busy.insert(first.as_os_str().to_os_string());
                }
            }
        }
    }
    busy
}

fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

fn ago(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ages_read_as_people_write_them() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(ago(Duration::from_secs(30)), "30s");
        assert_eq!(ago(Duration::from_secs(600)), "10m");
        assert_eq!(ago(Duration::from_secs(3 * 86_400)), "3d");
    }
}
