//! The deploy lock's record: who holds it, since when, why.

use std::path::Path;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

/// Starts the token of a lock taken with `shipit lock`.
pub const BY_HAND_TOKEN_PREFIX: &str = "by-hand:";

/// Added to a stale holder's description.
pub const STALE_NOTE: &str = "(stale: holder process is gone)";

/// What makes a lock stale, as seen from the machine asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staleness<'a> {
    /// The machine running shipit (pids are checked only for its locks).
    pub machine: &'a str,
    pub now: chrono::DateTime<chrono::Utc>,
    /// A lock older than this is stale, whoever holds it (`--lock-ttl`).
    pub ttl: Option<std::time::Duration>,
}

/// Written to `deploy_to/.shipit/lock/info` when the lock is taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    pub user: String,
    /// The machine shipit runs on.
    pub machine: String,
    pub pid: u32,
    pub time: String,
    pub stage: String,
    /// What holds it: `deploy 20261124T190102Z`, or the `-m` message.
    pub message: String,
    /// Unique per run; unlock frees the lock only when it carries this.
    pub token: String,
}

impl LockHolder {
    /// One line for messages: ``alice on build-7 (pid 4242) since <time>: <message>``.
    pub fn describe(&self) -> String {
        format!(
            "`{}` on `{}` (pid {}) since {}: {}",
            self.user, self.machine, self.pid, self.time, self.message
        )
    }

    /// Whether the lock was taken with `shipit lock` (it is meant to outlive
    /// the process that took it, so it is never stale).
    pub fn taken_by_hand(&self) -> bool {
        self.token.starts_with(BY_HAND_TOKEN_PREFIX)
    }

    /// Marks the holder as taken with `shipit lock` (see
    /// [`LockHolder::taken_by_hand`]).
    pub fn by_hand(mut self) -> Self {
        if !self.taken_by_hand() {
            self.token = format!("{BY_HAND_TOKEN_PREFIX}{}", self.token);
        }
        self
    }

    /// Why the lock is stale, if it is: the process that took it is gone
    /// (it was taken on this machine, a pid means nothing elsewhere, and
    /// `pid_alive` says it no longer runs; never for locks taken with
    /// `shipit lock`, which are meant to outlive their process), or it is
    /// older than the lock TTL (`--lock-ttl`), whoever holds it.
    pub fn stale_reason(
        &self,
        s: &Staleness<'_>,
        pid_alive: impl Fn(u32) -> bool,
    ) -> Option<String> {
        if !self.taken_by_hand() && self.machine == s.machine && !pid_alive(self.pid) {
            return Some(STALE_NOTE.to_string());
        }
        let ttl = s.ttl?;
        let taken = chrono::DateTime::parse_from_rfc3339(&self.time).ok()?;
        let age = s
            .now
            .signed_duration_since(taken.with_timezone(&chrono::Utc));
        let age = age.to_std().ok()?;
        (age > ttl).then(|| {
            format!(
                "(stale: taken {}s ago, older than the lock TTL of {}s)",
                age.as_secs(),
                ttl.as_secs()
            )
        })
    }

    /// Whether [`LockHolder::stale_reason`] finds a reason.
    pub fn is_stale(&self, s: &Staleness<'_>, pid_alive: impl Fn(u32) -> bool) -> bool {
        self.stale_reason(s, pid_alive).is_some()
    }

    /// [`LockHolder::describe`], with why it is stale when it is.
    pub fn describe_checked(&self, s: &Staleness<'_>, pid_alive: impl Fn(u32) -> bool) -> String {
        match self.stale_reason(s, pid_alive) {
            Some(why) => format!("{} {why}", self.describe()),
            None => self.describe(),
        }
    }

    /// Finds the holder record in a lock script's stderr.
    pub fn from_stderr(stderr: &str) -> Option<LockHolder> {
        stderr
            .lines()
            .find_map(|l| serde_json::from_str::<LockHolder>(l.trim()).ok())
    }
}

