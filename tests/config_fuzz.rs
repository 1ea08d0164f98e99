//! Property tests of the config parser and validator: whatever the text of
//! `deploy.yml`, parsing gives a config or a clean error — never a panic,
//! a hang or a stack overflow — and the error is one line that names the
//! file, with a position inside it and no raw control characters (a
//! hostile file cannot drive the terminal through an error message).
//!
//! The case counts are fixed so CI runs a bounded, repeatable amount;
//! `PROPTEST_CASES` raises them for a longer local run.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence};
use shipit::config::{parse_with, ParseContext};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// The example file, parsed as `deploy.yml` in the crate root, where its
/// template sources exist.
const EXAMPLE: &str = include_str!("../deploy.example.yml");

fn ctx() -> ParseContext {
    ParseContext {
        cwd: PathBuf::from(MANIFEST_DIR),
        home: Some(PathBuf::from("/home/me")),
    }
}

fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        // Failures are reported with their input; nothing is written to the
        // source tree.
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..ProptestConfig::default()
    }
}

/// Parses `text`; on error checks the error is clean. Panics (failing the
/// property) otherwise.
fn parse_checked(text: &str) {
    let Err(e) = parse_with(text, Path::new("deploy.yml"), &ctx()) else {
        return;
    };
    let shown = e.to_string();
    assert!(
        !shown.contains('\n') && !shown.contains('\r'),
        "multi-line error: {shown:?}"
    );
    assert!(
        !shown.chars().any(|c| c.is_control()),
        "raw control character in error: {shown:?}"
    );
    let (message, place) = shown
        .rsplit_once(" (deploy.yml")
        .unwrap_or_else(|| panic!("error does not name the file: {shown:?}"));
    assert!(!message.trim().is_empty(), "empty message: {shown:?}");
    let place = place.strip_suffix(')').expect("ends with `)`");
    if let Some(pos) = place.strip_prefix(':') {
        let (line, col) = pos.split_once(':').expect("line:column");
        let line: usize = line.parse().expect("a line number");
        let col: usize = col.parse().expect("a column number");
        let lines = text.lines().count().max(1);
        assert!(
            (1..=lines + 1).contains(&line) && col >= 1,
            "position {line}:{col} outside a {lines}-line file: {shown:?}"
        );
    } else {
        assert!(place.is_empty(), "{shown:?}");
    }
}

/// Pieces of YAML and of hostile values to splice into the example.
const SNIPPETS: &[&str] = &[
    ":",
    ": ",
    "- ",
    "-",
    "{",
    "}",
    "[",
    "]",
    ",",
    "\"",
    "'",
    "\n",
    "  ",
    "    ",
    "\t",
    "#",
    "? ",
    "|",
    ">",
    "&a ",
    "*a",
    "!!str ",
    "!!binary ",
    "!x ",
    "~",
    "null",
    "0",
    "-1",
    "99999999999999999999",
    "1e309",
    "0x1f",
    "0o17",
    ".inf",
    "true",
    "yes",
    "..",
    "../",
    "/",
    "$(touch x)",
    "`id`",
    "\u{0}",
    "\u{1b}[31m",
    "\u{feff}",
    "\u{202e}",
    "é",
    "---\n",
    "...\n",
    "%YAML 1.2\n",
    "<<: *a\n",
    "hosts",
    "host",
    "stages",
    "tasks",
    "after",
    "run",
    "roles",
    "vars",
    "deploy_to",
    "templates",
    "dest",
    "mode",
    "gate",
    "rollout",
    "batch",
    "canary",
    "keep_releases",
    "linked_dirs",
    "linked_files",
    "ssh",
    "port",
    "web-[01:99]",
    "web-[9:1]",
    "web-[01:99999999]",
    "[a:b]",
    "10s",
    "0s",
    "-5m",
    "1h",
    "30x",
    "25%",
    "0%",
    "101%",
    "0600",
    "9999",
];

/// One change to the text: `(kind, position, length, snippet)`.
type Mutation = (u8, usize, usize, usize);

