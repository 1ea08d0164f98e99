//! What users coming from Capistrano, Deployer and ansistrano reach for
//! about paths and files, end to end through the real binary against
//! real sshd hosts: where relative paths in deploy.yml lead, finding
//! deploy.yml from a subdirectory, linked paths that overlap or whose
//! shared directory is missing, `current_path`, and `shipit init
//! --stages`.

mod support;

use std::fs;
use std::path::Path;

use support::deploy_yml::yaml_str;
use support::project::{commit, current, expect_exit, git, shipit, stderr, stdout, text, Project};

/// The deploy.yml of `p` moved to `project/sub/deploy.yml`, with the
/// repository, the template source and a local host's deploy_to written
/// relative to that file.
fn config_in_sub(p: &Project) -> std::path::PathBuf {
    let sub = p.dir.join("sub");
    fs::create_dir_all(sub.join("templates")).unwrap();
    fs::write(sub.join("templates/app.env.tera"), "HOST={{ host }}\n").unwrap();
    let h = &p.fleet.hosts()[0];
    let y = format!(
        "application: shop\nrepository: ../../app\nbranch: main\n\
         ssh:\n  config_file: {}\n  connect_timeout: 5s\n  host_key_checking: strict\n\
         templates:\n  - {{ src: templates/app.env.tera, dest: shared/app.env }}\n\
         stages:\n  staging:\n    hosts:\n\
         \x20     - {{ host: {}, deploy_to: {} }}\n\
         \x20     - {{ host: box.example, transport: local, deploy_to: ../local-deploy }}\n",
        yaml_str(&p.fleet.ssh_config().to_string_lossy()),
        h.alias,
        yaml_str(&h.deploy_to.to_string_lossy()),
    );
    fs::write(sub.join("deploy.yml"), y).unwrap();
    sub
}

#[test]
fn relative_paths_resolve_against_the_config_files_directory() {
    let p = Project::new(1);
    config_in_sub(&p);
    // Run from the directory above the project: `../../app`,
    // `templates/...` and `../local-deploy` all lead nowhere from here.
    let elsewhere = p.dir.parent().unwrap();
    let o = expect_exit(
        shipit(
            elsewhere,
            &["deploy", "staging", "-c", "project/sub/deploy.yml"],
        ),
        0,
    );
    let ssh_host = &p.hosts()[0];
    let local = p.dir.join("local-deploy");
    for d in [ssh_host, &local] {
        let cur =
            current(d).unwrap_or_else(|| panic!("no current in {}: {}", d.display(), text(&o)));
        assert!(d.join(&cur).join("README").is_file(), "{}", text(&o));
    }
    assert_eq!(
        fs::read_to_string(ssh_host.join("shared/app.env")).unwrap(),
        format!("HOST={}\n", p.fleet.hosts()[0].alias)
    );
    assert!(!elsewhere.join("local-deploy").exists());
    assert!(!elsewhere.join("../local-deploy").exists());
}

#[test]
fn deploy_yml_is_found_from_a_subdirectory_up_to_the_repository_root() {
    let p = Project::new(1);
    p.write_config("", "", |_| String::new());
    let deep = p.dir.join("src/lib");
    fs::create_dir_all(&deep).unwrap();
    let o = expect_exit(shipit(&deep, &["deploy", "staging", "-v"]), 0);
    let found = p.dir.join("deploy.yml");
    assert!(
        stderr(&o).contains(&format!("shipit: config file {}", found.display())),
        "{}",
        text(&o)
    );
    assert!(current(&p.hosts()[0]).is_some(), "{}", text(&o));
    // Without -v nothing is said about it.
    let o = expect_exit(shipit(&deep, &["plan", "staging"]), 0);
    assert!(!stderr(&o).contains("config file"), "{}", text(&o));
    // -c, wherever it is written, wins over the search.
    let other = p.dir.join("src/other.yml");
    fs::write(&other, "application: [\n").unwrap();
    let o = expect_exit(
        shipit(&deep, &["plan", "-c", "../other.yml", "staging", "-v"]),
        2,
    );
    assert!(stderr(&o).contains("other.yml"), "{}", text(&o));
    // The search stops at the root of the repository it starts in: the
    // project's deploy.yml is above this repository.
    let nested = p.dir.join("vendor/tool");
    fs::create_dir_all(nested.join("sub")).unwrap();
    git(&nested, &["init", "-q"]);
    let o = expect_exit(shipit(&nested.join("sub"), &["plan", "staging"]), 2);
    assert!(stderr(&o).contains("config file not found"), "{}", text(&o));
}

