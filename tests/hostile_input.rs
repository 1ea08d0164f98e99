//! Security: hostile input never escapes, and hosts are who they claim.
//!
//! Names, vars, branches and paths holding spaces, quotes, `$()`,
//! backticks, newlines or `..` are either refused by validation with a
//! message naming them, or reach the host's shell literally: a canary file
//! that the payloads would create must never appear. Linked paths cannot
//! leave deploy_to, templates cannot read files, and host keys are checked
//! strictly unless `accept-new` is configured. The comment above each test
//! names the protection it checks.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::deploy_yml::yaml_str;
use support::project::{commit, current, git, releases, shipit, stderr, stdout, text, Project};
use support::Fleet;

/// A directory without a leading `.` in its path (git refuses branch name
/// components starting with `.`, and the payloads name the canary by its
/// absolute path), holding the canary's place.
fn canary_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("hostile")
        .tempdir_in("/tmp")
        .unwrap();
    let canary = dir.path().join("canary");
    (dir, canary)
}

/// Payloads that create `canary` if a shell ever evaluates them.
fn payloads(canary: &Path) -> Vec<String> {
    let c = canary.display();
    vec![
        format!("$(touch {c})"),
        format!("`touch {c}`"),
        format!("'; touch {c}; '"),
        format!("\"; touch {c}; \""),
        format!("x; touch {c} #"),
    ]
}

// ---------------------------------------------------------------------------
// Validation

/// Protection: what must be a name or a token on a command line (host,
/// user, proxy_jump, stage, role, task and var names, application) and
/// what must stay inside deploy_to (linked paths, template src and dest)
/// is refused at load with a message naming the value, its key and its
/// line, before anything runs: exit 2, no canary.
#[test]
fn hostile_names_and_escaping_paths_are_refused_before_anything_runs() {
    let (dir, canary) = canary_dir();
    let c = canary.display().to_string();
    let project = dir.path().join("project");
    fs::create_dir_all(project.join("templates")).unwrap();
    fs::write(project.join("templates/app.env.tera"), "x\n").unwrap();
    let base = |top: &str, host: &str, stage: &str| {
        format!(
            "application: shop\nrepository: git@example.invalid:shop.git\ndeploy_to: /srv/shop\n{top}stages:\n  {stage}:\n    hosts:\n      - {host}\n"
        )
    };
    let h = "{ host: web-1, roles: [app] }";
    let cases: Vec<(String, String)> = vec![
        (
            base("", &format!("{{ host: \"web-1$(touch {c})\" }}"), "staging"),
            format!("invalid host `web-1$(touch {c})` in stage `staging`: contains `$`"),
        ),
        (
            base("", "{ host: \"web 1\" }", "staging"),
            "invalid host `web 1` in stage `staging`: contains whitespace".into(),
        ),
        (
            base("", "{ host: \"web$(id)\" }", "staging"),
            "invalid host `web$(id)` in stage `staging`: contains `$`".into(),
        ),
        (
            base("", "{ host: \"web`id`\" }", "staging"),
            "invalid host `web`id`` in stage `staging`: contains ```".into(),
        ),
        (
            base("", "{ host: \"web'1\" }", "staging"),
            "invalid host `web'1` in stage `staging`: contains `'`".into(),
        ),
        (
            base("", "{ host: \"web\\n1\" }", "staging"),
            "invalid host `web\\n1` in stage `staging`: contains whitespace".into(),
        ),
        (
            base("", "{ host: \"-oProxyCommand=id\" }", "staging"),
            "invalid host `-oProxyCommand=id` in stage `staging`: begins with `-`".into(),
        ),
        (
            base("", "{ host: web-1, user: \"deploy;id\" }", "staging"),
            "invalid `user` `deploy;id` of host `web-1` in stage `staging`: contains `;`".into(),
        ),
        (
            base("ssh: { proxy_jump: \"$(id)\" }\n", h, "staging"),
            "invalid `ssh.proxy_jump` `$(id)`: contains `$`".into(),
        ),
        (
            base("", h, "\"st age\""),
            "invalid stage name `st age`, expected letters, digits, `_` or `-`".into(),
        ),
        (
            base("", "{ host: web-1, roles: [\"a`id`\"] }", "staging"),
            "invalid role `a`id`` in stage `staging`, expected letters, digits, `_` or `-`".into(),
        ),
        (
            base("tasks:\n  \"b$(id)\": { after: fetch, run: x }\n", h, "staging"),
            "invalid task name `b$(id)`, expected letters, digits, `_` or `-`".into(),
        ),
        (
            base("vars: { \"a b\": 1 }\n", h, "staging"),
            "invalid var name `a b`, expected letters, digits and `_`, not starting with a digit".into(),
        ),
        (
            base("", h, "staging").replace("application: shop", "application: \"shop$(id)\""),
            "invalid application name `shop$(id)`, expected letters, digits, `.`, `_` or `-`".into(),
        ),
        (
            base("branch: \"main\\n$(id)\"\n", h, "staging"),
            "invalid branch `main\\n$(id)`: contains whitespace, expected a branch, tag or commit like `main`".into(),
        ),
        (
            base("linked_files: [\"../../etc/passwd\"]\n", h, "staging"),
            "path `../../etc/passwd` in `linked_files` leaves the release through `..`".into(),
        ),
        (
            base("linked_dirs: [\"log/../../..\"]\n", h, "staging"),
            "path `log/../../..` in `linked_dirs` leaves the release through `..`".into(),
        ),
        (
            base("linked_files: [\"/etc/passwd\"]\n", h, "staging"),
            "absolute path `/etc/passwd` in `linked_files`, expected a path relative to the release".into(),
        ),
        (
            base("linked_files: [\"a\\nb\"]\n", h, "staging"),
            "path `a\\nb` in `linked_files` contains a control character".into(),
        ),
        (
            base(
                "templates:\n  - { src: templates/app.env.tera, dest: \"shared/../../x\" }\n",
                h,
                "staging",
            ),
            "path `shared/../../x` in template `dest` leaves `deploy_to` through `..`".into(),
        ),
        (
            base(
                "templates:\n  - { src: templates/app.env.tera, dest: \"current/x\" }\n",
                h,
                "staging",
            ),
            "template `dest` `current/x` would overwrite shipit's own `current`, expected a path under `shared/`".into(),
        ),
        (
            base(
                "templates:\n  - { src: \"../secret\", dest: shared/x }\n",
                h,
                "staging",
            ),
            "path `../secret` in template `src` leaves the config file's directory through `..`".into(),
        ),
        (
            base("", "{ host: web-1, deploy_to: \"/srv/../etc\" }", "staging"),
            "invalid deploy_to `/srv/../etc` for host `web-1` in stage `staging`: contains `..`".into(),
        ),
    ];
    for (yml, want) in &cases {
        fs::write(project.join("deploy.yml"), yml).unwrap();
        for cmd in ["plan", "deploy"] {
            let out = shipit(&project, &[cmd, "staging"]);
            assert_eq!(out.status.code(), Some(2), "{cmd}:\n{yml}\n{}", text(&out));
            let err = stderr(&out);
            assert!(
                err.contains(want) && err.contains("(deploy.yml:"),
                "{cmd}: expected {want:?}\n{yml}\n{}",
                text(&out)
            );
        }
        assert!(!canary.exists(), "the canary was created by:\n{yml}");
    }
}

