//! Who holds something (a claim, a staged upload), and whether that process is still alive.
//!
//! An [`Owner`] names a process precisely enough that another process can tell, on the same
//! machine, whether it is gone: host name, boot id, **pid namespace** (two containers on one
//! host share the boot id but not their pids), pid and process start time (a pid plus its start
//! time is unique within one boot), plus a random nonce that tells two holders in one process
//! apart. An owner on another host, boot or pid namespace cannot be checked from here: its
//! liveness is [`Liveness::Unknown`], and callers judge its records by age alone.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// A process that holds something. Fields missing from an older record read as empty, so such
/// a record is judged [`Liveness::Unknown`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// The host name (`/proc/sys/kernel/hostname`).
    #[serde(default)]
    pub host: String,
    /// `/proc/sys/kernel/random/boot_id` of the owner's machine.
    #[serde(default)]
    pub boot_id: String,
    /// The inode of `/proc/self/ns/pid`: which pid namespace `pid` is in (0: unknown).
    #[serde(default)]
    pub pid_ns: u64,
    /// The owner's pid, in its namespace.
    pub pid: u32,
    /// Its start time, in clock ticks since boot (`/proc/<pid>/stat`, field 22).
    pub start: u64,
    /// Random, fresh for each [`Owner::me`]: tells two holders in one process apart.
    #[serde(default)]
    pub nonce: String,
}

/// What can be known about an [`Owner`] from this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Same host, boot and pid namespace, and the process is running.
    Alive,
    /// Same host, boot and pid namespace, and that process is gone (or its pid was reused).
    Dead,
    /// Another host, boot or pid namespace (or a record too old to say): judge by age.
    Unknown,
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_owned()).unwrap_or_default()
}

fn host_name() -> String {
    let host = read_trimmed("/proc/sys/kernel/hostname");
    if host.is_empty() { std::env::var("HOSTNAME").unwrap_or_default() } else { host }
}

#[cfg(unix)]
fn pid_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid").map(|m| m.ino()).unwrap_or(0)
}

#[cfg(not(unix))]
fn pid_namespace() -> u64 {
    0
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields resume after its closing ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// 128 random-enough bits as hex: std's per-process random hash keys, the time and a counter.
/// Uniqueness is all that is needed (it is no secret).
fn nonce() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut words = [0u64; 2];
    for word in &mut words {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
        h.write_u32(std::process::id());
        *word = h.finish();
    }
    format!("{:016x}{:016x}", words[0], words[1])
}

impl Owner {
    /// This process, with a fresh nonce.
    pub fn me() -> Self {
        let pid = std::process::id();
        Self {
            host: host_name(),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
            pid_ns: pid_namespace(),
            pid,
            start: start_time(pid).unwrap_or(0),
            nonce: nonce(),
        }
    }

    /// Whether the owner can be checked from here and, if so, whether it is alive.
    pub fn liveness(&self) -> Liveness {
        let here = Self::me();
        let comparable = !self.boot_id.is_empty() && self.pid_ns != 0 && self.start != 0;
        if !comparable || self.host != here.host || self.boot_id != here.boot_id || self.pid_ns != here.pid_ns {
            return Liveness::Unknown;
        }
        if start_time(self.pid) == Some(self.start) { Liveness::Alive } else { Liveness::Dead }
    }

    /// [`Owner::liveness`] as `Some(alive)`, or `None` when it cannot be told.
    pub fn alive(&self) -> Option<bool> {
        match self.liveness() {
            Liveness::Alive => Some(true),
            Liveness::Dead => Some(false),
            Liveness::Unknown => None,
        }
    }

    /// The same process as `other` (ignoring the nonce).
    pub fn same_process(&self, other: &Self) -> bool {
        (&self.host, &self.boot_id, self.pid_ns, self.pid, self.start)
            == (&other.host, &other.boot_id, other.pid_ns, other.pid, other.start)
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} on {} (pid ns {})",
            self.pid,
            if self.host.is_empty() { "?" } else { &self.host },
            self.pid_ns
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn me_is_alive_and_a_dead_pid_is_not() {
        let me = Owner::me();
        assert_eq!(me.liveness(), Liveness::Alive);
        assert_eq!(Owner { start: me.start + 1, ..me.clone() }.liveness(), Liveness::Dead);
    }

    #[test]
    fn a_killed_process_is_dead() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("spawn sleep");
        let pid = child.id();
        let owner = Owner { pid, start: start_time(pid).expect("child start time"), ..Owner::me() };
        assert_eq!(owner.liveness(), Liveness::Alive);
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        assert_eq!(owner.liveness(), Liveness::Dead);
    }

    #[test]
    fn another_host_boot_or_pid_namespace_is_unknown() {
        let me = Owner::me();
        assert_eq!(Owner { host: "elsewhere".into(), ..me.clone() }.liveness(), Liveness::Unknown);
        assert_eq!(Owner { boot_id: "other-boot".into(), ..me.clone() }.liveness(), Liveness::Unknown);
        // Another container on this host: same boot id, its own pid namespace. Even a dead pid
        // there says nothing about our pids.
        assert_eq!(Owner { pid_ns: me.pid_ns + 1, start: me.start + 1, ..me.clone() }.liveness(), Liveness::Unknown);
    }

    #[test]
    fn an_old_record_without_namespace_is_unknown() {
        let old: Owner = serde_json::from_str(r#"{"boot_id":"x","pid":1,"start":5}"#).unwrap();
        assert_eq!(old.liveness(), Liveness::Unknown);
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(Owner::me().nonce, Owner::me().nonce);
        assert!(Owner::me().same_process(&Owner::me()));
    }
}
