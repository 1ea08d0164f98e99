//! The shell that runs on hosts: every remote script is a `.sh` file in this
//! directory, checked by shellcheck in CI, and filled in by small pure
//! functions (in [`crate::plan`]) that quote every value.
//!
//! # How a script is filled in
//!
//! A `.sh` file is a POSIX `sh` body that reads its inputs from shell
//! variables. It declares them on a line of its own near the top:
//!
//! ```sh
//! : "${deploy_to?}" "${holder?}"
//! ```
//!
//! (which also stops the script if one is missing, and tells shellcheck the
//! variables are set elsewhere). [`Body::fill`] starts a filler; each
//! [`Fill::set`] adds one assignment `name='value'` to a prologue, the value
//! quoted by [`shell::quote`]; [`Fill::args`] sets the positional
//! parameters (`set -- 'a' 'b'`) for a list. [`Fill::done`] returns the
//! prologue followed by the body.
//!
//! Code only ever comes from the `.sh` files: a [`Body`] can only be made
//! here, from a file compiled in with `include_str!`, and a value can only
//! enter through [`Fill::set`] or [`Fill::args`], quoted. So no value can
//! reach a host unquoted. A user's command (a task's `run:`) is a value
//! too: it travels in a variable and the script runs it with `eval`.
//!
//! Filled scripts may be concatenated: each one sets its own inputs right
//! before its body. A script that must run another one inside a condition
//! gets it as a value and `eval`s it.
//!
//! Full-line comments and blank lines are left out of the filled script (it
//! is shorter on the wire and in `shipit plan`), so the `.sh` files never
//! hold a quoted string that spans lines.
//!
//! Decisions (which releases to remove, where to roll back to) are made in
//! Rust from what scripts print; the scripts only act on them.

pub mod shell;

/// The body of one remote script: the text of a `.sh` file of this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Body {
    name: &'static str,
    text: &'static str,
}

