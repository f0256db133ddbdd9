//! Is the process that started an upload still alive? Answerable on the machine (and boot) it
//! ran on: a pid plus its start time identifies a process uniquely within one boot.

use serde::{Deserialize, Serialize};

/// Who owns a staged upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Owner {
    /// `/proc/sys/kernel/random/boot_id` of the writer's machine.
    pub(crate) boot_id: String,
    /// The writer's pid.
    pub(crate) pid: u32,
    /// Its start time, in clock ticks since boot (`/proc/<pid>/stat`, field 22).
    pub(crate) start: u64,
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_owned()).unwrap_or_default()
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields resume after its closing ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

impl Owner {
    /// This process.
    pub(crate) fn me() -> Self {
        let pid = std::process::id();
        Self { boot_id: boot_id(), pid, start: start_time(pid).unwrap_or(0) }
    }

    /// `Some(true)`: alive; `Some(false)`: certainly gone; `None`: another machine or boot,
    /// cannot tell.
    pub(crate) fn alive(&self) -> Option<bool> {
        if self.boot_id.is_empty() || self.boot_id != boot_id() {
            return None;
        }
        Some(start_time(self.pid) == Some(self.start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn me_is_alive_and_a_dead_pid_is_not() {
        let me = Owner::me();
        assert_eq!(me.alive(), Some(true));
        assert_eq!(Owner { start: me.start + 1, ..me.clone() }.alive(), Some(false));
        assert_eq!(Owner { boot_id: "elsewhere".into(), ..me }.alive(), None);
    }
}
