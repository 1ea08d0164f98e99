//! Secrets and untrusted input against real sshd hosts: values rendered
//! into commands are shell-quoted (`| safe` opts out, visibly), templates
//! read nothing of the environment but `env.NAME`, a multi-line secret is
//! absent from every output path, and the stage's age-encrypted secrets
//! file round-trips through `shipit secrets` and reaches the hosts mode
//! 0600. The comment above each test names the protection it checks.

mod support;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::deploy_yml::yaml_str;
use support::project::{expect_exit, shipit_cmd, stdout, text, Project};

/// Payloads that create `canary` if a shell ever evaluates them.
fn payloads(canary: &Path) -> Vec<String> {
    let c = canary.display();
    vec![
        format!("$(touch {c})"),
        format!("`touch {c}`"),
        format!("x; touch {c}"),
        format!("x\ntouch {c}"),
        format!("'; touch {c}; '"),
        format!("\"; touch {c}; \""),
        format!("x && touch {c} #"),
        format!("x | touch {c}"),
    ]
}

/// A directory without a leading `.` anywhere, holding the canary's place.
fn canary_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("quoted")
        .tempdir_in("/tmp")
        .unwrap();
    let canary = dir.path().join("canary");
    (dir, canary)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

// ---------------------------------------------------------------------------
// 1. Quoted by default

/// Protection: a value rendered into a `run:` command is one shell word,
/// whatever it holds (`$(…)`, backticks, `;`, newline, quotes), outside
/// quotes and inside `"…"` or `'…'`, on the hosts and on the machine
/// running shipit, and through `-o`; `| safe` inserts a value as shell
/// code, and `plan` says where.
#[test]
fn values_in_commands_are_one_word_unless_marked_safe() {
    let (_dir, canary) = canary_dir();
    let p = Project::new(2);
    let pl = payloads(&canary);
    let vars: Vec<String> = pl
        .iter()
        .enumerate()
        .map(|(i, v)| format!("m{i}: {}", yaml_str(v)))
        .collect();
    let words: Vec<String> = (0..pl.len()).map(|i| format!("{{{{ m{i} }}}}")).collect();
    let local_out = p.dir.join("local-motto");
    let top = format!(
        "vars: {{ {vars}, words: \"two words\" }}\n\
         tasks:\n\
         \x20 build:\n    after: create_release\n    run: {build}\n\
         \x20 greet:\n    after: build\n    run: {greet}\n\
         \x20 notify:\n    after: greet\n    local: true\n    run: {notify}\n",
        vars = vars.join(", "),
        build = yaml_str(&format!(
            "printf '%s\\n' {} > MOTTO; printf '%s' \"in quotes: {{{{ m1 }}}}\" '{{{{ m4 }}}}' > QUOTED",
            words.join(" ")
        )),
        greet = yaml_str("for w in {{ words | safe }}; do echo \"$w\"; done > WORDS"),
        notify = yaml_str(&format!(
            "printf '%s' {{{{ m0 }}}} {{{{ m3 }}}} > {}",
            local_out.display()
        )),
    );
    p.write_config(&top, "", |_| String::new());

    let plan = p.run_expect(&["plan", "staging"], 0);
    let plan = stdout(&plan);
    assert!(
        plan.contains("task `greet`") && plan.contains("{{ words | safe }}"),
        "plan names the unquoted insertion:\n{plan}"
    );
    assert!(!canary.exists(), "plan ran a payload");

    let out = p.deploy();
    assert!(!canary.exists(), "a payload ran:\n{}", text(&out));
    expect_exit(out, 0);
    for d in p.hosts() {
        let cur = d.join("current");
        let motto = fs::read_to_string(cur.join("MOTTO")).unwrap();
        assert_eq!(
            motto,
            pl.join("\n") + "\n",
            "each value arrived as one word"
        );
        let quoted = fs::read_to_string(cur.join("QUOTED")).unwrap();
        assert_eq!(
            quoted,
            format!("in quotes: {}{}", pl[1], pl[4]),
            "and inside quotes"
        );
        let words = fs::read_to_string(cur.join("WORDS")).unwrap();
        assert_eq!(words, "two\nwords\n", "`| safe` inserts shell code");
    }
    assert_eq!(
        fs::read_to_string(&local_out).unwrap(),
        format!("{}{}", pl[0], pl[3])
    );

    // A value given with `-o` is quoted the same way.
    let out = p.run_expect(&["deploy", "staging", "-o", &format!("m1={}", pl[2])], 0);
    assert!(
        !canary.exists(),
        "a payload given with -o ran:\n{}",
        text(&out)
    );
    let motto = fs::read_to_string(p.hosts()[0].join("current/MOTTO")).unwrap();
    assert_eq!(motto.lines().nth(1), Some(pl[2].as_str()));
}