macro_rules! body {
    ($(#[$doc:meta])* $const:ident, $file:literal) => {
        $(#[$doc])*
        pub const $const: Body = Body {
            name: $file,
            text: include_str!($file),
        };
    };
}

body!(
    /// Takes the deploy lock and reports the host's releases, `current` and ledger.
    LOCK, "lock.sh"
);
body!(
    /// Prints where `current` points (`current:`, `current_commit:`).
    READ_CURRENT, "read_current.sh"
);
body!(
    /// Frees the deploy lock when it is ours.
    UNLOCK, "unlock.sh"
);
body!(
    /// The deploy's `check` step.
    CHECK, "check.sh"
);
body!(
    /// Strategy git: fetches into the host's mirror.
    FETCH_GIT, "fetch_git.sh"
);
body!(
    /// Strategy copy: receives the release archive on stdin.
    UPLOAD_ARTIFACT, "upload_artifact.sh"
);
body!(
    /// Fills a new release dir from its archive.
    CREATE_RELEASE, "create_release.sh"
);
body!(
    /// Strategy git: fills a release's git submodules, nested ones too.
    SUBMODULES_GIT, "submodules_git.sh"
);
body!(
    /// Appends ledger lines, timestamped on the host.
    LEDGER_APPEND, "ledger_append.sh"
);
body!(
    /// Appends one complete ledger line.
    LEDGER_APPEND_RAW, "ledger_append_raw.sh"
);
body!(
    /// Symlinks shared dirs and files into a release.
    LINK_SHARED, "link_shared.sh"
);
body!(
    /// Writes stdin to a file atomically.
    UPLOAD, "upload.sh"
);
body!(
    /// Runs a user command, with retries.
    TASK, "task.sh"
);
body!(
    /// Switches `current` to this run's release.
    PUBLISH, "publish.sh"
);
body!(
    /// A load balancer's `drain` (then its `wait`) or `undrain` for one host.
    LOAD_BALANCER, "load_balancer.sh"
);
body!(
    /// Appends a line to `revisions.log`.
    RECORD, "record.sh"
);
body!(
    /// Removes the releases it is given.
    CLEANUP, "cleanup.sh"
);
body!(
    /// The cleanup of a plan made before the lock step read the host.
    CLEANUP_PENDING, "cleanup_pending.sh"
);
body!(
    /// Removes a staged release dir that did not go live.
    DISCARD_STAGED, "discard_staged.sh"
);
body!(
    /// Points `current` back at the previous release.
    SWITCH_BACK, "switch_back.sh"
);
body!(
    /// Runs a filled script in a subshell; fails with a message if it fails.
    GUARDED, "guarded.sh"
);
body!(
    /// Runs a filled record; says `ledger:failed` and goes on if it fails.
    BEST_EFFORT, "best_effort.sh"
);
body!(
    /// Switches `current` back where it points at this run's release.
    UNDO_SWITCH, "undo_switch.sh"
);

body!(
    /// Runs the steps of one host as one script, framing each step's result.
    CHAIN, "chain.sh"
);
body!(
    /// Runs a filled script with its stdout discarded; stops if it fails.
    QUIET, "quiet.sh"
);
body!(
    /// `shipit check`'s preflight.
    PREFLIGHT, "preflight.sh"
);
body!(
    /// Prints the deploy lock's state.
    LOCK_STATE, "lock_state.sh"
);
body!(
    /// `shipit releases`: release dirs, `current`, the ledger.
    RELEASES, "releases.sh"
);
body!(
    /// Frees the deploy lock that was seen, and records it.
    FREE_LOCK, "free_lock.sh"
);
body!(
    /// A rollback's switch of `current`.
    ROLLBACK_SWITCH, "rollback_switch.sh"
);
body!(
    /// Ends the undo of a rollback early when `current` was never switched.
    ROLLBACK_SWITCHED, "rollback_switched.sh"
);
body!(
    /// Prints where `current` points (`current:`, `commit:`).
    PROBE_CURRENT, "probe_current.sh"
);
body!(
    /// Reads a promotion's target host.
    PROMOTE_TARGET, "promote_target.sh"
);
body!(
    /// Reads the trust root of a promotion's gate (allowed signers, pinned
    /// gates): owners, modes, bytes in hex.
    TRUST_ROOT, "trust_root.sh"
);

/// Every body, for tests that check them all.
#[cfg(test)]
const ALL: &[Body] = &[
    LOCK,
    READ_CURRENT,
    UNLOCK,
    CHECK,
    FETCH_GIT,
    UPLOAD_ARTIFACT,
    CREATE_RELEASE,
    LEDGER_APPEND,
    LEDGER_APPEND_RAW,
    LINK_SHARED,
    UPLOAD,
    TASK,
    PUBLISH,
    LOAD_BALANCER,
    RECORD,
    CLEANUP,
    CLEANUP_PENDING,
    DISCARD_STAGED,
    SWITCH_BACK,
    GUARDED,
    BEST_EFFORT,
    UNDO_SWITCH,
    CHAIN,
    QUIET,
    PREFLIGHT,
    LOCK_STATE,
    TRUST_ROOT,
    RELEASES,
    FREE_LOCK,
    ROLLBACK_SWITCH,
    ROLLBACK_SWITCHED,
    PROBE_CURRENT,
    PROMOTE_TARGET,
];

impl Body {
    /// Starts filling this body in.
    pub fn fill(self) -> Fill {
        Fill {
            body: self,
            prologue: String::new(),
            set: Vec::new(),
        }
    }

    /// The file this body comes from.
    pub fn name(self) -> &'static str {
        self.name
    }

    /// The variables the body declares as its inputs (its `: "${x?}"`
    /// lines), in order.
    pub fn inputs(self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for line in self.text.lines() {
            let Some(rest) = line.trim().strip_prefix(": ") else {
                continue;
            };
            for word in rest.split_whitespace() {
                if let Some(name) = word
                    .strip_prefix("\"${")
                    .and_then(|w| w.strip_suffix("?}\""))
                {
                    out.push(name);
                }
            }
        }
        out
    }
}

/// A body being filled in; see the module documentation.
#[derive(Debug, Clone)]
#[must_use = "a filled script does nothing until `done` returns its text"]
pub struct Fill {
    body: Body,
    prologue: String,
    set: Vec<&'static str>,
}

/// Whether `name` can be a shell variable's name.
fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Fill {
    /// Sets input `name` to `value`, quoted.
    ///
    /// # Panics
    ///
    /// When `name` is not a shell variable name (a bug in the caller, not
    /// something a user can cause).
    pub fn set(mut self, name: &'static str, value: &str) -> Self {
        assert!(is_name(name), "`{name}` is not a shell variable name");
        self.prologue.push_str(name);
        self.prologue.push('=');
        self.prologue.push_str(&shell::quote(value));
        self.prologue.push('\n');
        self.set.push(name);
        self
    }

    /// Sets input `name` to the path `value` on the host, quoted; a leading
    /// `~/` is the login home (see [`shell::quote_path`]).
    pub fn set_path(mut self, name: &'static str, value: &str) -> Self {
        assert!(is_name(name), "`{name}` is not a shell variable name");
        self.prologue.push_str(name);
        self.prologue.push('=');
        self.prologue.push_str(&shell::quote_path(value));
        self.prologue.push('\n');
        self.set.push(name);
        self
    }

    /// Sets the positional parameters (`"$@"`) to `values`, each quoted.
    pub fn args<I, S>(mut self, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.prologue.push_str("set --");
        for v in values {
            self.prologue.push(' ');
            self.prologue.push_str(&shell::quote(v.as_ref()));
        }
        self.prologue.push('\n');
        self
    }

    /// The script: the prologue, then the body without its comments and
    /// blank lines.
    pub fn done(self) -> String {
        debug_assert_eq!(
            {
                let mut s = self.set.clone();
                s.sort_unstable();
                s
            },
            {
                let mut d = self.body.inputs();
                d.sort_unstable();
                d
            },
            "the inputs set for {} are not the ones it declares",
            self.body.name
        );
        let mut out = self.prologue;
        for line in self.body.text.lines() {
            let t = line.trim_start();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const HOSTILE: [&str; 7] = [
        "it's",
        "$(touch canary)",
        "`touch canary`",
        "a\nb",
        "'; touch canary #",
        "*",
        "",
    ];

    fn sh(script: &str, dir: &std::path::Path) -> std::process::Output {
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .output()
            .unwrap()
    }

    #[test]
    fn every_body_is_sh_and_declares_its_inputs() {
        for b in ALL {
            assert!(
                b.text.starts_with("# shellcheck shell=sh\n"),
                "{} does not start with the shellcheck shell directive",
                b.name
            );
            let inputs = b.inputs();
            assert!(inputs.iter().all(|n| is_name(n)), "{}: {inputs:?}", b.name);
        }
    }

    #[test]
    fn every_body_filled_with_hostile_values_is_one_valid_script() {
        for b in ALL {
            for v in HOSTILE {
                let mut f = b.fill();
                for name in b.inputs() {
                    f = f.set(name, v);
                }
                let s = f.args([v, v]).done();
                let out = Command::new("sh")
                    .arg("-n")
                    .arg("-c")
                    .arg(&s)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{} with {v:?}: {}\n{s}",
                    b.name,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }

    #[test]
    fn values_arrive_as_one_literal_word() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for v in HOSTILE {
            let s = RECORD
                .fill()
                .set("deploy_to", d.to_str().unwrap())
                .set("line", v)
                .done();
            let out = sh(&s, d);
            assert!(out.status.success(), "{v:?}: {out:?}");
            let log = std::fs::read_to_string(d.join("revisions.log")).unwrap();
            assert_eq!(log, format!("{v}\n"), "{v:?}");
            std::fs::remove_file(d.join("revisions.log")).unwrap();
            // Positional values too.
            let s = LEDGER_APPEND
                .fill()
                .set("deploy_to", d.to_str().unwrap())
                .args([v, v])
                .done();
            let out = sh(&s, d);
            assert!(out.status.success(), "{v:?}: {out:?}");
            let ledger = std::fs::read_to_string(d.join(".shipit/ledger.jsonl")).unwrap();
            let line = ledger.strip_suffix('\n').unwrap();
            let (a, rest) = line.split_at(v.len());
            assert_eq!(a, v);
            assert!(rest.ends_with(v), "{v:?}: {ledger:?}");
            std::fs::remove_file(d.join(".shipit/ledger.jsonl")).unwrap();
            assert!(!d.join("canary").exists(), "{v:?} ran a command");
        }
    }

    #[test]
    fn a_filled_script_is_the_prologue_then_the_body_without_comments() {
        let s = UNLOCK
            .fill()
            .set("deploy_to", "/srv/a b")
            .set("token", "T")
            .done();
        assert!(
            s.starts_with("deploy_to='/srv/a b'\ntoken='T'\n: \"${deploy_to?}\""),
            "{s}"
        );
        assert!(!s.lines().any(|l| l.trim_start().starts_with('#')), "{s}");
        assert!(!s.lines().any(|l| l.trim().is_empty()), "{s}");
    }

    #[test]
    #[should_panic(expected = "not a shell variable name")]
    fn a_name_that_is_not_a_variable_is_refused() {
        let _ = UNLOCK.fill().set("x; rm", "v");
    }
}