// ---------------------------------------------------------------------------
// Quoting

/// Protection: every value shipit puts on a remote command line goes
/// through `shell::quote`. Values that validation allows (deploy_to,
/// linked files and dirs, template dests with spaces, quotes, `$()`,
/// backticks and `;`; a var with a newline; a branch named with `$()` and
/// backticks, as git allows) reach the host literally: the files land at
/// those exact paths with that exact content, and no canary appears.
#[test]
fn hostile_values_that_validation_allows_reach_the_host_literally() {
    let (_dir, canary) = canary_dir();
    let p = Project::new(1);
    let pl = payloads(&canary);
    let c = canary.display().to_string();
    // A branch git accepts: no spaces, no `..`, no component starting `.`.
    let branch = format!("x$(touch${{IFS}}{c})`touch${{IFS}}{c}`'\";");
    git(&p.repo, &["branch", &branch]);
    let deploy_to = p.fleet.hosts()[0]
        .deploy_to
        .join(format!("app {} {}", pl[0], pl[2]));
    let linked_file = format!("conf/{} it's.yml", pl[1]);
    let linked_dir = format!("log {}", pl[3]);
    let dest = format!("shared/{}.env", pl[4]);
    let var = format!("{}\n{}\n", pl[0], pl[1]);
    fs::write(p.dir.join("templates/app.env.tera"), "V={{ greeting }}").unwrap();
    let shared_file = deploy_to.join("shared").join(&linked_file);
    fs::create_dir_all(shared_file.parent().unwrap()).unwrap();
    fs::write(&shared_file, "db: x\n").unwrap();

    let top = format!(
        "linked_files: [{lf}]\nlinked_dirs: [{ld}]\nvars: {{ greeting: {v} }}\ntemplates:\n  - {{ src: templates/app.env.tera, dest: {dest}, mode: \"0600\" }}\n",
        lf = yaml_str(&linked_file),
        ld = yaml_str(&linked_dir),
        v = yaml_str(&var),
        dest = yaml_str(&dest),
    );
    p.write_config(&top, "", |_| String::new());
    let yml = fs::read_to_string(p.dir.join("deploy.yml")).unwrap();
    let yml = yml
        .replace("branch: main", &format!("branch: {}", yaml_str(&branch)))
        .replace(
            &yaml_str(&p.fleet.hosts()[0].deploy_to.to_string_lossy()),
            &yaml_str(&deploy_to.to_string_lossy()),
        );
    fs::write(p.dir.join("deploy.yml"), yml).unwrap();

    let out = p.deploy_expect(0);
    assert!(!canary.exists(), "a payload ran:\n{}", text(&out));

    let cur = deploy_to.join("current");
    assert!(
        current(&deploy_to).is_some(),
        "current is in the literal deploy_to"
    );
    assert_eq!(
        fs::read_link(cur.join(&linked_file)).unwrap(),
        deploy_to.join("shared").join(&linked_file)
    );
    assert_eq!(
        fs::read_to_string(cur.join(&linked_file)).unwrap(),
        "db: x\n"
    );
    assert_eq!(
        fs::read_link(cur.join(&linked_dir)).unwrap(),
        deploy_to.join("shared").join(&linked_dir)
    );
    assert_eq!(
        fs::read_to_string(deploy_to.join(&dest)).unwrap(),
        format!("V={var}")
    );
    let log = fs::read_to_string(deploy_to.join("revisions.log")).unwrap();
    assert!(log.contains(&format!("Branch {branch} (at ")), "{log}");
    // Nothing landed beside the literal deploy_to.
    let beside: Vec<String> = fs::read_dir(&p.fleet.hosts()[0].deploy_to)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(beside.len(), 1, "{beside:?}");
}

