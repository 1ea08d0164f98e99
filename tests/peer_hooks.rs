//! What users coming from Capistrano, Deployer and ansistrano reach for,
//! on real sshd hosts: `-o/--set` var overrides, `env:` for every remote
//! command, failure hooks (`after: failed`).

mod support;

use std::fs;

use support::project::{commit, current, expect_exit, shipit_cmd, stderr, stdout, text, Project};

#[test]
fn set_overrides_a_var_in_commands_and_plan() {
    let w = Project::new(2);
    w.write_config(
        "vars: { motto: from-file }\ntasks:\n  say:\n    after: link_shared\n    run: \"echo {{ motto }} > MOTTO\"\n",
        "",
        |i| {
            if i == 1 {
                ", vars: { motto: host-one }".into()
            } else {
                String::new()
            }
        },
    );
    let plan = stdout(&w.run_expect(&["plan", "staging", "-o", "motto=x y"], 0));
    assert!(
        plan.contains("vars overridden (-o): motto=\"x y\""),
        "{plan}"
    );
    // One quoted word, shown as the host's shell gets it.
    assert!(plan.contains(r"echo '\''x y'\'' > MOTTO"), "{plan}");
    assert!(
        !plan.contains("from-file") && !plan.contains("host-one"),
        "{plan}"
    );

    w.run_expect(&["deploy", "staging", "--set", "motto=x y"], 0);
    for d in w.hosts() {
        let rel = d.join(current(&d).unwrap());
        assert_eq!(fs::read_to_string(rel.join("MOTTO")).unwrap(), "x y\n");
    }
    // Without -o the file's values are back.
    w.run_expect(&["deploy", "staging"], 0);
    let mut mottos: Vec<String> = w
        .hosts()
        .iter()
        .map(|d| fs::read_to_string(d.join(current(d).unwrap()).join("MOTTO")).unwrap())
        .collect();
    mottos.sort();
    assert_eq!(mottos, ["from-file\n", "host-one\n"]);
}

#[test]
fn set_refuses_a_key_that_is_not_a_var_name() {
    let w = Project::new(1);
    w.write_config("", "", |_| String::new());
    for bad in ["my-var=1", "=1", "novalue"] {
        let o = w.run_expect(&["plan", "staging", "-o", bad], 2);
        assert!(
            stderr(&o).contains("KEY=VALUE") || stderr(&o).contains("var name"),
            "{}",
            stderr(&o)
        );
    }
}

const ENV_TASKS: &str = r#"env:
  GREETING: hello
  API_SECRET_VALUE: "{{ env.PEER_HOOKS_SECRET }}"
  PORT: 8080
tasks:
  greet:
    after: link_shared
    run: "printf '%s %s' \"$GREETING\" \"$PORT\" > GREETING; printf '%s' \"$API_SECRET_VALUE\" > SECRET; echo \"secret is $API_SECRET_VALUE\""
  restart:
    run: "printf '%s' \"$GREETING\" > RESTART_GREETING"
"#;

#[test]
fn env_is_exported_to_commands_stage_and_host_override_and_secrets_stay_hidden() {
    const SECRET: &str = "s3cret-'$(id)-value";
    let w = Project::new(2);
    w.write_config(ENV_TASKS, "    env: { GREETING: \"hi 'there'\" }\n", |i| {
        if i == 1 {
            ", env: { GREETING: host-one }".into()
        } else {
            String::new()
        }
    });
    let o = expect_exit(
        shipit_cmd(&w.dir, &["deploy", "staging", "-v"])
            .env("PEER_HOOKS_SECRET", SECRET)
            .output()
            .unwrap(),
        0,
    );
    let all = text(&o);
    assert!(!all.contains("s3cret"), "{all}");
    assert!(all.contains("secret is [redacted]"), "{all}");

    let mut greetings = Vec::new();
    for d in w.hosts() {
        let rel = d.join(current(&d).unwrap());
        greetings.push(std::fs::read_to_string(rel.join("GREETING")).unwrap());
        assert_eq!(std::fs::read_to_string(rel.join("SECRET")).unwrap(), SECRET);
        // The restart sees the same environment.
        let restart = std::fs::read_to_string(rel.join("RESTART_GREETING")).unwrap();
        assert_eq!(format!("{restart} 8080"), greetings[greetings.len() - 1]);
    }
    greetings.sort();
    assert_eq!(greetings, ["hi 'there' 8080", "host-one 8080"]);

    // The plan shows the values, quoted, and masks the secret.
    let plan = shipit_cmd(&w.dir, &["plan", "staging"])
        .env("PEER_HOOKS_SECRET", SECRET)
        .output()
        .unwrap();
    let plan = stdout(&expect_exit(plan, 0));
    assert!(plan.contains("'GREETING' 'host-one'"), "{plan}");
    assert!(plan.contains("'API_SECRET_VALUE' '[redacted]'"), "{plan}");
    assert!(!plan.contains("s3cret"), "{plan}");
}