/// Whether a process with this pid runs on this machine. When that cannot
/// be told, says it does: a lock is never called stale without evidence.
pub fn pid_alive(pid: u32) -> bool {
    if Path::new("/proc/self").exists() {
        return Path::new(&format!("/proc/{pid}")).exists();
    }
    // `ps -p` sees every user's processes (`kill -0` fails on those it may
    // not signal).
    Command::new("ps")
        .args(["-p", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_alive_tells_running_from_gone() {
        assert!(pid_alive(std::process::id()));
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!pid_alive(pid));
    }

    fn holder() -> LockHolder {
        LockHolder {
            user: "alice".into(),
            machine: "build-7".into(),
            pid: 42,
            time: "2026-11-24T19:01:02Z".into(),
            stage: "production".into(),
            message: "deploy of `production`".into(),
            token: "build-7-42-x".into(),
        }
    }

    #[test]
    fn stale_only_when_taken_here_by_a_process_that_is_gone() {
        let h = holder();
        let dead = |_| false;
        let alive = |_| true;
        // (machine asking, pid alive?, by hand?) -> stale?
        let cases = [
            ("build-7", false, false, true),
            ("build-7", true, false, false),
            // Another machine's pid says nothing about this one's processes.
            ("laptop", false, false, false),
            // `shipit lock` locks outlive their process on purpose.
            ("build-7", false, true, false),
        ];
        for (machine, is_alive, by_hand, stale) in cases {
            let h = if by_hand {
                h.clone().by_hand()
            } else {
                h.clone()
            };
            let got = if is_alive {
                h.is_stale(&at(machine, None), alive)
            } else {
                h.is_stale(&at(machine, None), dead)
            };
            assert_eq!(got, stale, "{machine} alive={is_alive} by_hand={by_hand}");
        }
        assert!(h
            .describe_checked(&at("build-7", None), dead)
            .ends_with(": deploy of `production` (stale: holder process is gone)"));
        assert_eq!(
            h.describe_checked(&at("build-7", None), alive),
            h.describe()
        );
    }

    fn at(machine: &str, ttl: Option<u64>) -> Staleness<'_> {
        Staleness {
            machine,
            now: chrono::DateTime::parse_from_rfc3339("2026-11-24T21:01:02Z")
                .unwrap()
                .with_timezone(&chrono::Utc),
            ttl: ttl.map(std::time::Duration::from_secs),
        }
    }

    #[test]
    fn a_lock_older_than_the_ttl_is_stale_whoever_holds_it() {
        // Taken at 19:01:02, asked at 21:01:02: two hours old.
        let h = holder();
        let alive = |_| true;
        assert!(!h.is_stale(&at("laptop", None), alive));
        assert!(!h.is_stale(&at("laptop", Some(3 * 3600)), alive));
        assert!(h.is_stale(&at("laptop", Some(3600)), alive));
        assert!(h
            .clone()
            .by_hand()
            .is_stale(&at("laptop", Some(3600)), alive));
        assert!(h
            .describe_checked(&at("laptop", Some(3600)), alive)
            .ends_with("(stale: taken 7200s ago, older than the lock TTL of 3600s)"));
    }

    #[test]
    fn by_hand_marks_the_token_once() {
        let h = holder().by_hand().by_hand();
        assert_eq!(h.token, "by-hand:build-7-42-x");
        assert!(h.taken_by_hand());
        assert!(!holder().taken_by_hand());
    }

    #[test]
    fn round_trips_through_stderr() {
        let h = LockHolder {
            user: "alice".into(),
            machine: "build-7".into(),
            pid: 42,
            time: "2026-11-24T19:01:02Z".into(),
            stage: "production".into(),
            message: "deploy 20261124T190102Z".into(),
            token: "t".into(),
        };
        let stderr = format!(
            "shipit: deploy lock held\n{}\n",
            serde_json::to_string(&h).unwrap()
        );
        assert_eq!(LockHolder::from_stderr(&stderr), Some(h));
        assert_eq!(LockHolder::from_stderr("garbage"), None);
    }
}
