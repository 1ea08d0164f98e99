//! What users coming from Capistrano, Deployer and ansistrano reach for,
//! on real sshd hosts: `-o/--set` var overrides, `env:` for every remote
//! command.

mod support;

use std::fs;

use support::project::{current, stderr, stdout, Project};

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
    assert!(plan.contains("echo x y > MOTTO"), "{plan}");
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