#[test]
fn overlapping_linked_paths_are_refused_before_any_host_is_touched() {
    let p = Project::new(1);
    p.write_config("linked_dirs:\n  - storage\n  - storage/logs\n", "", |_| {
        String::new()
    });
    for args in [&["deploy", "staging"][..], &["plan", "staging"][..]] {
        let o = p.run_expect(args, 2);
        let want = "shipit: `storage/logs` in `linked_dirs` is inside the linked dir `storage`, which links it already; list only `storage` (deploy.yml:";
        assert!(stderr(&o).contains(want), "{}", text(&o));
    }
    let o = p.run_expect(&["deploy", "staging"], 2);
    let line = stderr(&o);
    let at = line.rsplit("deploy.yml:").next().unwrap().trim();
    // storage/logs is the second item of linked_dirs.
    let want_line = fs::read_to_string(p.dir.join("deploy.yml"))
        .unwrap()
        .lines()
        .position(|l| l == "  - storage/logs")
        .unwrap()
        + 1;
    assert_eq!(at, format!("{want_line}:5)"), "{}", text(&o));
    assert!(!p.hosts()[0].join("releases").exists(), "{}", text(&o));
}

#[test]
fn a_linked_files_missing_directory_is_made_and_the_file_still_required() {
    let p = Project::new(1);
    p.write_config(
        "linked_files: [config/secrets/database.yml, .env]\n",
        "",
        |_| String::new(),
    );
    let d = &p.hosts()[0];
    fs::create_dir_all(d.join("shared")).unwrap();
    fs::write(d.join("shared/.env"), "X=1\n").unwrap();
    let o = p.deploy_expect(1);
    let missing = d.join("shared/config/secrets/database.yml");
    assert!(
        stdout(&o).contains(&format!("missing linked file: {}", missing.display())),
        "{}",
        text(&o)
    );
    assert!(d.join("shared/config/secrets").is_dir(), "{}", text(&o));
    assert!(
        stdout(&o).contains(&format!(
            "created {} for the linked file database.yml",
            d.join("shared/config/secrets").display()
        )),
        "{}",
        text(&o)
    );
    assert!(!missing.exists());
    assert_eq!(current(d), None, "{}", text(&o));
    // The operator drops the file into the directory made for it.
    fs::write(&missing, "db: x\n").unwrap();
    p.deploy_ok();
    let cur = d.join(current(d).unwrap());
    assert_eq!(
        fs::read_to_string(cur.join("config/secrets/database.yml")).unwrap(),
        "db: x\n"
    );
}

#[test]
fn current_path_names_the_link_for_deploy_rollback_and_tasks() {
    let p = Project::new(2);
    p.write_config(
        "current_path: public_html\n\
         tasks:\n  restart:\n    run: \"pwd >> \\\"$SHIPIT_DEPLOY_TO/restarts\\\" && cat REVISION >> \\\"$SHIPIT_DEPLOY_TO/restarts\\\"\"\n",
        "",
        |_| String::new(),
    );
    let link = |d: &Path| {
        fs::read_link(d.join("public_html"))
            .ok()
            .map(|t| t.to_string_lossy().into_owned())
    };
    p.deploy_ok();
    let first: Vec<String> = p.hosts().iter().map(|d| link(d).unwrap()).collect();
    let second_commit = commit(&p.repo, "VERSION", "2\n");
    p.deploy_ok();
    for (d, before) in p.hosts().iter().zip(&first) {
        let now = link(d).unwrap();
        assert_ne!(&now, before);
        assert!(now.starts_with("releases/"), "{now}");
        assert_eq!(
            fs::read_to_string(d.join("public_html/REVISION"))
                .unwrap()
                .trim(),
            second_commit
        );
        // shipit made no `current` link of its own.
        assert!(fs::symlink_metadata(d.join("current")).is_err());
        // The restart task ran in the link.
        let restarts = fs::read_to_string(d.join("restarts")).unwrap();
        let last_dir = restarts.lines().rev().nth(1).unwrap();
        assert_eq!(Path::new(last_dir), d.join("public_html"), "{restarts}");
    }
    // `releases` reads the same link.
    let o = p.run_expect(&["releases", "staging"], 0);
    let id = link(&p.hosts()[0])
        .unwrap()
        .trim_start_matches("releases/")
        .to_string();
    assert!(stdout(&o).contains(&id), "{}", text(&o));
    let o = p.run_expect(&["rollback", "staging"], 0);
    for (d, before) in p.hosts().iter().zip(&first) {
        assert_eq!(link(d).as_ref(), Some(before), "{}", text(&o));
        assert!(fs::symlink_metadata(d.join("current")).is_err());
    }
}