// ---------------------------------------------------------------------------
// 2. No back door to the environment

/// Protection: tera's `get_env()` and the context dump `__tera_context`
/// are refused in commands and templates (exit 2, naming what to use
/// instead), so nothing of the environment but a declared, redacted
/// `env.NAME` reaches a command, a file or `plan`.
#[test]
fn templates_and_commands_read_the_environment_only_through_env_names() {
    const HIDDEN: &str = "hidden-6d1e-value";
    let p = Project::new(1);
    let run = |args: &[&str]| {
        shipit_cmd(&p.dir, args)
            .env("HIDDEN_SETTING", HIDDEN)
            .env("DB_PASSWORD", "declared-pw-91c2")
            .output()
            .unwrap()
    };
    let attempts = [
        "{{ get_env(name=\"HIDDEN_SETTING\") }}",
        "{{ get_env(name=\"HIDDEN_SETTING\", default=\"\") | safe }}",
        "{{ __tera_context }}",
        "{{ env.DB_PASSWORD }}{{ __tera_context | safe }}",
    ];
    for body in attempts {
        for in_task in [true, false] {
            let top = if in_task {
                format!(
                    "tasks:\n  build:\n    after: create_release\n    run: {}\n",
                    yaml_str(&format!("echo {body} > OUT"))
                )
            } else {
                fs::write(p.dir.join("templates/app.env.tera"), body).unwrap();
                "templates:\n  - { src: templates/app.env.tera, dest: shared/.env }\n".into()
            };
            p.write_config(&top, "", |_| String::new());
            // `plan` shows a task's command, not a template's text.
            let plan = run(&["plan", "staging"]);
            assert!(!text(&plan).contains(HIDDEN), "{}", text(&plan));
            let runs = if in_task {
                vec![plan, run(&["deploy", "staging"])]
            } else {
                vec![run(&["deploy", "staging"])]
            };
            for out in runs {
                let all = text(&out);
                assert_eq!(
                    out.status.code(),
                    Some(2),
                    "{body} (task: {in_task}):\n{all}"
                );
                assert!(!all.contains(HIDDEN), "{all}");
                assert!(!all.contains("declared-pw-91c2"), "{all}");
                assert!(
                    all.contains("get_env") || all.contains("__tera_context"),
                    "the refusal names what was used:\n{all}"
                );
                assert!(all.contains("env.NAME"), "and says what to use:\n{all}");
            }
        }
    }
    assert_eq!(fs::read_dir(&p.hosts()[0]).unwrap().count(), 0);

    // The declared way works, and is redacted.
    fs::write(
        p.dir.join("templates/app.env.tera"),
        "DB_PASSWORD={{ env.DB_PASSWORD }}\n",
    )
    .unwrap();
    p.write_config(
        "templates:\n  - { src: templates/app.env.tera, dest: shared/.env, mode: \"0600\" }\n",
        "",
        |_| String::new(),
    );
    let out = run(&["deploy", "staging", "-v"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains("declared-pw-91c2"));
    assert_eq!(
        fs::read_to_string(p.hosts()[0].join("shared/.env")).unwrap(),
        "DB_PASSWORD=declared-pw-91c2\n"
    );
}

// ---------------------------------------------------------------------------
// 3. Redaction everywhere

/// A PEM-like key: a header, lines of base64-looking text, a footer.
fn pem(tag: &str) -> (String, Vec<String>) {
    let body: Vec<String> = (0..5)
        .map(|i| format!("MIIE{tag}{i}qhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQC7{i}x{tag}Zq"))
        .collect();
    let text = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----",
        body.join("\n")
    );
    (text, body)
}

#[track_caller]
fn assert_hidden(what: &str, text: &str, secret: &str, lines: &[String]) {
    assert!(
        !text.contains(secret),
        "{what} shows the whole secret:\n{text}"
    );
    for l in lines {
        assert!(!text.contains(l.as_str()), "{what} shows `{l}`:\n{text}");
    }
}

