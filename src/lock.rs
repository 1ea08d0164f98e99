//! The deploy lock's record: who holds it, since when, why.

use serde::{Deserialize, Serialize};

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
