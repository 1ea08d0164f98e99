//! Table tests of `deploy.yml` validation: the SPEC example, the example
//! file, defaults, and every error with its message and position.

use super::*;

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

fn ctx() -> ParseContext {
    ParseContext {
        cwd: PathBuf::from(MANIFEST_DIR),
        home: Some(PathBuf::from("/home/me")),
    }
}

/// Parses `text` as `deploy.yml` in the crate root, where
/// `templates/app.env.tera` exists.
fn parse_ok(text: &str) -> Config {
    match parse_with(text, Path::new("deploy.yml"), &ctx()) {
        Ok(config) => config,
        Err(e) => panic!("{e}"),
    }
}

const DEFAULT_STAGES: &[&str] = &[
    "stages:",
    "  s:",
    "    hosts:",
    "      - { host: a, roles: [app] }",
];

/// `lines` first, so that their line numbers are the file's, then whatever
/// required top-level key they do not set.
fn full(lines: &[&str]) -> String {
    let mut out: Vec<&str> = lines.to_vec();
    let keys: Vec<&str> = lines
        .iter()
        .filter(|l| !l.starts_with(' '))
        .map(|l| l.split(':').next().unwrap_or_default())
        .collect();
    for (key, line) in [
        ("application", "application: shop"),
        ("repository", "repository: git@github.com:acme/shop.git"),
        ("deploy_to", "deploy_to: /var/www/shop"),
    ] {
        if !keys.contains(&key) {
            out.push(line);
        }
    }
    if !keys.contains(&"stages") {
        out.extend_from_slice(DEFAULT_STAGES);
    }
    out.join("\n") + "\n"
}

type Case = (
    &'static str,
    &'static [&'static str],
    &'static str,
    Option<(usize, usize)>,
);