fn mutate(text: &str, muts: &[Mutation]) -> String {
    let mut s: Vec<char> = text.chars().collect();
    for &(kind, pos, len, snip) in muts {
        let at = if s.is_empty() { 0 } else { pos % (s.len() + 1) };
        match kind % 5 {
            // Delete a run of characters.
            0 => {
                let end = (at + len % 40).min(s.len());
                s.drain(at..end);
            }
            // Insert a snippet.
            1 | 2 => {
                let piece = SNIPPETS[snip % SNIPPETS.len()];
                s.splice(at..at, piece.chars());
            }
            // Duplicate a run (repeated keys, repeated lines).
            3 => {
                let end = (at + len % 80).min(s.len());
                let dup: Vec<char> = s[at..end].to_vec();
                s.splice(end..end, dup);
            }
            // Swap two lines.
            _ => {
                let mut lines: Vec<String> = s
                    .iter()
                    .collect::<String>()
                    .split('\n')
                    .map(str::to_string)
                    .collect();
                let n = lines.len();
                lines.swap(pos % n, len % n);
                s = lines.join("\n").chars().collect();
            }
        }
    }
    s.into_iter().collect()
}

#[test]
fn the_example_itself_parses() {
    parse_with(EXAMPLE, Path::new("deploy.yml"), &ctx()).unwrap();
}

proptest! {
    #![proptest_config(cases(384))]

    /// Random bytes (as the text a file would decode to).
    #[test]
    fn random_bytes_give_a_config_or_a_clean_error(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_checked(&String::from_utf8_lossy(&bytes));
    }

    /// Random text made of YAML's own punctuation and deploy.yml's keys,
    /// which reaches further into the validator than random bytes do.
    #[test]
    fn random_yaml_shaped_text_gives_a_config_or_a_clean_error(
        picks in prop::collection::vec(any::<usize>(), 0..120)
    ) {
        let text: String = picks.iter().map(|i| SNIPPETS[i % SNIPPETS.len()]).collect();
        parse_checked(&text);
    }

    /// The example with 1 to 8 random edits: mostly-valid files that fail
    /// (or pass) deep in validation.
    #[test]
    fn mutations_of_the_example_give_a_config_or_a_clean_error(
        muts in prop::collection::vec((any::<u8>(), any::<usize>(), any::<usize>(), any::<usize>()), 1..9)
    ) {
        parse_checked(&mutate(EXAMPLE, &muts));
    }
}

/// Inputs random generation rarely reaches: deep nesting (a stack
/// overflow would abort the test binary), alias bombs, huge scalars and
/// host ranges, odd encodings.
#[test]
fn pathological_inputs_give_a_clean_error() {
    let deep = 100_000;
    let mut inputs = vec![
        format!("vars: {{ a: {}{} }}", "[".repeat(deep), "]".repeat(deep)),
        format!(
            "vars: {{ a: {}1{} }}",
            "{x: ".repeat(deep),
            "}".repeat(deep)
        ),
        "[".repeat(deep),
        "- ".repeat(20_000),
        (0..3_000)
            .map(|i| format!("{}a{i}:\n", " ".repeat(i)))
            .collect::<String>(),
        // An alias bomb: each level doubles.
        {
            let mut s = String::from("vars:\n  l0: &l0 [x, x]\n");
            for i in 1..40 {
                s.push_str(&format!("  l{i}: &l{i} [*l{p}, *l{p}]\n", p = i - 1));
            }
            s
        },
        format!("application: {}", "a".repeat(1 << 20)),
        "stages:\n  s:\n    hosts:\n      - { host: \"web-[0:99999999]\" }\n".to_string(),
        "\u{feff}application: shop\n".to_string(),
        "application: shop\r\nrepository: x\r\n".to_string(),
        "\0".repeat(1000),
        "--- !!binary\n---\n".to_string(),
        "*unknown".to_string(),
        "? [a, b]\n: c\n".to_string(),
        "<<: [*a]\n".to_string(),
    ];
    inputs.push(EXAMPLE.replace("stages:", "stages: &s\n  x: *s\n"));
    for text in &inputs {
        let started = std::time::Instant::now();
        parse_checked(text);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "took {:?} on {:?}…",
            started.elapsed(),
            &text[..text.len().min(80)]
        );
    }
}