/// Protection: a multi-line secret read as `env.NAME` (a PEM key) is
/// masked whole and line by line in `plan`, in `-v` plain output, in
/// `--format json`, in the JUnit report, in `SHIPIT_LOG=debug` logs and in
/// the failure tail; and the JUnit report carries no terminal escapes (nor
/// the U+FFFD they used to become).
#[test]
fn a_multi_line_secret_is_absent_from_every_output_path() {
    let p = Project::new(2);
    let (secret, lines) = pem("k7");
    let top = yaml_str(
        "printf '%s\\n' {{ env.SIGNING_PEM }} | sed 's/^/> /' >&2; \
         printf '\\033[31mred\\033[0m alert\\n' >&2; exit 3",
    );
    p.write_config(
        &format!("tasks:\n  build:\n    after: create_release\n    run: {top}\n"),
        "",
        |_| String::new(),
    );
    let junit = p.dir.join("junit.xml");
    let run = |args: &[&str]| -> Output {
        shipit_cmd(&p.dir, args)
            .env("SIGNING_PEM", &secret)
            .env("SHIPIT_LOG", "debug")
            .output()
            .unwrap()
    };

    let out = run(&["plan", "staging"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stdout(&out).contains("[redacted]"), "{}", text(&out));
    assert_hidden("plan", &text(&out), &secret, &lines);

    let out = run(&["deploy", "staging", "-v"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("> [redacted]"),
        "the tail is shown, masked:\n{all}"
    );
    assert_hidden("deploy -v and its log", &all, &secret, &lines);

    let out = run(&[
        "deploy",
        "staging",
        "--format",
        "json",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let events = support::report::json_events(&out);
    assert!(events.iter().any(|e| e["event"] == "step_failed"));
    assert_hidden("deploy --format json", &text(&out), &secret, &lines);
    let xml = support::report::valid_junit(&junit);
    assert_hidden("the JUnit report", &xml, &secret, &lines);
    assert!(xml.contains("red alert"), "{xml}");
    assert!(
        !xml.contains('\u{1b}') && !xml.contains('\u{fffd}'),
        "{xml}"
    );
    assert!(!xml.contains("[31m") && !xml.contains("[0m"), "{xml}");
}

// ---------------------------------------------------------------------------
// 4. Secrets at rest

/// An ed25519 ssh key pair made by ssh-keygen in `dir`: (private key path,
/// public key line).
fn ssh_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C"])
        .arg(format!("{name}@example"))
        .arg("-f")
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let public = fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_string())
}

/// `shipit secrets ARGS` with `identity` as SHIPIT_AGE_IDENTITY and
/// `input` on stdin.
fn secrets(p: &Project, identity: &Path, args: &[&str], input: &str) -> Output {
    let mut c = shipit_cmd(&p.dir, &[&["secrets"][..], args].concat());
    c.env("SHIPIT_AGE_IDENTITY", identity)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Every file under `dir` whose contents hold `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for e in entries {
        let path = e.unwrap().path();
        let meta = fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            found.extend(files_holding(&path, needle));
        } else if meta.is_file()
            && String::from_utf8_lossy(&fs::read(&path).unwrap()).contains(needle)
        {
            found.push(path);
        }
    }
    found
}

const SECRETS_TOP: &str = "secrets: { file: \"config/secrets/{{ stage }}.age\" }\n";

/// Protection: `secrets set/show/edit` keep the stage's values encrypted
/// to the recipients listed beside the file (an ssh ed25519 key and an
/// age X25519 key); `show` lists names and only `--reveal` shows values;
/// `edit` goes through a private (0600) temp file that is gone afterwards.
/// A deploy decrypts in memory: `{{ secrets.NAME }}` reaches the hosts'
/// files (mode 0600 whatever the template asks) and commands, never any
/// output (nor what `exec` prints of them), and nothing on this machine
/// holds a value in clear.
#[test]
fn secrets_round_trip_through_the_cli_and_reach_the_hosts_mode_0600() {
    let p = Project::new(2);
    let keys = tempfile::tempdir().unwrap();
    let (ssh_private, ssh_public) = ssh_key(keys.path(), "alice");
    let age_identity = age::x25519::Identity::generate();
    let age_file = keys.path().join("bob.agekey");
    {
        use age::secrecy::ExposeSecret;
        fs::write(
            &age_file,
            format!("{}\n", age_identity.to_string().expose_secret()),
        )
        .unwrap();
    }
    let age_public = age_identity.to_public().to_string();
    fs::create_dir_all(p.dir.join("config/secrets")).unwrap();
    fs::write(
        p.dir.join("config/secrets/staging.recipients"),
        format!("# alice's ssh key\n{ssh_public}\n\n# bob\n{age_public}\n"),
    )
    .unwrap();
    let (pem_text, pem_lines) = pem("s3");
    fs::write(
        p.dir.join("templates/app.env.tera"),
        "DB_PASSWORD={{ secrets.DB_PASSWORD }}\n{{ secrets.TLS_KEY }}\n",
    )
    .unwrap();
    p.write_config(
        &format!(
            "{SECRETS_TOP}templates:\n  - {{ src: templates/app.env.tera, dest: shared/.env, mode: \"0644\" }}\n\
             env: {{ TLS_FROM_ENV: \"{{{{ secrets.TLS_KEY }}}}\" }}\n\
             tasks:\n  build:\n    after: create_release\n    run: \"printf '%s' {{{{ secrets.DB_PASSWORD }}}} > SEEN; printf '%s' \\\"$TLS_FROM_ENV\\\" > SEEN_ENV\"\n"
        ),
        "",
        |_| String::new(),
    );

    // set: from stdin, one trailing newline dropped.
    let out = secrets(
        &p,
        &ssh_private,
        &["set", "staging", "DB_PASSWORD"],
        "pw-0ld-3c1d\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = secrets(&p, &age_file, &["set", "staging", "TLS_KEY"], &pem_text);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let file = p.dir.join("config/secrets/staging.age");
    let at_rest = fs::read_to_string(&file).unwrap();
    assert!(
        at_rest.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
        "{at_rest}"
    );
    assert_hidden("the encrypted file", &at_rest, "pw-0ld-3c1d", &pem_lines);

    // show: names only; values with --reveal, with either key.
    let out = secrets(&p, &age_file, &["show", "staging"], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(stdout(&out), "DB_PASSWORD\nTLS_KEY\n");
    let out = secrets(&p, &ssh_private, &["show", "staging", "--reveal"], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("DB_PASSWORD=\"pw-0ld-3c1d\""),
        "{}",
        text(&out)
    );
    assert!(stdout(&out).contains(&pem_lines[2]), "{}", text(&out));

    // edit: never a vi that hangs a job without a terminal.
    let out = shipit_cmd(&p.dir, &["secrets", "edit", "staging"])
        .env("SHIPIT_AGE_IDENTITY", &ssh_private)
        .env_remove("EDITOR")
        .env_remove("VISUAL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("needs $EDITOR or a terminal"),
        "{}",
        text(&out)
    );

    // edit: $EDITOR gets a private temp file, removed afterwards.
    let seen = keys.path().join("editor-saw");
    let editor = keys.path().join("editor.sh");
    fs::write(
        &editor,
        format!(
            "#!/bin/sh\nstat -c '%a %n' \"$1\" > {seen}\nsed -i 's/pw-0ld-3c1d/pw-n3w-77aa/' \"$1\"\n",
            seen = seen.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&editor, fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = shipit_cmd(&p.dir, &["secrets", "edit", "staging"]);
    let out = c
        .env("SHIPIT_AGE_IDENTITY", &ssh_private)
        .env("EDITOR", &editor)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let saw = fs::read_to_string(&seen).unwrap();
    let (perm, temp) = saw.trim().split_once(' ').unwrap();
    assert_eq!(perm, "600", "{saw}");
    assert!(!Path::new(temp).exists(), "the temp file is gone: {temp}");
    assert!(!fs::read_to_string(&file).unwrap().contains("pw-n3w-77aa"));
    let out = secrets(&p, &age_file, &["show", "staging", "--reveal"], "");
    assert!(
        stdout(&out).contains("DB_PASSWORD=\"pw-n3w-77aa\""),
        "{}",
        text(&out)
    );

    // deploy: decrypted in memory, 0600 on the hosts, never shown.
    let tmpdir = tempfile::tempdir().unwrap();
    let junit = keys.path().join("junit.xml");
    let run = |args: &[&str]| {
        shipit_cmd(&p.dir, args)
            .env("SHIPIT_AGE_IDENTITY", &ssh_private)
            .env("SHIPIT_LOG", "debug")
            .env("TMPDIR", tmpdir.path())
            .output()
            .unwrap()
    };
    let out = run(&["plan", "staging"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_hidden("plan", &text(&out), "pw-n3w-77aa", &pem_lines);
    let out = run(&[
        "deploy",
        "staging",
        "-v",
        "--format",
        "json",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_hidden("deploy", &text(&out), "pw-n3w-77aa", &pem_lines);
    assert_hidden(
        "the JUnit report",
        &fs::read_to_string(&junit).unwrap(),
        "pw-n3w-77aa",
        &pem_lines,
    );
    for d in p.hosts() {
        let env = d.join("shared/.env");
        assert_eq!(
            fs::read_to_string(&env).unwrap(),
            format!("DB_PASSWORD=pw-n3w-77aa\n{pem_text}\n")
        );
        assert_eq!(mode(&env), 0o600, "a file rendered with secrets is private");
        assert_eq!(
            fs::read_to_string(d.join("current/SEEN")).unwrap(),
            "pw-n3w-77aa"
        );
        assert_eq!(
            fs::read_to_string(d.join("current/SEEN_ENV")).unwrap(),
            pem_text,
            "an `env:` value reads secrets too"
        );
    }
    // What a host prints of them is masked too (`exec` decrypts to know).
    let env_file = p.hosts()[0].join("shared/.env");
    let out = run(&["exec", "staging", "--", "cat", env_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("DB_PASSWORD=[redacted]"),
        "{}",
        text(&out)
    );
    assert_hidden("exec", &text(&out), "pw-n3w-77aa", &pem_lines);
    assert_eq!(files_holding(&p.dir, "pw-n3w-77aa"), Vec::<PathBuf>::new());
    assert_eq!(
        files_holding(tmpdir.path(), "pw-n3w-77aa"),
        Vec::<PathBuf>::new()
    );
}

/// Protection: without a key that opens the stage's secrets file (another
/// ssh key, or none at all), every command that needs it stops before
/// touching a host with exit 2 and a message naming the file and its
/// recipients; a name the file lacks fails fast too.
#[test]
fn a_wrong_or_missing_key_is_refused_naming_the_file_and_its_recipients() {
    let p = Project::new(1);
    let keys = tempfile::tempdir().unwrap();
    let (alice, alice_public) = ssh_key(keys.path(), "alice");
    let (mallory, _) = ssh_key(keys.path(), "mallory");
    fs::create_dir_all(p.dir.join("config/secrets")).unwrap();
    fs::write(
        p.dir.join("config/secrets/staging.recipients"),
        format!("{alice_public}\n"),
    )
    .unwrap();
    p.write_config(
        &format!(
            "{SECRETS_TOP}tasks:\n  build:\n    after: create_release\n    run: \"echo {{{{ secrets.API_SECRET }}}}\"\n"
        ),
        "",
        |_| String::new(),
    );
    let out = secrets(&p, &alice, &["set", "staging", "API_SECRET"], "s-5e9f");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let empty_home = tempfile::tempdir().unwrap();

    let wrong = shipit_cmd(&p.dir, &["deploy", "staging"])
        .env("SHIPIT_AGE_IDENTITY", &mallory)
        .output()
        .unwrap();
    let missing = shipit_cmd(&p.dir, &["plan", "staging"])
        .env_remove("SHIPIT_AGE_IDENTITY")
        .env("HOME", empty_home.path())
        .output()
        .unwrap();
    for (out, says) in [(&wrong, "mallory"), (&missing, "id_ed25519")] {
        let all = text(out);
        assert_eq!(out.status.code(), Some(2), "{all}");
        assert!(all.contains("config/secrets/staging.age"), "{all}");
        assert!(all.contains(&alice_public), "names the recipients:\n{all}");
        assert!(all.contains(says), "names the key tried:\n{all}");
        assert!(!all.contains("s-5e9f"), "{all}");
    }
    assert_eq!(fs::read_dir(&p.hosts()[0]).unwrap().count(), 0);
    assert_eq!(p.fleet.hosts()[0].logins(), 0);

    // The right key, but a name the file lacks.
    p.write_config(
        &format!(
            "{SECRETS_TOP}tasks:\n  build:\n    after: create_release\n    run: \"echo {{{{ secrets.NOT_THERE }}}}\"\n"
        ),
        "",
        |_| String::new(),
    );
    let out = shipit_cmd(&p.dir, &["deploy", "staging"])
        .env("SHIPIT_AGE_IDENTITY", &alice)
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("`NOT_THERE`"), "{all}");
    assert!(all.contains("config/secrets/staging.age"), "{all}");
    assert_eq!(p.fleet.hosts()[0].logins(), 0);
}