// ---------------------------------------------------------------------------
// Escaping deploy_to through the repository

/// Protection: a linked path is never linked through a symlink that the
/// repository committed and that leads out of deploy_to (`tmp -> /var`):
/// the `rm -rf` and `ln -s` of linking would land outside. The deploy
/// fails at `link_shared` naming the path, switches no host, and the files
/// outside are untouched. A symlink that stays inside deploy_to is fine.
#[test]
fn linked_paths_cannot_escape_deploy_to_through_symlinks_in_the_repository() {
    let p = Project::new(1);
    let outside = p.fleet.dir().join("outside");
    fs::create_dir_all(outside.join("pids")).unwrap();
    fs::write(outside.join("pids/keep"), "precious\n").unwrap();
    fs::write(outside.join("database.yml"), "precious\n").unwrap();
    std::os::unix::fs::symlink(&outside, p.repo.join("tmp")).unwrap();
    std::os::unix::fs::symlink(&outside, p.repo.join("config")).unwrap();
    commit(&p.repo, "VERSION", "1\n");
    let d = p.hosts()[0].clone();
    fs::create_dir_all(d.join("shared/config")).unwrap();
    fs::write(d.join("shared/config/database.yml"), "db\n").unwrap();
    p.write_config(
        "linked_dirs: [tmp/pids]\nlinked_files: [config/database.yml]\n",
        "",
        |_| String::new(),
    );

    let out = p.deploy_expect(1);
    let s = stdout(&out);
    assert!(s.contains("[fleet-1] link_shared FAILED"), "{s}");
    assert!(
        s.contains(&format!(
            "linked path `tmp/pids` goes through `tmp`, a symlink in the release that leads out of {}; refusing to link there",
            d.display()
        )),
        "{s}"
    );
    assert_eq!(current(&d), None);
    assert!(releases(&d).is_empty(), "the staged release was removed");
    assert_eq!(
        fs::read_to_string(outside.join("pids/keep")).unwrap(),
        "precious\n"
    );
    assert_eq!(
        fs::read_to_string(outside.join("database.yml")).unwrap(),
        "precious\n"
    );
    assert!(!outside.join("pids").is_symlink());

    // Inside the release is fine: `tmp -> var/tmp`, `config -> etc`.
    fs::remove_file(p.repo.join("tmp")).unwrap();
    fs::remove_file(p.repo.join("config")).unwrap();
    fs::create_dir_all(p.repo.join("var/tmp")).unwrap();
    fs::create_dir_all(p.repo.join("etc")).unwrap();
    fs::write(p.repo.join("var/tmp/.keep"), "").unwrap();
    fs::write(p.repo.join("etc/.keep"), "").unwrap();
    std::os::unix::fs::symlink("var/tmp", p.repo.join("tmp")).unwrap();
    std::os::unix::fs::symlink("etc", p.repo.join("config")).unwrap();
    commit(&p.repo, "VERSION", "2\n");
    p.deploy_expect(0);
    assert_eq!(
        fs::read_to_string(d.join("current/config/database.yml")).unwrap(),
        "db\n"
    );
    assert!(d.join("current/var/tmp/pids").is_symlink());
    assert_eq!(
        fs::read_to_string(outside.join("pids/keep")).unwrap(),
        "precious\n"
    );
}

