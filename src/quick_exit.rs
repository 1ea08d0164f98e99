//! Until a run changes anything outside this process, SIGINT or SIGTERM
//! ends it at once (exit 130): loading a large config, running a
//! `hosts_from` inventory command, resolving the commit or building the
//! archive is abandoned, not finished first. The first change (a control
//! directory for the connections, a file written by `init` or `secrets`)
//! is announced with [`changes_begin`]; from then on a signal asks the run
//! to stop starting work, undo and unlock instead.
//!
//! One lock makes the two exclusive: a signal that finds nothing changed
//! exits while holding it, so no change can begin in between.

use std::sync::Mutex;

static CHANGED: Mutex<bool> = Mutex::new(false);

/// Called before this run's first change outside the process: from now on
/// a signal no longer ends the process at once.
pub fn changes_begin() {
    *CHANGED.lock().unwrap_or_else(|e| e.into_inner()) = true;
}

/// Whether [`changes_begin`] was called.
pub fn changes_begun() -> bool {
    *CHANGED.lock().unwrap_or_else(|e| e.into_inner())
}

/// While nothing has changed yet: runs `last_words` (say why, close the
/// reports) and exits with `code`, never returning. Once something has
/// changed: returns, and the caller stops the run the careful way.
pub fn exit_if_nothing_changed(code: i32, last_words: impl FnOnce()) {
    let changed = CHANGED.lock().unwrap_or_else(|e| e.into_inner());
    if !*changed {
        last_words();
        std::process::exit(code);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_changes_began_a_signal_does_not_exit() {
        changes_begin();
        assert!(changes_begun());
        let mut spoke = false;
        exit_if_nothing_changed(130, || spoke = true);
        assert!(!spoke, "the last words are only for an exit");
    }
}
