//! Who a thing dlab started belongs to, as its state file records it: the
//! dlab process that started it (it goes when that process goes), or
//! `dlab up` (it stays until `dlab down`).

use super::process;
use serde::{Deserialize, Serialize};

/// The owner of a private node or relay.
///
/// A state file written before owners were recorded has none: it was `dlab
/// up`'s, or one no dlab can tell, and is taken as `Up` (kept).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Owner {
    /// `dlab up`: meant to outlive the command that started it, until
    /// `dlab down`. Never a leftover.
    #[default]
    Up,
    /// A dlab process: what it started must not outlive it.
    Process {
        /// Its pid.
        pid: u32,
        /// Its start time (clock ticks since boot, `/proc/PID/stat`), so
        /// that a reused pid is not taken for it.
        start_time: u64,
    },
}

impl Owner {
    /// This process.
    pub fn this_process() -> Owner {
        let pid = std::process::id();
        Owner::Process {
            pid,
            start_time: process::start_time(pid).unwrap_or(0),
        }
    }

    /// Whether the owner is a dlab process that no longer lives (killed,
    /// since one that ends normally removes what it started, and its
    /// records).
    pub fn is_gone(&self) -> bool {
        match *self {
            Owner::Up => false,
            Owner::Process { pid, start_time } => process::start_time(pid) != Some(start_time),
        }
    }

    /// The owner's pid (none for `dlab up`).
    pub fn pid(&self) -> Option<u32> {
        match *self {
            Owner::Up => None,
            Owner::Process { pid, .. } => Some(pid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_not_gone_and_a_reused_pid_is_not_it() {
        let me = Owner::this_process();
        assert!(!me.is_gone());
        let Owner::Process { pid, start_time } = me else {
            unreachable!()
        };
        let other = Owner::Process {
            pid,
            start_time: start_time + 1,
        };
        assert!(other.is_gone(), "the same pid, started at another time");
        assert!(!Owner::Up.is_gone());
        let json = serde_json::to_string(&me).unwrap();
        assert_eq!(serde_json::from_str::<Owner>(&json).unwrap(), me);
        assert_eq!(serde_json::to_string(&Owner::Up).unwrap(), "\"up\"");
    }
}