// ---------------------------------------------------------------------------
// Templates cannot read files

/// Protection: templates and task commands are rendered with
/// `Tera::one_off`, which has no loader: `include`, `import` and `extends`
/// of any file (`/etc/passwd`, `../x`) fail, so a template cannot read
/// files outside the project (or inside it). The deploy stops with exit 2
/// before any host is touched, and the file's content is nowhere in the
/// output.
#[test]
fn templates_cannot_include_import_or_extend_files() {
    let p = Project::new(1);
    fs::write(p.dir.join("../secret.txt"), "TOP-SECRET-CANARY\n").unwrap();
    fs::write(p.dir.join("templates/secret.txt"), "TOP-SECRET-CANARY\n").unwrap();
    let attempts = [
        "{% include \"/etc/passwd\" %}",
        "{% include \"../secret.txt\" %}",
        "{% include \"secret.txt\" %}",
        "{% include \"templates/secret.txt\" %}",
        "{% import \"../secret.txt\" as m %}{{ m::x() }}",
        "{% extends \"../secret.txt\" %}",
        "{% extends \"/etc/passwd\" %}",
    ];
    for (i, body) in attempts.iter().enumerate() {
        for in_task in [false, true] {
            let top = if in_task {
                format!(
                    "tasks:\n  build:\n    after: fetch\n    run: {}\n",
                    yaml_str(body)
                )
            } else {
                fs::write(p.dir.join("templates/app.env.tera"), body).unwrap();
                "templates:\n  - { src: templates/app.env.tera, dest: shared/.env }\n".into()
            };
            p.write_config(&top, "", |_| String::new());
            let out = p.deploy();
            let all = text(&out);
            assert_eq!(
                out.status.code(),
                Some(2),
                "case {i} (task: {in_task}):\n{all}"
            );
            assert!(all.contains("cannot render"), "{all}");
            assert!(!all.contains("TOP-SECRET-CANARY"), "{all}");
            assert!(!all.contains("root:x:0:0"), "{all}");
        }
    }
    let d = &p.hosts()[0];
    assert_eq!(fs::read_dir(d).unwrap().count(), 0, "no host was touched");
    assert_eq!(p.fleet.hosts()[0].logins(), 0);

    // The same at the library level, with an empty context.
    let ctx = tera::Context::new();
    for body in attempts {
        let r = shipit::plan::render::render(body, &ctx, "template `t`", "web-1");
        let e = r.expect_err(body).to_string();
        assert!(
            !e.contains("TOP-SECRET-CANARY") && !e.contains("root:x:0:0"),
            "{e}"
        );
    }
}

// ---------------------------------------------------------------------------
// Host keys

/// Points the project's deploy.yml at `ssh_config` and sets (or, with
/// `None`, leaves out) `host_key_checking`.
fn use_ssh_config(p: &Project, ssh_config: &Path, checking: Option<&str>) {
    let path = p.dir.join("deploy.yml");
    let yml = fs::read_to_string(&path).unwrap();
    let yml = yml
        .replace(
            &yaml_str(&p.fleet.ssh_config().to_string_lossy()),
            &yaml_str(&ssh_config.to_string_lossy()),
        )
        .replace(
            "  host_key_checking: strict\n",
            &checking
                .map(|c| format!("  host_key_checking: {c}\n"))
                .unwrap_or_default(),
        );
    fs::write(path, yml).unwrap();
}

fn assert_untouched(fleet: &Fleet) {
    for h in fleet.hosts() {
        assert_eq!(current(&h.deploy_to), None);
        assert!(releases(&h.deploy_to).is_empty());
        assert!(!h.deploy_to.join(".shipit/lock").exists());
    }
}

