//! Snapshots of `shipit plan` for fixed inputs (clock, pid, machine, user
//! and commit fixed), and what a plan must never show.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::TimeZone;
use clap::Parser;

use super::*;
use crate::cli::Cli;
use crate::config::ParseContext;
use crate::plan::release;
use crate::report::{Format, Output, World};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const DIGEST: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const CHAT_TOKEN: &str = "xoxb-chat-token-4711";

/// The world of a `shipit plan` run with everything that varies per
/// run fixed: the clock, the pid, the machine, who runs it.
fn app(stage: &str) -> App {
    let cli = Cli::try_parse_from(["shipit", "plan", stage]).expect("valid arguments");
    App {
        global: cli.global,
        env: BTreeMap::from([
            ("SHIPIT_USER".to_string(), "alice".to_string()),
            ("CHAT_TOKEN".to_string(), CHAT_TOKEN.to_string()),
        ]),
        now: chrono::Utc
            .with_ymd_and_hms(2026, 11, 24, 19, 1, 2)
            .single()
            .expect("a valid time"),
        world: World::default(),
        shutdown: tokio::sync::watch::channel(false).1,
        pid: 4242,
        machine: "build-7".into(),
        status: Arc::new(Mutex::new(String::new())),
        interactive: false,
        output: Output::simple(Format::Plain),
        stdout: Arc::new(Mutex::new(std::io::sink())),
        log_secrets: Default::default(),
    }
}

/// What `run` prints, for a release given rather than resolved from
/// git and the clock (`App::release_info`, `App::artifact`).
fn plan_text(
    app: &App,
    config: &Config,
    stage: &str,
    recipe: PlanRecipe,
    release: ReleaseInfo,
) -> String {
    text(app, config, stage, recipe, release).expect("a valid plan")
}

/// The release `run` would make at the app's clock, of [`COMMIT`].
fn release_for(app: &App, config: &Config, stage: &str) -> ReleaseInfo {
    ReleaseInfo {
        id: release::release_id(app.now).into(),
        commit: COMMIT.into(),
        reference: config.branch.clone(),
        user: app.user(),
        application: config.application.clone(),
        stage: stage.into(),
        build_url: None,
        digest: (config.strategy == crate::config::Strategy::Copy).then(|| DIGEST.into()),
        commit_time: Some(1_795_000_000),
    }
}

