//! `shipit schema`: the JSON Schema editors read must accept the files
//! shipit ships and refuse what the loader refuses.

mod support;

use std::path::Path;

use support::project::{shipit, text};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The schema as a user gets it, from the real binary.
fn validator() -> jsonschema::Validator {
    let out = shipit(root(), &["schema"]);
    assert!(out.status.success(), "{}", text(&out));
    let schema: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the schema is JSON");
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema")
}

/// YAML as an editor's language server sees it: as JSON, YAML 1.2
/// booleans (`off` is a string), merge keys merged.
fn yaml(text: &str) -> serde_json::Value {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    serde_saphyr::from_str_with_options(text, options).expect("valid YAML")
}

fn errors(v: &jsonschema::Validator, doc: &serde_json::Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn deploy_example_yml_validates_against_the_schema() {
    let v = validator();
    let example = std::fs::read_to_string(root().join("deploy.example.yml")).unwrap();
    assert_eq!(errors(&v, &yaml(&example)), Vec::<String>::new());
}

#[test]
fn the_file_shipit_init_writes_validates_against_the_schema() {
    let v = validator();
    let dir = tempfile::tempdir().unwrap();
    let out = shipit(dir.path(), &["init"]);
    assert!(out.status.success(), "{}", text(&out));
    let starter = std::fs::read_to_string(dir.path().join("deploy.yml")).unwrap();
    assert_eq!(errors(&v, &yaml(&starter)), Vec::<String>::new());
}

/// One row per mistake: the schema and the loader both refuse it.
#[test]
fn what_the_loader_refuses_the_schema_refuses() {
    let v = validator();
    let example = std::fs::read_to_string(root().join("deploy.example.yml")).unwrap();
    let cases = [
        ("keep_releases: 5", "keep_release: 5", "keep_release"),
        ("strategy: git", "strategy: rsync", "rsync"),
        (
            "connect_timeout: 10s",
            "connect_timeout: 10 seconds",
            "10 seconds",
        ),
        ("host_key_checking: strict", "host_key_checking: off", "off"),
        ("retries: 2", "retries: -2", "-2"),
        ("batch: 25%", "batch: half", "half"),
        ("    once: true", "    once: true\n    when: always", "when"),
        (
            "promote_from: staging",
            "promote_form: staging",
            "promote_form",
        ),
    ];
    // A project the example's `demo` stage plans in: a git repository
    // with the template the example names.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::copy(
        root().join("templates/app.env.tera"),
        dir.join("templates/app.env.tera"),
    )
    .unwrap();
    support::project::git(dir, &["init", "-q", "-b", "main"]);
    support::project::git(dir, &["add", "-A"]);
    support::project::git(dir, &["commit", "-q", "-m", "app"]);
    std::fs::write(dir.join("deploy.yml"), &example).unwrap();
    let out = shipit(dir, &["plan", "demo"]);
    assert!(out.status.success(), "{}", text(&out));

    for (from, to, named) in cases {
        assert!(example.contains(from), "{from}");
        let bad = example.replacen(from, to, 1);
        let found = errors(&v, &yaml(&bad));
        assert!(!found.is_empty(), "the schema accepts `{to}`");
        assert!(found.iter().any(|e| e.contains(named)), "`{to}`: {found:?}");

        std::fs::write(dir.join("deploy.yml"), &bad).unwrap();
        let out = shipit(dir, &["plan", "demo"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "the loader accepts `{to}`: {}",
            text(&out)
        );
        assert!(stderr.contains("deploy.yml:"), "`{to}`: {stderr}");
    }
}
