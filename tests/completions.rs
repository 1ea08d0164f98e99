//! `shipit completions` and `shipit man`: what a user installs from the
//! binary works in the shell and in man.

mod support;

use std::path::Path;
use std::process::Command;

use support::project::{shipit, text};

/// bash, with the script shipit prints sourced, completes what the user
/// typed so far.
fn bash_completes(words: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let out = shipit(dir.path(), &["completions", "bash"]);
    assert!(out.status.success(), "{}", text(&out));
    let script = dir.path().join("shipit.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let words: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let words = words.join(" ");
    let probe = format!(
        "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
         COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}; \
         _shipit shipit \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &probe])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_commands_flags_and_values() {
    assert_eq!(bash_completes(&["shipit", "rol"]), ["rollback"]);
    let flags = bash_completes(&["shipit", "deploy", "--rev"]);
    assert_eq!(flags, ["--revision"]);
    let formats = bash_completes(&["shipit", "deploy", "--format", ""]);
    assert_eq!(formats, ["auto", "human", "plain", "json"]);
    let shells = bash_completes(&["shipit", "completions", ""]);
    for s in ["bash", "zsh", "fish", "powershell"] {
        assert!(shells.iter().any(|x| x == s), "{shells:?}");
    }
}

#[test]
fn every_shell_gets_a_script_naming_every_command() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = shipit(dir.path(), &["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out));
        let script = String::from_utf8(out.stdout).unwrap();
        for command in ["deploy", "rollback", "promote", "approve", "schema"] {
            assert!(script.contains(command), "{shell}: no `{command}`");
        }
    }
    let out = shipit(dir.path(), &["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn man_pages_are_roff_for_shipit_and_each_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = shipit(dir.path(), &["man"]);
    assert!(out.status.success(), "{}", text(&out));
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH shipit 1"), "{page}");
    assert!(page.contains("rollback"), "{page}");

    let out = shipit(dir.path(), &["man", "--dir", "man1"]);
    assert!(out.status.success(), "{}", text(&out));
    let deploy = std::fs::read_to_string(dir.path().join("man1/shipit-deploy.1")).unwrap();
    assert!(deploy.contains(".TH shipit-deploy 1"), "{deploy}");
    assert!(deploy.contains("\\-\\-revision"), "{deploy}");
    assert!(Path::new(&dir.path().join("man1/shipit.1")).exists());

    let out = shipit(dir.path(), &["man", "deploi"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("no command `deploi`"), "{}", text(&out));
}