fn checkout() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `text` parsed as if it were `name` in this checkout (whose
/// `templates/` the configs use).
fn config(text: &str, name: &str) -> Config {
    let ctx = ParseContext {
        cwd: checkout(),
        home: Some(PathBuf::from("/home/alice")),
    };
    crate::config::parse_with(text, &checkout().join(name), &ctx).expect("a valid config")
}

fn snapshot_all(config: &Config, stages: &[&str], recipes: &[(PlanRecipe, &str)]) {
    for stage in stages {
        let app = app(stage);
        for (recipe, name) in recipes {
            let text = plan_text(
                &app,
                config,
                stage,
                *recipe,
                release_for(&app, config, stage),
            );
            assert!(!text.contains(CHAT_TOKEN), "{text}");
            // The example deploys this checkout (`repository: .`, the
            // demo's `./.shipit-demo`), whose path differs per machine.
            let text = text.replace(&checkout().to_string_lossy().into_owned(), "[checkout]");
            insta::assert_snapshot!(format!("{}_{stage}_{name}", config.application), text);
        }
    }
}

const RECIPES: [(PlanRecipe, &str); 3] = [
    (PlanRecipe::Deploy, "deploy"),
    (PlanRecipe::Rollback, "rollback"),
    (PlanRecipe::Promote, "promote"),
];

#[test]
fn the_example_configs_plans() {
    let c = config(
        include_str!("../../../deploy.example.yml"),
        "deploy.example.yml",
    );
    snapshot_all(&c, &["demo", "staging"], &RECIPES[..2]);
    snapshot_all(&c, &["production"], &RECIPES);
}

/// Several hosts and roles, rollout batches after a canary, a task on
/// the shipit machine, a task run once, a template, strategy copy, a
/// secret from the environment.
const PRODUCTION_LIKE: &str = r#"
application: shop
repository: git@github.com:acme/shop.git
branch: main
deploy_to: /var/www/shop
keep_releases: 3
strategy: copy
linked_files: [.env]
linked_dirs: [log, public/uploads]
ssh: { user: deploy, connect_timeout: 10s, host_key_checking: strict }
vars: { port: 8080 }
templates:
  - { src: templates/app.env.tera, dest: shared/.env, mode: "0600" }
tasks:
  build:      { after: link_shared, roles: [app], run: "bin/build --port {{ port }}" }
  migrate:    { after: build, roles: [db], once: true, run: "bin/migrate" }
  notify:     { after: smoke_test, local: true, run: "bin/notify-chat --token {{ env.CHAT_TOKEN }} {{ stage }} {{ release }}" }
  restart:    { roles: [app], run: "sudo systemctl restart shop" }
  smoke_test: { roles: [app], run: "curl -fsS localhost:{{ port }}/up", retries: 10, interval: 2s, timeout: 60s }
stages:
  staging:
    hosts:
      - { host: stg-1.acme.internal, roles: [app, db] }
  production:
    promote_from: staging
    gate: { approvals: 2, soak: 30m, approvers: [alice, bob, carol], self_approval: false }
    rollout: { batch: 25%, canary: 1 }
    max_failures: 0
    hosts:
      - { host: "web-[01:08].acme.internal", roles: [app] }
      - { host: db-1.acme.internal, roles: [db], deploy_to: /srv/shop }
"#;

#[test]
fn a_production_like_configs_plans() {
    let c = config(PRODUCTION_LIKE, "deploy.yml");
    snapshot_all(&c, &["production"], &RECIPES);
}

/// A load balancer drains each host before its switch and undrains it
/// after its smoke test, here an HTTP check from this machine; the undo
/// and the rollback drain too.
#[test]
fn a_load_balanced_configs_plans() {
    let text = PRODUCTION_LIKE
        .replace("application: shop\n", "application: shop-lb\n")
        .replace(
            r#"smoke_test: { roles: [app], run: "curl -fsS localhost:{{ port }}/up", retries: 10, interval: 2s, timeout: 60s }"#,
            r#"smoke_test: { roles: [app], http: "http://{{ host }}:{{ port }}/up", retries: 10, interval: 2s, timeout: 60s }"#,
        )
        .replace(
            "    max_failures: 0\n",
            "    max_failures: 0\n    load_balancer:\n      \
             drain: { local: true, run: \"bin/lb drain {{ host }} --token {{ env.CHAT_TOKEN }}\", timeout: 2m }\n      \
             undrain: { run: \"sudo /usr/local/bin/lb-ready\" }\n      wait: 10s\n",
        );
    assert!(
        text.contains("load_balancer") && text.contains("http:"),
        "{text}"
    );
    let c = config(&text, "deploy.yml");
    snapshot_all(&c, &["production"], &RECIPES[..2]);
    let app = app("production");
    let deploy = plan_text(
        &app,
        &c,
        "production",
        PlanRecipe::Deploy,
        release_for(&app, &c, "production"),
    );
    // drain, publish, restart, smoke test, undrain: in that order.
    let at = |s: &str| deploy.find(s).unwrap_or_else(|| panic!("{s} in {deploy}"));
    assert!(at(". drain  (timeout 130s, on the shipit machine)") < at(". publish  (timeout"));
    assert!(at(". smoke_test  (timeout") < at(". undrain  (timeout 60s)"));
    assert!(deploy.contains("GET http://web-01.acme.internal:8080/up until it answers 200"));
}

/// A `local: true` restart runs once on this machine during a deploy's
/// undo, and a rollback does not run it: neither plan shows it on a
/// host.
#[test]
fn a_local_restart_is_never_planned_on_a_host() {
    let text = PRODUCTION_LIKE.replace(
        r#"restart:    { roles: [app], run: "sudo systemctl restart shop" }"#,
        r#"restart:    { local: true, run: "bin/lb-restart {{ release }}" }"#,
    );
    assert_ne!(text, PRODUCTION_LIKE);
    let c = config(&text, "deploy.yml");
    let app = app("production");
    let rollback = plan_text(
        &app,
        &c,
        "production",
        PlanRecipe::Rollback,
        release_for(&app, &c, "production"),
    );
    assert!(rollback.contains(
        "note: task `restart` runs on this machine (`local: true`); rollback does not run it"
    ));
    assert!(!rollback.contains("lb-restart"), "{rollback}");
    assert!(!rollback.contains("     restart  (timeout"), "{rollback}");
    let deploy = plan_text(
        &app,
        &c,
        "production",
        PlanRecipe::Deploy,
        release_for(&app, &c, "production"),
    );
    let undo = &deploy[deploy.find("[undo:").expect("the plan shows its undo")..];
    // Once, on this machine, for the release the hosts go back to.
    assert_eq!(undo.matches("lb-restart").count(), 1, "{undo}");
    // The placeholder is a value like any other: one quoted word.
    assert!(undo.contains("bin/lb-restart '<previous>'"), "{undo}");
    assert!(
        undo.contains("restart  (timeout 600s, on the shipit machine)"),
        "{undo}"
    );
}

/// Values are one shell word in the plan as on the hosts; a `| safe`
/// insertion is named above the graph.
#[test]
fn values_are_quoted_and_unquoted_insertions_named() {
    let c = config(
        r#"
application: quoted
repository: git@github.com:acme/shop.git
deploy_to: /srv/quoted
vars: { motto: "$(touch /tmp/x); `id` 'q'", flags: "-a -b", port: 8080 }
tasks:
  build:  { after: link_shared, run: "bin/build {{ motto }} --port {{ port }} {{ flags | safe }}" }
  notify: { after: smoke_test, local: true, run: "echo {{ motto | upper }} {{ host }}" }
stages:
  staging:
    hosts:
      - { host: stg-1.acme.internal }
"#,
        "deploy.yml",
    );
    snapshot_all(&c, &["staging"], &RECIPES[..1]);
}
