//! The deploy lock's record: who holds it, since when, why.

use serde::{Deserialize, Serialize};

/// Starts the token of a lock taken with `shipit lock`.
pub const BY_HAND_TOKEN_PREFIX: &str = "by-hand:";

/// Added to a stale holder's description.
pub const STALE_NOTE: &str = "(stale: holder process is gone)";

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

    /// A lock is stale when the process that took it is gone: it was taken
    /// on `machine` (the one asking; a pid means nothing elsewhere) and
    /// `pid_alive` says its pid no longer runs. Locks taken with
    /// `shipit lock` are never stale.
    pub fn is_stale(&self, machine: &str, pid_alive: impl Fn(u32) -> bool) -> bool {
        !self.taken_by_hand() && self.machine == machine && !pid_alive(self.pid)
    }

    /// [`LockHolder::describe`], with `(stale: holder process is gone)` when
    /// [`LockHolder::is_stale`].
    pub fn describe_checked(&self, machine: &str, pid_alive: impl Fn(u32) -> bool) -> String {
        if self.is_stale(machine, pid_alive) {
            format!("{} {STALE_NOTE}", self.describe())
        } else {
            self.describe()
        }
    }

    /// Finds the holder record in a lock script's stderr.
    pub fn from_stderr(stderr: &str) -> Option<LockHolder> {
        stderr
            .lines()
            .find_map(|l| serde_json::from_str::<LockHolder>(l.trim()).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                h.is_stale(machine, alive)
            } else {
                h.is_stale(machine, dead)
            };
            assert_eq!(got, stale, "{machine} alive={is_alive} by_hand={by_hand}");
        }
        assert!(h
            .describe_checked("build-7", dead)
            .ends_with(": deploy of `production` (stale: holder process is gone)"));
        assert_eq!(h.describe_checked("build-7", alive), h.describe());
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