/// Protection: host keys are checked strictly by default — shipit passes
/// `StrictHostKeyChecking=yes` itself, so even an ssh config that says
/// `no` cannot turn it off. A host whose key is unknown fails alone with
/// how to trust it (the exact `ssh-keyscan` line, or `accept-new`), the
/// lock being all-or-nothing nothing changes anywhere, and known_hosts is
/// not written.
#[test]
fn an_unknown_host_key_fails_that_host_by_default_saying_how_to_trust_it() {
    let p = Project::new(2);
    p.write_config("", "", |_| String::new());
    let known = p
        .fleet
        .known_hosts_with("known_hosts_one", [&p.fleet.hosts()[0]]);
    let before = fs::read_to_string(&known).unwrap();
    // A careless user config: no checking at all.
    let config = p.fleet.ssh_config_with("ssh_config_careless", &known, "no");
    use_ssh_config(&p, &config, None);

    let out = p.deploy_expect(1);
    let s = stdout(&out);
    let h2 = &p.fleet.hosts()[1];
    assert!(s.contains("[fleet-2] connect FAILED"), "{s}");
    assert!(
        s.contains("host key verification failed: the host key of `fleet-2` is not in known_hosts"),
        "{s}"
    );
    assert!(
        s.contains(&format!(
            "trust it with `ssh-keyscan -p {} {} >> ~/.ssh/known_hosts`",
            h2.port, h2.address
        )),
        "{s}"
    );
    assert!(
        s.contains("set `host_key_checking: accept-new` under `ssh:`"),
        "{s}"
    );
    assert!(!s.contains("[fleet-1] connect FAILED"), "{s}");
    assert!(s.contains("nothing was changed"), "{s}");
    assert_untouched(&p.fleet);
    assert_eq!(fs::read_to_string(&known).unwrap(), before);
    assert_eq!(h2.logins(), 0);
}

/// Protection: `host_key_checking: accept-new` (only when configured)
/// trusts a host seen for the first time and records its key.
#[test]
fn accept_new_trusts_a_new_host_only_when_configured() {
    let p = Project::new(2);
    p.write_config("", "", |_| String::new());
    let known = p
        .fleet
        .known_hosts_with("known_hosts_one", [&p.fleet.hosts()[0]]);
    let config = p.fleet.ssh_config_with("ssh_config_strict", &known, "yes");
    use_ssh_config(&p, &config, Some("accept-new"));

    p.deploy_expect(0);
    let h2 = &p.fleet.hosts()[1];
    let trusted = fs::read_to_string(&known).unwrap();
    assert!(
        trusted.contains(&h2.known_hosts_name()),
        "fleet-2's key recorded: {trusted}"
    );
    assert!(current(&h2.deploy_to).is_some());
}

/// Protection: a host whose key changed since it was trusted fails, even
/// with `accept-new`, with ssh's warning and the `ssh-keygen -R` line that
/// forgets the old key; nothing changes anywhere.
#[test]
fn a_changed_host_key_fails_even_with_accept_new() {
    let p = Project::new(2);
    p.write_config("", "", |_| String::new());
    let other = p.fleet.dir().join("other_key");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "other", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(st.success());
    let other_pub = fs::read_to_string(other.with_extension("pub")).unwrap();
    let other_pub: Vec<&str> = other_pub.split_whitespace().take(2).collect();
    let h1 = &p.fleet.hosts()[0];
    let h2 = &p.fleet.hosts()[1];
    let known = p.fleet.dir().join("known_hosts_changed");
    fs::write(
        &known,
        format!(
            "{} {}\n{} {}\n",
            h1.known_hosts_name(),
            p.fleet.host_public_key(),
            h2.known_hosts_name(),
            other_pub.join(" ")
        ),
    )
    .unwrap();
    let before = fs::read_to_string(&known).unwrap();
    let config = p.fleet.ssh_config_with("ssh_config_changed", &known, "yes");
    use_ssh_config(&p, &config, Some("accept-new"));

    let out = p.deploy_expect(1);
    let s = stdout(&out);
    assert!(s.contains("[fleet-2] connect FAILED"), "{s}");
    assert!(
        s.contains("the host key of `fleet-2` has changed since it was trusted"),
        "{s}"
    );
    assert!(s.contains("ssh-keygen "), "{s}");
    assert!(s.contains(" -R "), "{s}");
    assert_untouched(&p.fleet);
    assert_eq!(fs::read_to_string(&known).unwrap(), before);
    assert_eq!(h2.logins(), 0);
}