#[test]
fn init_with_stages_writes_a_config_each_stage_of_which_plans() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    git(dir, &["init", "-q", "-b", "main"]);
    commit(dir, "README", "the app\n");
    let o = expect_exit(
        shipit(dir, &["init", "--stages", "staging,production,dr-site"]),
        0,
    );
    assert!(
        stdout(&o).contains("shipit plan staging -c deploy.yml"),
        "{}",
        text(&o)
    );
    let written = fs::read_to_string(dir.join("deploy.yml")).unwrap();
    assert!(!written.contains("\n  local:"), "{written}");
    for stage in ["staging", "production", "dr-site"] {
        let o = expect_exit(shipit(dir, &["plan", stage]), 0);
        assert!(
            stdout(&o).contains(&format!("deploy `{stage}`")),
            "{}",
            text(&o)
        );
        assert!(
            stdout(&o).contains(&format!(".shipit-{stage}")),
            "{}",
            text(&o)
        );
    }
    // The first stage deploys for real, to this machine.
    expect_exit(shipit(dir, &["deploy", "staging"]), 0);
    assert!(current(&dir.join(".shipit-staging")).is_some());
    // A stage that was not asked for is not there.
    let o = expect_exit(shipit(dir, &["plan", "local"]), 2);
    assert!(stderr(&o).contains("local"), "{}", text(&o));
    // A name that cannot be a stage is refused and nothing is written.
    let other = dir.join("other.yml");
    let o = expect_exit(
        shipit(
            dir,
            &["init", "other.yml", "--stages", "staging,pro duction"],
        ),
        2,
    );
    assert!(
        stderr(&o).contains("invalid stage name `pro duction` in --stages"),
        "{}",
        text(&o)
    );
    assert!(!other.exists());
}

/// `deploy_to: ~/app` is under the login home of each host, resolved by
/// the host's own shell: each host of the fleet has a home of its own, and
/// deploy, releases and rollback all find the release there.
#[test]
fn deploy_to_under_the_login_home_is_resolved_on_each_host() {
    let p = Project::new(2);
    p.write_config(support::deploy_yml::HOOKS, "", |_| String::new());
    let path = p.dir.join("deploy.yml");
    let y = fs::read_to_string(&path).unwrap();
    let mut with_home = y.clone();
    for h in p.fleet.hosts() {
        with_home = with_home.replace(
            &format!("deploy_to: {}", yaml_str(&h.deploy_to.to_string_lossy())),
            "deploy_to: \"~/my app\"",
        );
    }
    assert_ne!(with_home, y, "every host's deploy_to was replaced");
    fs::write(&path, &with_home).unwrap();

    p.deploy_ok();
    commit(&p.repo, "VERSION", "2\n");
    p.deploy_ok();
    for h in p.fleet.hosts() {
        let d = p.fleet.home(h.index).join("my app");
        let on = current(&d).unwrap_or_else(|| panic!("no current in {}", d.display()));
        assert!(on.starts_with("releases/"), "{on}");
        assert_eq!(fs::read_dir(d.join("releases")).unwrap().count(), 2);
        assert!(
            !h.deploy_to.join("releases").exists(),
            "nothing in the old deploy_to"
        );
    }
    let out = expect_exit(shipit(&p.dir, &["releases", "staging"]), 0);
    assert!(stdout(&out).contains("agree"), "{}", text(&out));
    expect_exit(shipit(&p.dir, &["rollback", "staging"]), 0);
    let first = current(&p.fleet.home(1).join("my app")).unwrap();
    assert_eq!(current(&p.fleet.home(2).join("my app")).unwrap(), first);
    // No directory named `~` was made anywhere.
    for h in p.fleet.hosts() {
        assert!(!p.fleet.home(h.index).join("~").exists());
    }
    assert!(!p.dir.join("~").exists());
}
