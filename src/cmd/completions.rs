//! `shipit completions SHELL`: completion scripts generated from the clap
//! definitions in [`crate::cli`], so they always know every flag.

use clap_complete::Shell;

/// The completion script for `shell`.
pub fn script(mut command: clap::Command, shell: Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "shipit", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::CommandFactory;

    #[test]
    fn every_shell_completes_the_subcommands_and_flags() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish, Shell::PowerShell] {
            let text = String::from_utf8(script(Cli::command(), shell)).unwrap();
            for word in ["deploy", "rollback", "promote", "config", "format"] {
                assert!(text.contains(word), "{shell}: no `{word}`");
            }
        }
    }
}