#[rustfmt::skip]
const ERROR_CASES: &[Case] = &[
        ("secrets_file_absolute", &["secrets: { file: \"/etc/{{ stage }}.age\" }"], "absolute path `/etc/s.age` in `secrets.file`, expected a path relative to the project", Some((1, 18))),
        ("secrets_file_dot_dot", &["secrets: { file: \"../{{ stage }}.age\" }"], "path `../s.age` in `secrets.file` leaves the project through `..`", Some((1, 18))),
        ("secrets_file_other_tera", &["secrets: { file: \"{{ host }}.age\" }"], "`secrets.file` `{{ host }}.age` may use `{{ stage }}` and nothing else of Tera", Some((1, 18))),
        ("secrets_file_is_recipients", &["secrets: { file: x.recipients }"], "`secrets.file` `x.recipients` ends in `.recipients`, the name of the list of its recipients beside it", Some((1, 18))),
        ("secrets_unknown_key", &["secrets: { file: x.age, key: y }"], "unknown key `key` in `secrets`, expected `file`", Some((1, 25))),
        ("unknown_key_in_ssh", &["ssh:", "  user: deploy", "  colour: red"], "unknown key `colour` in `ssh`, expected one of `user`, `port`, `identity_file`, `proxy_jump`, `config_file`, `connect_timeout`, `host_key_checking`", Some((3, 3))),
        ("unknown_top_level_key", &["colour: red"], "unknown key `colour`, expected one of `application`, `repository`, `branch`, `deploy_to`, `current_path`, `keep_releases`, `strategy`, `repo_tree`, `linked_files`, `linked_dirs`, `seed_linked_dirs`, `submodules`, `ssh`, `vars`, `env`, `templates`, `tasks`, `secrets`, `stages`", Some((1, 1))),
        ("unknown_key_in_host", &["stages:", "  s:", "    hosts:", "      - { host: a, colour: red }"], "unknown key `colour` in `stages.s.hosts[0]`, expected one of `host`, `roles`, `transport`, `deploy_to`, `user`, `port`, `vars`, `env`", Some((4, 20))),
        ("unknown_key_in_gate", &["stages:", "  s:", "    gate: { aprovals: 1 }", "    hosts: [{ host: a }]"], "unknown key `aprovals` in `stages.s.gate`, expected one of `approvals`, `soak`, `approvers`, `self_approval`, `approval_ttl`, `allowed_signers`", Some((3, 13))),
        ("wrong_type", &["keep_releases: five"], "invalid value for `keep_releases`: `five`, expected a whole number of 0 or more", Some((1, 16))),
        ("negative_count", &["stages:", "  s:", "    max_failures: -1", "    hosts: [{ host: a }]"], "invalid value for `stages.s.max_failures`: `-1`, expected a whole number of 0 or more", Some((3, 19))),
        ("unknown_strategy", &["strategy: svn"], "unknown value `svn` for `strategy`, expected `git` or `copy`", Some((1, 11))),
        ("unknown_host_key_checking", &["ssh: { host_key_checking: yes }"], "unknown value `yes` for `ssh.host_key_checking`, expected `strict` or `accept-new`", Some((1, 27))),
        ("unknown_transport", &["stages:", "  s:", "    hosts: [{ host: a, transport: telnet }]"], "unknown value `telnet` for `stages.s.hosts[0].transport`, expected `ssh` or `local`", Some((3, 35))),
        ("port_too_big", &["ssh: { port: 70000 }"], "invalid value for `ssh.port`: `70000`, expected a port number from 1 to 65535", Some((1, 14))),
        ("list_expected", &["linked_files: .env"], "invalid type for `linked_files`: `.env`, expected a list", Some((1, 15))),
        ("mapping_expected", &["ssh: deploy"], "invalid type for `ssh`: `deploy`, expected a mapping", Some((1, 6))),
        ("duration_of_wrong_type", &["ssh: { connect_timeout: 1.5 }"], "invalid type for `ssh.connect_timeout`: floating point `1.5`, expected a duration like `30s`", Some((1, 25))),
        ("missing_run", &["tasks:", "  build: { after: fetch }"], "task `build` has no `run`, expected the command it runs", Some((2, 3))),
        ("missing_host", &["stages:", "  s:", "    hosts:", "      - { roles: [app] }"], "missing key `host` in `stages.s.hosts[0]`", Some((4, 9))),
        ("duplicate_task", &["tasks:", "  a: { after: fetch, run: x }", "  a: { after: fetch, run: y }"], "duplicate key `a` in `tasks`", Some((3, 3))),
        ("duplicate_stage", &["stages:", "  s:", "    hosts: [{ host: a }]", "  s:", "    hosts: [{ host: b }]"], "duplicate key `s` in `stages`", Some((4, 3))),
        ("duplicate_var", &["vars: { a: 1, a: 2 }"], "duplicate key `a` in `vars`", Some((1, 15))),
        ("duplicate_host_var", &["stages:", "  s:", "    hosts:", "      - host: a", "        vars:", "          x: 1", "          x: 2"], "duplicate key `x` in `stages.s.hosts[0].vars`", Some((7, 11))),
        ("duplicate_ssh_key", &["ssh:", "  user: a", "  user: b"], "duplicate key `user` in `ssh`", Some((3, 3))),
        ("unknown_key_in_spaced_stage", &["stages:", r#"  "pro d":"#, "    hosts: [{ host: a, colour: red }]"], "unknown key `colour` in `stages.pro d.hosts[0]`, expected one of `host`, `roles`, `transport`, `deploy_to`, `user`, `port`, `vars`, `env`", Some((3, 24))),
        ("control_in_unknown_key", &[r#""a\eb": 1"#], r#"unknown key `a\u{1b}b`, expected one of `application`, `repository`, `branch`, `deploy_to`, `current_path`, `keep_releases`, `strategy`, `repo_tree`, `linked_files`, `linked_dirs`, `seed_linked_dirs`, `submodules`, `ssh`, `vars`, `env`, `templates`, `tasks`, `secrets`, `stages`"#, Some((1, 1))),
        ("too_deep", &["vars: { a: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]] }"], "config too large: lists and mappings nested more than 32 deep", Some((1, 42))),
        ("duplicate_top_level_key", &["keep_releases: 3", "keep_releases: 4"], "duplicate key `keep_releases`", Some((2, 1))),
        ("yaml_syntax", &["ssh:", "  user: deploy", " port: 22"], "invalid YAML: while parsing a block mapping, did not find expected key", Some((3, 2))),
        ("empty_application", &[r#"application: """#], "empty `application`, expected a name like `shop`", Some((1, 14))),
        ("bad_application", &[r#"application: "my shop""#], "invalid application name `my shop`, expected letters, digits, `.`, `_` or `-`", Some((1, 14))),
        ("dots_application", &[r#"application: "..""#], "invalid application name `..`, expected letters, digits, `.`, `_` or `-`", Some((1, 14))),
        ("empty_repository", &[r#"repository: """#], "empty `repository`, expected a git URL or a local path", Some((1, 13))),
        ("option_repository", &["repository: --upload-pack=touch"], "invalid repository `--upload-pack=touch`: begins with `-`", Some((1, 13))),
        ("empty_branch", &[r#"branch: """#], "invalid branch ``: is empty, expected a branch, tag or commit like `main`", Some((1, 9))),
        ("option_branch", &["branch: -x"], "invalid branch `-x`: begins with `-`, expected a branch, tag or commit like `main`", Some((1, 9))),
        ("spaced_branch", &[r#"branch: "a b""#], "invalid branch `a b`: contains whitespace, expected a branch, tag or commit like `main`", Some((1, 9))),
        ("control_branch", &[r#"branch: "a\eb""#], r#"invalid branch `a\u{1b}b`: contains a control character, expected a branch, tag or commit like `main`"#, Some((1, 9))),
        ("zero_keep_releases", &["keep_releases: 0"], "`keep_releases` is 0, expected at least 1", Some((1, 16))),
        ("absolute_linked_file", &["linked_files: [.env, /etc/passwd]"], "absolute path `/etc/passwd` in `linked_files`, expected a path relative to the release", Some((1, 22))),
        ("dotdot_repo_tree", &["repo_tree: services/../../x"], "path `services/../../x` in `repo_tree` leaves the repository through `..`", Some((1, 12))),
        ("absolute_repo_tree", &["repo_tree: /srv"], "absolute path `/srv` in `repo_tree`, expected a path relative to the repository", Some((1, 12))),
        ("dotdot_linked_dir", &["linked_dirs:", "  - log", "  - ../../etc"], "path `../../etc` in `linked_dirs` leaves the release through `..`", Some((3, 5))),
        ("empty_linked_dir", &[r#"linked_dirs: [log, ""]"#], "empty path in `linked_dirs`, expected a path relative to the release", Some((1, 20))),
        ("dot_linked_dir", &["linked_dirs: [./]"], "empty path in `linked_dirs`, expected a path relative to the release", Some((1, 15))),
        ("control_linked_file", &[r#"linked_files: ["a\nb"]"#], r#"path `a\nb` in `linked_files` contains a control character"#, Some((1, 16))),
        ("duplicate_linked_dir", &["linked_dirs: [log, ./log/]"], "duplicate path `log` in `linked_dirs`", Some((1, 20))),
        ("linked_file_and_dir", &["linked_files: [log]", "linked_dirs: [tmp, log]"], "`log` is in both `linked_files` and `linked_dirs`", Some((2, 20))),
        ("nested_linked_dirs", &["linked_dirs:", "  - storage/logs", "  - tmp", "  - storage"], "`storage/logs` in `linked_dirs` is inside the linked dir `storage`, which links it already; list only `storage`", Some((2, 5))),
        ("linked_file_in_linked_dir", &["linked_files: [config/app.env]", "linked_dirs: [config]"], "`config/app.env` in `linked_files` is inside the linked dir `config`, which links it already; list only `config`", Some((1, 16))),
        ("linked_dir_in_linked_file", &["linked_files: [data]", "linked_dirs: [data/x]"], "`data/x` in `linked_dirs` is inside the linked file `data`, which links it already; list only `data`", Some((2, 15))),
        ("slash_current_path", &["current_path: www/html"], "invalid current_path `www/html`: expected a plain name of letters, digits, `.`, `_` or `-` like `public_html`, not starting with `.` or `-`", Some((1, 15))),
        ("dot_current_path", &["current_path: .."], "invalid current_path `..`: expected a plain name of letters, digits, `.`, `_` or `-` like `public_html`, not starting with `.` or `-`", Some((1, 15))),
        ("empty_current_path", &["current_path: \"\""], "invalid current_path ``: expected a plain name of letters, digits, `.`, `_` or `-` like `public_html`, not starting with `.` or `-`", Some((1, 15))),
        ("reserved_current_path", &["current_path: releases"], "invalid current_path `releases`: that is shipit's own entry in `deploy_to`", Some((1, 15))),
        ("template_over_current_path", &["current_path: public_html", "templates:", "  - { src: templates/app.env.tera, dest: public_html/.env }"], "template `dest` `public_html/.env` would overwrite shipit's own `public_html` (the `current_path` link), expected a path under `shared/`", Some((3, 42))),
        ("zero_ssh_port", &["ssh: { port: 0 }"], "port 0 for `ssh.port`, expected 1 to 65535", Some((1, 14))),
        ("option_ssh_user", &[r#"ssh: { user: "-oProxyCommand=x" }"#], "invalid `ssh.user` `-oProxyCommand=x`: begins with `-`", Some((1, 14))),
        ("hostile_proxy_jump", &[r#"ssh: { proxy_jump: "bastion;id" }"#], "invalid `ssh.proxy_jump` `bastion;id`: contains `;`", Some((1, 20))),
        ("bad_connect_timeout", &["ssh: { connect_timeout: 10x }"], "invalid duration `10x` for `ssh.connect_timeout`, expected a number followed by ms, s, m, h or d like `30s`", Some((1, 25))),
        ("negative_connect_timeout", &["ssh:", "  connect_timeout: -1s"], "invalid duration `-1s` for `ssh.connect_timeout`, expected a number followed by ms, s, m, h or d like `30s`", Some((2, 20))),
        ("empty_connect_timeout", &[r#"ssh: { connect_timeout: "" }"#], "invalid duration `` for `ssh.connect_timeout`, expected a number followed by ms, s, m, h or d like `30s`", Some((1, 25))),
        ("zero_connect_timeout", &["ssh: { connect_timeout: 0s }"], "`ssh.connect_timeout` is 0, expected a duration like `10s`", Some((1, 25))),
        ("option_identity_file", &["ssh: { identity_file: -x }"], "invalid `ssh.identity_file` `-x`: begins with `-`", Some((1, 23))),
        ("bad_var_name", &["vars:", "  port: 8080", "  my-var: 1"], "invalid var name `my-var`, expected letters, digits and `_`, not starting with a digit", Some((3, 3))),
        ("bad_host_var_name", &["stages:", "  s:", "    hosts:", "      - { host: a, vars: { 2fast: 1 } }"], "invalid var name `2fast`, expected letters, digits and `_`, not starting with a digit", Some((4, 28))),
        ("bad_env_name", &["env:", "  PORT: 8080", "  my-var: 1"], "invalid environment variable name `my-var`, expected letters, digits and `_`, not starting with a digit", Some((3, 3))),
        ("reserved_env_name", &["stages:", "  s:", "    env: { SHIPIT_STAGE: x }", "    hosts: [{ host: a }]"], "environment variable `SHIPIT_STAGE` is reserved, shipit sets the `SHIPIT_` ones", Some((3, 12))),
        ("list_env_value", &["stages:", "  s:", "    hosts:", "      - { host: a, env: { A: [1] } }"], "invalid value for environment variable `A`, expected a string, number or boolean", Some((4, 30))),
        ("absolute_template_dest", &["templates:", "  - { src: templates/app.env.tera, dest: /etc/app.env }"], "absolute path `/etc/app.env` in template `dest`, expected a path relative to `deploy_to`", Some((2, 42))),
        ("escaping_template_dest", &["templates:", "  - { src: templates/app.env.tera, dest: shared/../../x }"], "path `shared/../../x` in template `dest` leaves `deploy_to` through `..`", Some((2, 42))),
        ("reserved_template_dest", &["templates:", "  - { src: templates/app.env.tera, dest: current/app.env }"], "template `dest` `current/app.env` would overwrite shipit's own `current`, expected a path under `shared/`", Some((2, 42))),
        ("ledger_template_dest", &["templates:", "  - { src: templates/app.env.tera, dest: .shipit/ledger.jsonl }"], "template `dest` `.shipit/ledger.jsonl` would overwrite shipit's own `.shipit`, expected a path under `shared/`", Some((2, 42))),
        ("duplicate_template_dest", &["templates:", "  - { src: templates/app.env.tera, dest: shared/.env }", "  - { src: templates/app.env.tera, dest: ./shared/.env }"], "duplicate template `dest` `shared/.env`", Some((3, 42))),
        ("missing_template_src", &["templates:", "  - { src: templates/nope.tera, dest: shared/.env }"], "template `templates/nope.tera` not found (looked for `{base}/templates/nope.tera`)", Some((2, 12))),
        ("directory_template_src", &["templates:", "  - { src: templates, dest: shared/.env }"], "template `templates` is a directory, not a file (looked for `{base}/templates`)", Some((2, 12))),
        ("escaping_template_src", &["templates:", "  - { src: ../x.tera, dest: shared/.env }"], "path `../x.tera` in template `src` leaves the config file's directory through `..`", Some((2, 12))),
        ("absolute_template_src", &["templates:", "  - { src: /etc/shadow, dest: shared/.env }"], "absolute path `/etc/shadow` in template `src`, expected a path relative to the config file's directory", Some((2, 12))),
        ("non_octal_mode", &["templates:", r#"  - { src: templates/app.env.tera, dest: shared/.env, mode: "0800" }"#], r#"invalid mode `0800` for template `shared/.env`, expected octal digits up to `7777` like `"0600"`"#, Some((2, 61))),
        ("too_big_mode", &["templates:", "  - { src: templates/app.env.tera, dest: shared/.env, mode: 17777 }"], r#"invalid mode `17777` for template `shared/.env`, expected octal digits up to `7777` like `"0600"`"#, Some((2, 61))),
        ("hex_mode", &["templates:", "  - { src: templates/app.env.tera, dest: shared/.env, mode: 0x1a4 }"], r#"invalid mode `0x1a4` for template `shared/.env`, expected octal digits up to `7777` like `"0600"`"#, Some((2, 61))),
        ("unknown_role_in_task", &["tasks:", "  migrate: { after: fetch, roles: [app, dbb], run: bin/migrate }"], "unknown role `dbb` in task `migrate`, no host has it", Some((2, 41))),
        ("bad_role_in_task", &["tasks:", r#"  migrate: { after: fetch, roles: ["d b"], run: bin/migrate }"#], "invalid role `d b` in task `migrate`, expected letters, digits, `_` or `-`", Some((2, 36))),
        ("task_named_failed", &["tasks:", "  failed: { after: fetch, run: x }"], "task `failed` has the name `after: failed` uses for failure hooks", Some((2, 3))),
        ("after_a_failure_hook", &["tasks:", "  alert: { after: failed, run: x }", "  more: { after: alert, run: y }"], "unknown step `alert` in `after` of task `more`, expected one of `lock`, `check`, `fetch`, `create_release`, `link_shared`, `render_templates`, `publish`, `restart`, `smoke_test`, `record`, `cleanup`, `failed`, `finished`", Some((3, 18))),
        ("unknown_after", &["tasks:", "  build: { after: linkshared, run: bin/build }", "  notify: { after: build, run: bin/notify }"], "unknown step `linkshared` in `after` of task `build`, expected one of `lock`, `check`, `fetch`, `create_release`, `link_shared`, `render_templates`, `publish`, `restart`, `smoke_test`, `record`, `cleanup`, `failed`, `finished`, `notify`", Some((2, 19))),
        ("after_unlock", &["tasks:", "  x: { after: unlock, run: y }"], "task `x` cannot run after `unlock`, the last step, expected an earlier step like `cleanup`", Some((2, 15))),
        ("no_after", &["tasks:", "  build: { run: bin/build }"], "task `build` has no `after`, expected the step it runs after, one of `lock`, `check`, `fetch`, `create_release`, `link_shared`, `render_templates`, `publish`, `restart`, `smoke_test`, `record`, `cleanup`, `failed`, `finished`", Some((2, 3))),
        ("after_on_restart", &["tasks:", "  restart:", "    after: publish", "    run: x"], "task `restart` takes no `after`, it gives the command of the built-in step `restart`", Some((3, 5))),
        ("after_on_smoke_test", &["tasks:", "  smoke_test: { run: x, after: restart }"], "task `smoke_test` takes no `after`, it gives the command of the built-in step `smoke_test`", Some((2, 25))),
        ("cycle", &["tasks:", "  a: { after: b, run: x }", "  b: { after: c, run: x }", "  c: { after: a, run: x }"], "tasks form a cycle: `a -> b -> c -> a`", Some((2, 15))),
        ("self_cycle", &["tasks:", "  a: { after: a, run: x }"], "tasks form a cycle: `a -> a`", Some((2, 15))),
        ("cycle_behind_a_tail", &["tasks:", "  x: { after: b, run: x }", "  b: { after: c, run: x }", "  c: { after: b, run: x }"], "tasks form a cycle: `b -> c -> b`", Some((3, 15))),
        ("builtin_task_name", &["tasks:", "  publish: { after: fetch, run: x }"], "task `publish` has the name of a built-in step, only `restart` and `smoke_test` may be given as tasks", Some((2, 3))),
        ("bad_task_name", &["tasks:", r#"  "my task": { after: fetch, run: x }"#], "invalid task name `my task`, expected letters, digits, `_` or `-`", Some((2, 3))),
        ("empty_run", &["tasks:", r#"  build: { after: fetch, run: "  " }"#], "empty `run` in task `build`", Some((2, 31))),
        ("bad_interval", &["tasks:", "  build: { after: fetch, run: x, interval: 2x }"], "invalid duration `2x` for `tasks.build.interval`, expected a number followed by ms, s, m, h or d like `30s`", Some((2, 44))),
        ("zero_timeout", &["tasks:", "  build: { after: fetch, run: x, timeout: 0 }"], "`tasks.build.timeout` is 0, expected a duration like `60s`", Some((2, 43))),
        ("smoke_test_without_run_or_http", &["tasks:", "  smoke_test: { retries: 3 }"], "task `smoke_test` has no `run` or `http`, expected a command or a URL to check", Some((2, 3))),
        ("http_on_another_task", &["tasks:", "  build: { after: fetch, http: \"http://a/\" }"], "`http` in task `build`: only `smoke_test` may be an HTTP check", Some((2, 26))),
        ("http_and_run", &["tasks:", "  smoke_test: { run: x, http: \"http://a/\" }"], "task `smoke_test` has both `run` and `http`, expected one of them", Some((2, 17))),
        ("local_http", &["tasks:", "  smoke_test: { local: true, http: \"http://a/\" }"], "task `smoke_test` is an HTTP check, which always runs on the machine running shipit: `local` does not apply", Some((2, 17))),
        ("https_check", &["tasks:", "  smoke_test: { http: \"https://{{ host }}/up\" }"], "invalid `http` URL `https://{{ host }}/up` in task `smoke_test`: https is not supported (check the host's plain HTTP port, as a load balancer's health check does)", Some((2, 23))),
        ("not_a_url", &["tasks:", "  smoke_test: { http: \"{{ host }}:8080/up\" }"], "invalid `http` URL `{{ host }}:8080/up` in task `smoke_test`: expected a URL like `http://{{ host }}:8080/up`", Some((2, 23))),
        ("bad_expect", &["tasks:", "  smoke_test: { http: \"http://a/\", expect: 42 }"], "invalid `expect` 42 in task `smoke_test`, expected an HTTP status code like 200", Some((2, 44))),
        ("expect_without_http", &["tasks:", "  smoke_test: { run: x, expect: 200 }"], "`expect` in task `smoke_test` needs `http:`", Some((2, 25))),
        ("lb_task_name", &["tasks:", "  drain: { after: fetch, run: x }"], "task `drain` has the name of the load balancer's step, expected another name", Some((2, 3))),
        ("lb_empty_drain", &["stages:", "  s:", "    load_balancer: { drain: { run: \"\" }, undrain: { run: x } }", "    hosts: [{ host: a }]"], "empty `run` in `load_balancer.drain` of stage `s`", Some((3, 36))),
        ("lb_no_undrain", &["stages:", "  s:", "    load_balancer: { drain: { run: x } }", "    hosts: [{ host: a }]"], "missing key `undrain` in `stages.s.load_balancer`", Some((3, 20))),
        ("lb_bad_wait", &["stages:", "  s:", "    load_balancer: { drain: { run: x }, undrain: { run: x }, wait: soon }", "    hosts: [{ host: a }]"], "invalid duration `soon` for `stages.s.load_balancer.wait`, expected a number followed by ms, s, m, h or d like `30s`", Some((3, 68))),
        ("lb_zero_timeout", &["stages:", "  s:", "    load_balancer: { drain: { run: x, timeout: 0s }, undrain: { run: x } }", "    hosts: [{ host: a }]"], "`stages.s.load_balancer.drain.timeout` is 0, expected a duration like `60s`", Some((3, 48))),
        ("lb_unknown_key", &["stages:", "  s:", "    load_balancer: { drain: { run: x }, undrain: { run: x }, weight: 0 }", "    hosts: [{ host: a }]"], "unknown key `weight` in `stages.s.load_balancer`, expected one of `drain`, `undrain`, `wait`, `roles`", Some((3, 62))),
        ("lb_unknown_role", &["stages:", "  s:", "    load_balancer: { drain: { run: x }, undrain: { run: x }, roles: [web] }", "    hosts: [{ host: a, roles: [app] }]"], "unknown role `web` in `load_balancer` of stage `s`, no host of the stage has it", Some((3, 70))),
        ("bad_stage_name", &["stages:", r#"  "pro d":"#, "    hosts: [{ host: a }]"], "invalid stage name `pro d`, expected letters, digits, `_` or `-`", Some((2, 3))),
        ("empty_hosts", &["stages:", "  s:", "    hosts: []"], "stage `s` has no hosts", Some((3, 5))),
        ("no_hosts_key", &["stages:", "  s:", "    max_failures: 1"], "stage `s` has no hosts", Some((2, 3))),
        ("unknown_promote_from", &["stages:", "  s:", "    hosts: [{ host: a }]", "  p:", "    promote_from: stagin", "    hosts: [{ host: b }]"], "unknown stage `stagin` in `promote_from` of stage `p`, expected one of `s`", Some((5, 19))),
        ("self_promote_from", &["stages:", "  p:", "    promote_from: p", "    hosts: [{ host: b }]"], "stage `p` cannot promote from itself", Some((3, 19))),
        ("zero_batch", &["stages:", "  s:", "    rollout: { batch: 0 }", "    hosts: [{ host: a }]"], "invalid batch `0` in stage `s`, expected a host count of at least 1 or a percentage from 1% to 100% like `25%`", Some((3, 23))),
        ("zero_percent_batch", &["stages:", "  s:", "    rollout: { batch: 0% }", "    hosts: [{ host: a }]"], "invalid batch `0%` in stage `s`, expected a host count of at least 1 or a percentage from 1% to 100% like `25%`", Some((3, 23))),
        ("over_percent_batch", &["stages:", "  s:", "    rollout:", "      batch: 101%", "    hosts: [{ host: a }]"], "invalid batch `101%` in stage `s`, expected a host count of at least 1 or a percentage from 1% to 100% like `25%`", Some((4, 14))),
        ("word_batch", &["stages:", "  s:", "    rollout: { batch: half }", "    hosts: [{ host: a }]"], "invalid batch `half` in stage `s`, expected a host count of at least 1 or a percentage from 1% to 100% like `25%`", Some((3, 23))),
        ("big_canary", &["stages:", "  s:", "    rollout: { canary: 2 }", "    hosts: [{ host: a }]"], "canary of 2 hosts in stage `s`, which has only 1 host", Some((3, 24))),
        ("bad_soak", &["stages:", "  s:", "    gate: { approvals: 1, soak: 30 min }", "    hosts: [{ host: a }]"], "invalid duration `30 min` for `stages.s.gate.soak`, expected a number followed by ms, s, m, h or d like `30s`", Some((3, 33))),
        ("bad_approval_ttl", &["stages:", "  s:", "    gate: { approval_ttl: -1s }", "    hosts: [{ host: a }]"], "invalid duration `-1s` for `stages.s.gate.approval_ttl`, expected a number followed by ms, s, m, h or d like `30s`", Some((3, 27))),
        ("empty_approver", &["stages:", "  s:", r#"    gate: { approvers: [alice, ""] }"#, "    hosts: [{ host: a }]"], "empty approver name in the gate of stage `s`", Some((3, 32))),
        ("too_few_approvers", &["stages:", "  s:", "    gate: { approvals: 3, approvers: [alice, bob] }", "    hosts: [{ host: a }]"], "gate of stage `s` needs 3 approvals but names only 2 approvers", Some((3, 24))),
        ("relative_allowed_signers", &["stages:", "  s:", "    gate: { allowed_signers: signers }", "    hosts: [{ host: a }]"], "invalid allowed_signers `signers` in stage `s`, expected an absolute path on the target hosts", Some((3, 30))),
        ("duplicate_host", &["stages:", "  s:", "    hosts:", r#"      - { host: "web-[1:3]" }"#, "      - { host: web-2 }"], "duplicate host `web-2` in stage `s`", Some((5, 17))),
        ("duplicate_in_range", &["stages:", "  s:", "    hosts:", "      - host: web-1", "      - host: web-[1:2]"], "duplicate host `web-1` in stage `s`", Some((5, 15))),
        ("reversed_range", &["stages:", "  s:", "    hosts:", r#"      - { host: "web-[5:1]" }"#], "invalid host range `web-[5:1]` in stage `s`: start `5` is greater than end `1`", Some((4, 17))),
        ("letter_range", &["stages:", "  s:", "    hosts:", r#"      - { host: "web-[a:b]" }"#], "invalid host range `web-[a:b]` in stage `s`: expected `[start:end]` with numbers like `[01:12]`", Some((4, 17))),
        ("unclosed_range", &["stages:", "  s:", "    hosts:", r#"      - { host: "web-[1:3" }"#], "invalid host range `web-[1:3` in stage `s`: `[` is not closed", Some((4, 17))),
        ("option_host", &["stages:", "  s:", "    hosts:", r#"      - { host: "-oProxyCommand=touch x" }"#], "invalid host `-oProxyCommand=touch x` in stage `s`: begins with `-`", Some((4, 17))),
        ("semicolon_host", &["stages:", "  s:", "    hosts:", r#"      - { host: "a;reboot" }"#], "invalid host `a;reboot` in stage `s`: contains `;`", Some((4, 17))),
        ("space_host", &["stages:", "  s:", "    hosts:", r#"      - { host: "web 1" }"#], "invalid host `web 1` in stage `s`: contains whitespace", Some((4, 17))),
        ("dollar_host", &["stages:", "  s:", "    hosts:", "      - { host: 'a$(id)' }"], "invalid host `a$(id)` in stage `s`: contains `$`", Some((4, 17))),
        ("backtick_host", &["stages:", "  s:", "    hosts:", "      - { host: 'a`id`' }"], "invalid host `a`id`` in stage `s`: contains ```", Some((4, 17))),
        ("quote_host", &["stages:", "  s:", "    hosts:", r#"      - { host: 'a"b' }"#], r#"invalid host `a"b` in stage `s`: contains `"`"#, Some((4, 17))),
        ("pipe_host", &["stages:", "  s:", "    hosts:", "      - { host: 'a|b' }"], "invalid host `a|b` in stage `s`: contains `|`", Some((4, 17))),
        ("amp_host", &["stages:", "  s:", "    hosts:", "      - { host: 'a&b' }"], "invalid host `a&b` in stage `s`: contains `&`", Some((4, 17))),
        ("control_host", &["stages:", "  s:", "    hosts:", r#"      - { host: "a\eb" }"#], r#"invalid host `a\u{1b}b` in stage `s`: contains a control character"#, Some((4, 17))),
        ("empty_host", &["stages:", "  s:", "    hosts:", r#"      - { host: "" }"#], "invalid host `` in stage `s`: is empty", Some((4, 17))),
        ("bad_host_role", &["stages:", "  s:", "    hosts:", r#"      - { host: a, roles: [app, "d b"] }"#], "invalid role `d b` in stage `s`, expected letters, digits, `_` or `-`", Some((4, 33))),
        ("zero_host_port", &["stages:", "  s:", "    hosts:", "      - { host: a, port: 0 }"], "port 0 for host `a` in stage `s`, expected 1 to 65535", Some((4, 26))),
        ("hostile_host_user", &["stages:", "  s:", "    hosts:", "      - { host: a, user: 'x y' }"], "invalid `user` `x y` of host `a` in stage `s`: contains whitespace", Some((4, 26))),
        ("no_deploy_to", &["deploy_to: ~"], "host `a` in stage `s` has no `deploy_to`, set it on the host or globally", Some((7, 9))),
        ("relative_ssh_deploy_to", &["stages:", "  s:", "    hosts:", "      - { host: a, deploy_to: var/www }"], "invalid deploy_to `var/www` for host `a` in stage `s`: is relative, expected an absolute path or one under the login home (`~/app`) for an ssh host", Some((4, 31))),
        ("relative_global_deploy_to", &["deploy_to: ./www"], "invalid deploy_to `./www` for host `a` in stage `s`: is relative, expected an absolute path or one under the login home (`~/app`) for an ssh host", Some((1, 12))),
        ("dotdot_ssh_deploy_to", &["stages:", "  s:", "    hosts:", "      - { host: a, deploy_to: /var/www/../../etc }"], "invalid deploy_to `/var/www/../../etc` for host `a` in stage `s`: contains `..`", Some((4, 31))),
        ("home_deploy_to", &["deploy_to: \"~/\""], "invalid deploy_to `~/` for host `a` in stage `s`: is the login home itself, expected a directory of its own (`~/app`)", Some((1, 12))),
        ("root_deploy_to", &["deploy_to: /./"], "invalid deploy_to `/./` for host `a` in stage `s`: is `/`, expected a directory of its own", Some((1, 12))),
        ("root_local_deploy_to", &["stages:", "  s:", "    hosts:", "      - { host: localhost, transport: local, deploy_to: ../../../../../../../../.. }"], "invalid deploy_to `../../../../../../../../..` for host `localhost` in stage `s`: is `/`, expected a directory of its own", Some((4, 57))),
];

#[test]
fn each_error_names_the_key_and_its_position() {
    let mut failures = Vec::new();
    for (name, lines, want_message, want_at) in ERROR_CASES {
        let text = full(lines);
        let want_message = want_message.replace("{base}", MANIFEST_DIR);
        match parse_with(&text, Path::new("deploy.yml"), &ctx()) {
            Ok(_) => failures.push(format!("{name}: parsed, expected `{want_message}`")),
            Err(e) => {
                let got_at = e.line().zip(e.column());
                if e.message() != want_message || got_at != *want_at {
                    failures.push(format!(
                        "{name}:\n   got {:?} at {got_at:?}\n  want {want_message:?} at {want_at:?}",
                        e.message()
                    ));
                }
                // The location, when known, is in the display too.
                let shown = e.to_string();
                let suffix = match got_at {
                    Some((l, c)) => format!(" (deploy.yml:{l}:{c})"),
                    None => " (deploy.yml)".to_string(),
                };
                assert_eq!(shown, format!("{}{suffix}", e.message()), "{name}");
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        ERROR_CASES.len(),
        failures.join("\n")
    );
}

/// The example of SPEC.md's deploy.yml section, verbatim.
const SPEC_EXAMPLE: &str = r#"application: shop
repository: git@github.com:acme/shop.git   # URL or local path
branch: main
deploy_to: /var/www/shop
keep_releases: 5
strategy: git            # git: each host keeps a mirror and exports the commit
                         # copy: shipit exports the commit once, uploads the archive
linked_files: [.env, config/database.yml]
linked_dirs: [log, tmp/pids, public/uploads]
ssh: { user: deploy, port: 22, identity_file: ~/.ssh/deploy, proxy_jump: bastion.acme.com,
       config_file: ~/.ssh/config,                         # passed to ssh as -F
       connect_timeout: 10s, host_key_checking: strict }   # strict | accept-new
vars: { port: 8080 }     # for templates and commands
templates:               # rendered per host, uploaded before publish
  - { src: templates/app.env.tera, dest: shared/.env, mode: "0600" }
tasks:                   # user steps hooked into the graph
  build:      { after: link_shared, roles: [app], run: "bin/build" }
  migrate:    { after: build, roles: [db], once: true, run: "bin/migrate" }
  notify:     { after: smoke_test, local: true, run: "bin/notify-chat" }   # on the machine running shipit
  restart:    { roles: [app], run: "sudo systemctl restart shop" }
  smoke_test: { roles: [app], run: "curl -fsS localhost:{{ port }}/up",
                retries: 10, interval: 2s, timeout: 60s }
stages:
  staging:
    hosts:
      - { host: stg-1.acme.internal, roles: [app, db] }
  production:
    promote_from: staging
    gate: { approvals: 1, soak: 30m, approvers: [alice, bob], self_approval: false }
    rollout: { batch: 25%, canary: 1 }    # first one host, then 25% at a time
    max_failures: 0                        # hosts that may fail before the run aborts
    hosts:
      - { host: "web-[01:12].acme.internal", roles: [app] }
      - { host: db-1.acme.internal, roles: [db], deploy_to: /srv/shop }
  demo:                                    # runs on this machine, no servers needed
    hosts:
      - { host: localhost, transport: local, deploy_to: ./.shipit-demo }
"#;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_spec_example_parses() {
    let c = parse_ok(SPEC_EXAMPLE);
    let base = PathBuf::from(MANIFEST_DIR);
    assert_eq!(c.path, PathBuf::from("deploy.yml"));
    assert_eq!(c.base_dir, base);
    assert_eq!(c.application, "shop");
    assert_eq!(c.repository, "git@github.com:acme/shop.git");
    assert_eq!(c.branch, "main");
    assert_eq!(c.keep_releases, 5);
    assert_eq!(c.strategy, Strategy::Git);
    assert_eq!(
        c.linked_files,
        [
            RelPath(".env".into()),
            RelPath("config/database.yml".into())
        ]
    );
    assert_eq!(
        c.linked_dirs,
        [
            RelPath("log".into()),
            RelPath("tmp/pids".into()),
            RelPath("public/uploads".into())
        ]
    );
    assert_eq!(
        c.ssh,
        SshSettings {
            user: Some("deploy".into()),
            port: Some(22),
            identity_file: Some("/home/me/.ssh/deploy".into()),
            proxy_jump: Some("bastion.acme.com".into()),
            config_file: Some("/home/me/.ssh/config".into()),
            connect_timeout: secs(10),
            host_key_checking: HostKeyChecking::Strict,
        }
    );
    assert_eq!(
        c.vars,
        BTreeMap::from([("port".to_string(), serde_json::json!(8080))])
    );
    assert_eq!(
        c.templates,
        [Template {
            src: "templates/app.env.tera".into(),
            src_path: base.join("templates/app.env.tera"),
            dest: RelPath("shared/.env".into()),
            mode: 0o600,
        }]
    );

    let names: Vec<&str> = c.tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        ["build", "migrate", "notify", "restart", "smoke_test"]
    );
    let migrate = c.task("migrate").unwrap();
    assert_eq!(migrate.after.as_deref(), Some("build"));
    assert_eq!(migrate.roles, ["db"]);
    assert!(migrate.once && !migrate.local);
    let notify = c.task("notify").unwrap();
    assert_eq!(notify.after.as_deref(), Some("smoke_test"));
    assert!(notify.local && notify.roles.is_empty());
    assert_eq!(c.task("restart").unwrap().after, None);
    assert_eq!(
        *c.task("smoke_test").unwrap(),
        Task {
            name: "smoke_test".into(),
            after: None,
            roles: strings(&["app"]),
            once: false,
            local: false,
            run: "curl -fsS localhost:{{ port }}/up".into(),
            retries: 10,
            interval: secs(2),
            timeout: Some(secs(60)),
            http: None,
        }
    );
    let build = c.task("build").unwrap();
    assert_eq!(
        (build.retries, build.interval, build.timeout),
        (0, secs(1), None)
    );

    let names: Vec<&str> = c.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["staging", "production", "demo"]);
    let staging = c.stage("staging").unwrap();
    assert_eq!(
        (
            staging.rollout,
            staging.gate.as_ref(),
            staging.promote_from.as_ref()
        ),
        (Rollout::default(), None, None)
    );
    assert_eq!(staging.hosts[0].roles, ["app", "db"]);

    let prod = c.stage("production").unwrap();
    assert_eq!(prod.promote_from.as_deref(), Some("staging"));
    assert_eq!(
        prod.gate,
        Some(Gate {
            approvals: 1,
            soak: secs(30 * 60),
            approvers: strings(&["alice", "bob"]),
            self_approval: false,
            approval_ttl: secs(24 * 3600),
            allowed_signers: None,
        })
    );
    assert_eq!(
        prod.rollout,
        Rollout {
            batch: Batch::Percent(25),
            canary: 1
        }
    );
    assert_eq!(prod.max_failures, 0);
    let hosts: Vec<&str> = prod.hosts.iter().map(|h| h.name.as_str()).collect();
    let mut want: Vec<String> = (1..=12)
        .map(|n| format!("web-{n:02}.acme.internal"))
        .collect();
    want.push("db-1.acme.internal".into());
    assert_eq!(hosts, want);
    assert_eq!(hosts[0], "web-01.acme.internal");
    assert_eq!(hosts[11], "web-12.acme.internal");
    assert_eq!(
        prod.hosts[3],
        Host {
            name: "web-04.acme.internal".into(),
            roles: strings(&["app"]),
            transport: TransportKind::Ssh,
            deploy_to: "/var/www/shop".into(),
            user: Some("deploy".into()),
            port: Some(22),
            vars: c.vars.clone(),
            env: Vec::new(),
        }
    );
    assert_eq!(prod.hosts[12].deploy_to, "/srv/shop");
    assert_eq!(prod.hosts[12].roles, ["db"]);

    let demo = &c.stage("demo").unwrap().hosts[0];
    assert_eq!(demo.transport, TransportKind::Local);
    assert_eq!(demo.deploy_to, format!("{MANIFEST_DIR}/.shipit-demo"));
    assert!(demo.roles.is_empty());
}

#[test]
fn the_example_file_parses() {
    let text = include_str!("../../../deploy.example.yml");
    let path = PathBuf::from(MANIFEST_DIR).join("deploy.example.yml");
    let c = match parse(text, &path) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(c.application, "shipit-demo");
    assert_eq!(c.repository, MANIFEST_DIR);
    assert_eq!(c.branch, "HEAD");
    assert_eq!(
        c.templates[0].src_path,
        PathBuf::from(MANIFEST_DIR).join("templates/app.env.tera")
    );
    let demo = &c.stage("demo").unwrap().hosts[0];
    assert_eq!(demo.deploy_to, format!("{MANIFEST_DIR}/.shipit-demo"));
    assert_eq!(demo.transport, TransportKind::Local);
    let prod = c.stage("production").unwrap();
    assert_eq!(prod.hosts.len(), 5);
    assert_eq!(prod.hosts[3].name, "web-04.example.internal");
    assert_eq!(prod.hosts[4].deploy_to, "/srv/shipit-demo");
    // Merged from the staging host by `<<: *server`.
    assert_eq!(prod.hosts[4].roles, ["db"]);
    assert_eq!(prod.hosts[0].user.as_deref(), Some("deploy"));
    let smoke = c.task("smoke_test").unwrap();
    assert_eq!(
        (smoke.retries, smoke.interval, smoke.timeout),
        (2, secs(1), Some(secs(30)))
    );
}

#[test]
fn defaults_fill_what_is_not_written() {
    let text = "application: shop\nrepository: /srv/git/shop.git\nstages:\n  s:\n    hosts: [{ host: a, deploy_to: /srv/shop }]\n";
    let c = parse_ok(text);
    let want = Config {
        path: "deploy.yml".into(),
        base_dir: MANIFEST_DIR.into(),
        application: "shop".into(),
        repository: "/srv/git/shop.git".into(),
        branch: "main".into(),
        current_path: "current".into(),
        keep_releases: 5,
        strategy: Strategy::Git,
        repo_tree: None,
        linked_files: vec![],
        linked_dirs: vec![],
        seed_linked_dirs: false,
        submodules: false,
        ssh: SshSettings {
            user: None,
            port: None,
            identity_file: None,
            proxy_jump: None,
            config_file: None,
            connect_timeout: secs(10),
            host_key_checking: HostKeyChecking::Strict,
        },
        vars: BTreeMap::new(),
        templates: vec![],
        tasks: vec![],
        stages: vec![Stage {
            name: "s".into(),
            hosts: vec![Host {
                name: "a".into(),
                roles: vec![],
                transport: TransportKind::Ssh,
                deploy_to: "/srv/shop".into(),
                user: None,
                port: None,
                vars: BTreeMap::new(),
                env: Vec::new(),
            }],
            promote_from: None,
            gate: None,
            rollout: Rollout::default(),
            max_failures: 0,
            hosts_from: Vec::new(),
            from_inventory: Vec::new(),
            load_balancer: None,
        }],
        secrets: None,
        secret_values: Default::default(),
    };
    assert_eq!(c, want);

    let gate = parse_ok(&full(&[
        "stages:",
        "  s:",
        "    gate: {}",
        "    rollout: {}",
        "    hosts: [{ host: a }]",
    ]));
    let s = &gate.stages[0];
    assert_eq!(
        s.gate,
        Some(Gate {
            approvals: 0,
            soak: Duration::ZERO,
            approvers: vec![],
            self_approval: false,
            approval_ttl: secs(24 * 3600),
            allowed_signers: None,
        })
    );
    assert_eq!(s.rollout, Rollout::default());
    let t = parse_ok(&full(&[
        "templates: [{ src: templates/app.env.tera, dest: shared/app.env }]",
    ]));
    assert_eq!(t.templates[0].mode, 0o644);
}

#[test]
fn repository_paths_are_made_absolute() {
    let cases = [
        ("deploy.yml", ".", MANIFEST_DIR.to_string()),
        ("deploy.yml", "./", MANIFEST_DIR.to_string()),
        ("deploy.yml", "../shop", format!("{MANIFEST_DIR}/../shop")),
        ("conf/deploy.yml", ".", format!("{MANIFEST_DIR}/conf")),
        (
            "conf/deploy.yml",
            "./git/shop.git",
            format!("{MANIFEST_DIR}/conf/git/shop.git"),
        ),
        (
            "/etc/shipit/deploy.yml",
            "repo",
            "/etc/shipit/repo".to_string(),
        ),
        (
            "deploy.yml",
            "/srv/git/shop.git",
            "/srv/git/shop.git".to_string(),
        ),
        ("deploy.yml", "~/git/shop", "/home/me/git/shop".to_string()),
        (
            "deploy.yml",
            "git@github.com:acme/shop.git",
            "git@github.com:acme/shop.git".to_string(),
        ),
        (
            "deploy.yml",
            "https://github.com/acme/shop.git",
            "https://github.com/acme/shop.git".to_string(),
        ),
        (
            "deploy.yml",
            "file:///srv/git/shop.git",
            "file:///srv/git/shop.git".to_string(),
        ),
    ];
    for (file, repo, want) in cases {
        let text = full(&[&format!("repository: \"{repo}\"")]);
        let c = parse_with(&text, Path::new(file), &ctx()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.repository, want, "{file} {repo}");
    }
}

#[test]
fn values_are_read_as_written() {
    let c = parse_ok(&full(&[
        "strategy: copy",
        "ssh: { connect_timeout: 15, host_key_checking: accept-new, identity_file: keys/deploy }",
        "vars: { port: 8080, name: shop, debug: false, list: [1, a], map: { k: v }, none: ~ }",
        "templates:",
        "  - { src: templates/app.env.tera, dest: shared/a, mode: 600 }",
        "  - { src: ./templates/app.env.tera, dest: ./shared//b/, mode: 0o640 }",
        "  - { src: templates/app.env.tera, dest: shared/c, mode: 0750 }",
        "  - { src: templates/app.env.tera, dest: config/d, mode: \"4755\" }",
        "tasks:",
        "  build: { after: fetch, roles: [app, app, db], run: x, interval: 500ms, timeout: 1h30m, retries: 3 }",
        "  after_build: { after: build, run: y, interval: \"20\" }",
        "stages:",
        "  s:",
        "    rollout: { batch: 3 }",
        "    max_failures: 2",
        "    hosts:",
        "      - { host: a, roles: [app], user: root, port: 2222, vars: { port: 9090, extra: 1 } }",
        "      - { host: \"b-[8:10]\", roles: [db] }",
        "  t:",
        "    rollout: { batch: \"100%\", canary: 4 }",
        "    hosts: [{ host: \"t[1:4]\" }]",
    ]));
    assert_eq!(c.strategy, Strategy::Copy);
    assert_eq!(c.ssh.connect_timeout, secs(15));
    assert_eq!(c.ssh.host_key_checking, HostKeyChecking::AcceptNew);
    assert_eq!(
        c.ssh.identity_file,
        Some(PathBuf::from(MANIFEST_DIR).join("keys/deploy"))
    );
    assert_eq!(c.vars["list"], serde_json::json!([1, "a"]));
    assert_eq!(c.vars["map"], serde_json::json!({ "k": "v" }));
    assert_eq!(c.vars["none"], serde_json::Value::Null);
    assert_eq!(c.vars["debug"], serde_json::json!(false));
    let modes: Vec<u32> = c.templates.iter().map(|t| t.mode).collect();
    assert_eq!(modes, [0o600, 0o640, 0o750, 0o4755]);
    assert_eq!(c.templates[1].dest.as_str(), "shared/b");
    assert_eq!(c.templates[1].src, "./templates/app.env.tera");
    let build = c.task("build").unwrap();
    assert_eq!(build.roles, ["app", "db"]);
    assert_eq!(
        (build.interval, build.timeout, build.retries),
        (Duration::from_millis(500), Some(secs(5400)), 3)
    );
    assert_eq!(c.task("after_build").unwrap().interval, secs(20));
    let s = c.stage("s").unwrap();
    assert_eq!((s.rollout.batch, s.max_failures), (Batch::Count(3), 2));
    let a = &s.hosts[0];
    assert_eq!((a.user.as_deref(), a.port), (Some("root"), Some(2222)));
    assert_eq!(a.vars["port"], serde_json::json!(9090));
    assert_eq!(a.vars["extra"], serde_json::json!(1));
    assert_eq!(a.vars["name"], serde_json::json!("shop"));
    assert_eq!(s.hosts[1].vars, c.vars);
    let names: Vec<&str> = s.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["a", "b-8", "b-9", "b-10"]);
    let t = c.stage("t").unwrap();
    assert_eq!(
        t.rollout,
        Rollout {
            batch: Batch::Percent(100),
            canary: 4
        }
    );
}

#[test]
fn tilde_needs_a_home() {
    let text = full(&["ssh:", "  identity_file: ~/.ssh/deploy"]);
    let no_home = ParseContext {
        home: None,
        ..ctx()
    };
    let e = parse_with(&text, Path::new("deploy.yml"), &no_home).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot expand `~` in `ssh.identity_file`: `HOME` is not set (deploy.yml:2:18)"
    );
}

#[test]
fn empty_and_multi_document_files() {
    for text in ["", "\n", "# just a comment\n", "---\n"] {
        let e = parse_with(text, Path::new("deploy.yml"), &ctx()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "empty config file, expected keys like `application`, `repository` and `stages` (deploy.yml)",
            "{text:?}"
        );
    }
    let two = full(&[]) + "---\nb: 2\n";
    let e = parse_with(&two, Path::new("deploy.yml"), &ctx()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "more than one YAML document in the file, expected one (deploy.yml:9:1)"
    );
    let e = parse_with("- a\n", Path::new("deploy.yml"), &ctx()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid type: expected a mapping (deploy.yml:1:1)"
    );
}

/// Merge keys (`<<: *base`) fill a host or a stage from an anchor; what
/// the entry writes itself wins, and errors in merged values point at the
/// line where the value is written.
#[test]
fn merge_keys_fill_hosts_and_stages() {
    let c = parse_ok(&full(&[
        "stages:",
        "  staging: &stage",
        "    max_failures: 1",
        "    rollout: { batch: 2 }",
        "    hosts:",
        "      - &web { host: stg-1, roles: [app], user: deploy, port: 2222 }",
        "  production:",
        "    <<: *stage",
        "    max_failures: 0",
        "    hosts:",
        "      - { <<: *web, host: web-1 }",
        "      - <<: *web",
        "        host: web-2",
        "        port: 22",
    ]));
    let staging = c.stage("staging").unwrap();
    let prod = c.stage("production").unwrap();
    assert_eq!((staging.max_failures, prod.max_failures), (1, 0));
    assert_eq!(prod.rollout.batch, Batch::Count(2));
    let hosts: Vec<String> = prod
        .hosts
        .iter()
        .map(|h| format!("{} {:?} {:?} {:?}", h.name, h.roles, h.user, h.port))
        .collect();
    assert_eq!(
        hosts,
        [
            r#"web-1 ["app"] Some("deploy") Some(2222)"#,
            r#"web-2 ["app"] Some("deploy") Some(22)"#,
        ]
    );

    let e = parse_with(
        &full(&[
            "stages:",
            "  s:",
            "    hosts:",
            "      - &web { host: a, user: \"x y\" }",
            "  t:",
            "    hosts:",
            "      - { <<: *web, host: b }",
        ]),
        Path::new("deploy.yml"),
        &ctx(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid `user` `x y` of host `a` in stage `s`: contains whitespace (deploy.yml:4:31)"
    );
    let e = parse_with(
        &full(&[
            "stages:",
            "  s:",
            "    hosts:",
            "      - &web { host: a }",
            "  t:",
            "    hosts:",
            "      - { <<: *web, colour: red }",
        ]),
        Path::new("deploy.yml"),
        &ctx(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown key `colour` in `stages.t.hosts[0]`, expected one of `host`, `roles`, `transport`, `deploy_to`, `user`, `port`, `vars`, `env` (deploy.yml:7:21)"
    );
}

/// What a document expands to is bounded: an alias bomb and a flood of
/// keys are refused where they cross the limit, naming it.
#[test]
fn documents_past_the_limits_are_refused_where_they_cross_them() {
    let big = format!("  big: &big \"{}\"", "x".repeat(1 << 20));
    let mut lines = vec!["vars:".to_string(), big, "  copies:".to_string()];
    lines.extend((0..100).map(|_| "    - *big".to_string()));
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let e = parse_with(&full(&lines), Path::new("deploy.yml"), &ctx()).unwrap_err();
    assert_eq!(
        e.message(),
        "config too large: more than 8 MiB of text, counting what aliases repeat"
    );
    assert_eq!((e.line(), e.column()), (Some(10), Some(7)), "{e}");

    let mut lines = vec!["vars:".to_string()];
    lines.extend((0..20_000).map(|i| format!("  v{i}: {i}")));
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let e = parse_with(&full(&lines), Path::new("deploy.yml"), &ctx()).unwrap_err();
    assert_eq!(
        e.message(),
        "config too large: more than 20000 keys and values, counting what aliases repeat"
    );
    assert!(e.line().is_some() && e.column().is_some(), "{e}");
}

#[test]
fn load_reads_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deploy.yml");
    std::fs::write(&path, full(&[])).unwrap();
    let c = load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.base_dir, dir.path());
    assert_eq!(c.path, path);

    let missing = dir.path().join("nope.yml");
    let e = load(&missing).unwrap_err();
    assert_eq!((e.line(), e.column()), (None, None));
    assert_eq!(e.path(), missing);
    assert_eq!(
        e.to_string(),
        format!(
            "config file not found, `shipit init` writes one to start from ({})",
            missing.display()
        )
    );
    assert!(std::error::Error::source(&e).is_some());

    let e = load(dir.path()).unwrap_err();
    assert!(e.message().starts_with("cannot read config file: "), "{e}");
}

#[test]
fn linked_paths_that_only_share_a_prefix_are_not_nested() {
    let c = parse_ok(&full(&[
        "linked_files: [storage.env, config/app.env]",
        "linked_dirs: [storage, storage2, configs]",
    ]));
    assert_eq!(c.linked_dirs.len(), 3);
    assert_eq!(c.linked_files.len(), 2);
}

#[test]
fn env_merges_global_stage_and_host_in_place() {
    let c = parse_ok(&full(&[
        "env: { A: global, B: 1, C: true }",
        "stages:",
        "  s:",
        "    env: { B: stage, D: \"{{ env.X }}\" }",
        "    hosts:",
        "      - { host: a, env: { A: host } }",
        "      - { host: b }",
    ]));
    let hosts = &c.stage("s").unwrap().hosts;
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        hosts[0].env,
        pairs(&[
            ("A", "host"),
            ("B", "stage"),
            ("C", "true"),
            ("D", "{{ env.X }}")
        ])
    );
    assert_eq!(
        hosts[1].env,
        pairs(&[
            ("A", "global"),
            ("B", "stage"),
            ("C", "true"),
            ("D", "{{ env.X }}")
        ])
    );
}

#[test]
fn a_load_balancer_and_an_http_smoke_test_are_read() {
    let c = parse_ok(&full(&[
        "tasks:",
        r#"  smoke_test: { http: "http://{{ host }}:{{ port }}/up", retries: 5, interval: 500ms }"#,
        "stages:",
        "  s:",
        "    load_balancer:",
        r#"      drain:   { local: true, run: "bin/lb drain {{ host }}", timeout: 2m }"#,
        r#"      undrain: { run: "bin/lb ready" }"#,
        "      wait: 10s",
        "    hosts: [{ host: a }]",
        "  t:",
        "    hosts: [{ host: b }]",
    ]));
    let smoke = c.task("smoke_test").unwrap();
    assert_eq!(smoke.run, "");
    assert_eq!(
        smoke.http,
        Some(HttpCheckSpec {
            url: "http://{{ host }}:{{ port }}/up".into(),
            expect: 200,
        })
    );
    assert_eq!(
        (smoke.retries, smoke.interval),
        (5, Duration::from_millis(500))
    );
    assert_eq!(
        c.stage("s").unwrap().load_balancer,
        Some(LoadBalancer {
            drain: LbCommand {
                run: "bin/lb drain {{ host }}".into(),
                local: true,
                timeout: secs(120),
            },
            undrain: LbCommand {
                run: "bin/lb ready".into(),
                local: false,
                timeout: LB_TIMEOUT,
            },
            wait: secs(10),
            roles: Vec::new(),
        })
    );
    assert_eq!(c.stage("t").unwrap().load_balancer, None);
    let expect = parse_ok(&full(&[
        "tasks:",
        r#"  smoke_test: { http: "http://a/health", expect: 204 }"#,
    ]));
    assert_eq!(
        expect
            .task("smoke_test")
            .unwrap()
            .http
            .as_ref()
            .unwrap()
            .expect,
        204
    );
}
