//! The deploy lock's record: who holds it, since when, why.

use serde::{Deserialize, Serialize};

use crate::process::{ProcessIdentity, Seen};

/// Starts the token of a lock taken with `shipit lock`.
pub const BY_HAND_TOKEN_PREFIX: &str = "by-hand:";

/// Added to a stale holder's description.
pub const STALE_NOTE: &str = "(stale: holder process is gone)";

/// What makes a lock stale, as seen from the machine asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staleness<'a> {
    /// The machine running shipit.
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
    /// The holding process: boot id, pid namespace and start time, which
    /// with `pid` tell whether it still runs. Locks taken by shipit
    /// before it recorded this have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Box<ProcessIdentity>>,
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
    /// (`seen` says so, which only a machine of the same boot and pid
    /// namespace can: see [`crate::process`]; never for locks taken with
    /// `shipit lock`, which are meant to outlive their process, nor for
    /// records without a process identity, whose pid could belong to any
    /// machine of that name), or it is older than the lock TTL
    /// (`--lock-ttl`), whoever holds it.
    pub fn stale_reason(
        &self,
        s: &Staleness<'_>,
        seen: impl Fn(&LockHolder) -> Seen,
    ) -> Option<String> {
        if !self.taken_by_hand() && seen(self) == Seen::Gone {
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
    pub fn is_stale(&self, s: &Staleness<'_>, seen: impl Fn(&LockHolder) -> Seen) -> bool {
        self.stale_reason(s, seen).is_some()
    }

    /// [`LockHolder::describe`], with why it is stale when it is.
    pub fn describe_checked(
        &self,
        s: &Staleness<'_>,
        seen: impl Fn(&LockHolder) -> Seen,
    ) -> String {
        match self.stale_reason(s, seen) {
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

/// Whether the process holding `holder` still runs, as this machine sees
/// it (see [`crate::process`]): unknown for records without a process
/// identity.
pub fn holder_seen(holder: &LockHolder) -> Seen {
    match &holder.process {
        Some(p) => p.seen_here(holder.pid),
        None => Seen::Unknown,
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
            process: Some(Box::new(ProcessIdentity {
                boot_id: "boot-1".into(),
                pid_ns: "pid:[1]".into(),
                start_time: 500,
            })),
        }
    }

    #[test]
    fn stale_only_when_this_machine_can_tell_its_process_is_gone() {
        let h = holder();
        // (what this machine sees, by hand?) -> stale?
        let cases = [
            (Seen::Gone, false, true),
            (Seen::Running, false, false),
            // Another machine, container or boot: its pid says nothing here.
            (Seen::Unknown, false, false),
            // `shipit lock` locks outlive their process on purpose.
            (Seen::Gone, true, false),
        ];
        for (seen, by_hand, stale) in cases {
            let h = if by_hand {
                h.clone().by_hand()
            } else {
                h.clone()
            };
            assert_eq!(
                h.is_stale(&at("build-7", None), |_| seen),
                stale,
                "{seen:?} by_hand={by_hand}"
            );
        }
        assert!(h
            .describe_checked(&at("build-7", None), |_| Seen::Gone)
            .ends_with(": deploy of `production` (stale: holder process is gone)"));
        assert_eq!(
            h.describe_checked(&at("build-7", None), |_| Seen::Running),
            h.describe()
        );
    }

    #[test]
    fn the_holder_is_judged_by_its_process_identity_not_its_machine_name() {
        // A live process of this very machine, recorded as shipit does.
        let me = LockHolder {
            pid: std::process::id(),
            process: ProcessIdentity::of_self().map(Box::new),
            ..holder()
        };
        assert_eq!(holder_seen(&me), Seen::Running);
        // The same pid and machine name from another boot (another
        // container or CI machine called the same): never stale.
        let elsewhere = LockHolder {
            process: me.process.clone().map(|p| {
                Box::new(ProcessIdentity {
                    boot_id: "another-boot".into(),
                    ..*p
                })
            }),
            ..me.clone()
        };
        assert_eq!(holder_seen(&elsewhere), Seen::Unknown);
        // The pid reused by a later process: the holder is gone.
        let reused = LockHolder {
            process: me.process.clone().map(|p| {
                Box::new(ProcessIdentity {
                    start_time: p.start_time + 1,
                    ..*p
                })
            }),
            ..me.clone()
        };
        assert_eq!(holder_seen(&reused), Seen::Gone);
    }

    #[test]
    fn records_of_older_versions_are_read_and_never_called_stale_by_pid() {
        let old = r#"{"user":"alice","machine":"build-7","pid":4194000,"time":"2026-11-24T19:01:02Z","stage":"production","message":"deploy of `production`","token":"t"}"#;
        let h = LockHolder::from_stderr(old).expect("an old record reads");
        assert_eq!(h.process, None);
        assert_eq!(holder_seen(&h), Seen::Unknown);
        assert!(!h.is_stale(&at("build-7", None), holder_seen));
        // The TTL still applies.
        assert!(h.is_stale(&at("build-7", Some(3600)), holder_seen));
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
        let alive = |_: &LockHolder| Seen::Running;
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
            process: None,
        };
        let stderr = format!(
            "shipit: deploy lock held\n{}\n",
            serde_json::to_string(&h).unwrap()
        );
        assert_eq!(LockHolder::from_stderr(&stderr), Some(h));
        assert_eq!(LockHolder::from_stderr("garbage"), None);
    }
}