#[test]
fn env_names_must_be_shell_identifiers() {
    let w = Project::new(1);
    for (env, message) in [
        (
            "env: { my-var: 1 }\n",
            "invalid environment variable name `my-var`",
        ),
        (
            "env: { SHIPIT_STAGE: x }\n",
            "environment variable `SHIPIT_STAGE` is reserved",
        ),
        (
            "env: { A: [1] }\n",
            "invalid value for environment variable `A`",
        ),
    ] {
        w.write_config(env, "", |_| String::new());
        let o = w.run_expect(&["plan", "staging"], 2);
        assert!(stderr(&o).contains(message), "{}", text(&o));
        assert!(stderr(&o).contains("deploy.yml:"), "{}", text(&o));
    }
}

const FAILURE_HOOKS: &str = r#"env: { GREETING: hello }
tasks:
  build:
    after: link_shared
    run: "test ! -e ../../FAIL_BUILD"
  alert:
    after: failed
    run: "env | grep '^SHIPIT_FAILED_' | sort > hook.env; echo \"greeting=$GREETING\" >> hook.env"
  broken:
    after: failed
    run: "false"
"#;

#[test]
fn failure_hooks_run_with_the_failure_after_a_failed_deploy_and_not_after_a_good_one() {
    let w = Project::new(2);
    w.write_config(FAILURE_HOOKS, "", |_| String::new());
    let hosts = w.hosts();
    w.deploy_ok();
    for d in &hosts {
        assert!(
            !d.join("hook.env").exists(),
            "a hook ran after a good deploy"
        );
    }
    let good = current(&hosts[0]).unwrap();

    fs::write(hosts[1].join("FAIL_BUILD"), "").unwrap();
    let o = w.deploy_expect(1);
    let all = text(&o);
    assert!(
        all.contains("failure hook `broken` failed on fleet-1, fleet-2; the run's outcome stands"),
        "{all}"
    );
    let failed_id = stdout(&o)
        .lines()
        .find_map(|l| l.split("release ").nth(1))
        .map(|r| r.split([',', ' ']).next().unwrap().to_string())
        .unwrap();
    for d in &hosts {
        // The undo ran first: every host is still on the good release.
        assert_eq!(current(d).unwrap(), good);
        let env = fs::read_to_string(d.join("hook.env")).unwrap();
        assert_eq!(
            env,
            format!(
                "SHIPIT_FAILED_HOSTS=fleet-2\nSHIPIT_FAILED_RELEASE={failed_id}\n\
                 SHIPIT_FAILED_STAGE=staging\nSHIPIT_FAILED_STEP=build\ngreeting=hello\n"
            ),
            "{all}"
        );
    }
}

#[test]
fn failure_hooks_run_when_a_rollback_fails() {
    let w = Project::new(2);
    w.write_config(
        r#"tasks:
  smoke_test:
    run: "test \"$(cat ../../FAIL_SMOKE 2>/dev/null)\" != \"$(cat REVISION)\""
  alert:
    after: failed
    once: true
    run: "env | grep '^SHIPIT_FAILED_' | sort > hook.env"
"#,
        "",
        |_| String::new(),
    );
    let hosts = w.hosts();
    w.deploy_ok();
    let first = current(&hosts[0]).unwrap();
    commit(&w.repo, "VERSION", "2\n");
    w.deploy_ok();
    let second = current(&hosts[0]).unwrap();
    assert_ne!(first, second);
    assert!(!hosts[0].join("hook.env").exists());

    // The smoke test fails on the second host for the first release only.
    let first_commit = fs::read_to_string(hosts[1].join(&first).join("REVISION")).unwrap();
    fs::write(hosts[1].join("FAIL_SMOKE"), first_commit.trim()).unwrap();
    let o = w.run(&["rollback", "staging"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    // The failing host went back to the release it came from.
    assert_eq!(current(&hosts[1]).unwrap(), second);
    let target = first.trim_start_matches("releases/");
    // `once`: only on the first host.
    assert!(!hosts[1].join("hook.env").exists());
    let env = fs::read_to_string(hosts[0].join("hook.env")).unwrap();
    assert_eq!(
        env,
        format!(
            "SHIPIT_FAILED_HOSTS=fleet-2\nSHIPIT_FAILED_RELEASE={target}\n\
             SHIPIT_FAILED_STAGE=staging\nSHIPIT_FAILED_STEP=smoke_test\n"
        ),
        "{}",
        text(&o)
    );
}
