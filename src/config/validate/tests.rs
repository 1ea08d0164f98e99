use super::*;

#[test]
fn explore() {
    let ctx = ParseContext { cwd: PathBuf::from(env!("CARGO_MANIFEST_DIR")), home: Some("/home/me".into()) };
    let cases = [
        "application: shop\nrepository: x\nstages: {}\nssh:\n  user: a\n  colour: red\n",
        "application: shop\nrepository: x\nstages: {}\nssh: { user: a, colour: red }\n",
        "application: shop\nstages: {}\n",
        "application: shop\nrepository: x\nstages:\n  a:\n    hosts:\n      - { roles: [x] }\n",
        "application: shop\nrepository: x\nstages: {}\nkeep_releases: five\n",
        "application: shop\nrepository: x\nstages: {}\nkeep_releases: -1\n",
        "application: shop\nrepository: x\nstages: {}\nstrategy: svn\n",
        "application: shop\nrepository: x\nstages: {}\nssh: { port: 70000 }\n",
        "application: shop\nrepository: x\nstages: {}\nssh: { connect_timeout: 1.5 }\n",
        "application: shop\nrepository: x\nstages: {}\nlinked_files: log\n",
        "application: shop\nrepository: x\nstages: {}\nssh: 3\n",
        "application: shop\nrepository: x\nstages: {}\ntasks:\n  a: { run: x }\n  a: { run: y }\n",
        "application: shop\nrepository: x\nstages: {}\nstages: {}\n",
        "application: shop\nrepository: x\nstages: {\n",
        "application: shop\n  repository: x\n",
        "application: [shop\n",
        "- a\n- b\n",
        "# nothing\n",
        "",
        "application: shop\nrepository: x\nstages: {}\n---\na: b\n",
        "application: shop\nrepository: x\nstages: {}\nssh: { host_key_checking: yes }\n",
        "application: shop\nrepository: x\nstages: {}\nvars: { a: !tag x }\n",
        "application: shop\nrepository: x\nstages: {}\nvars: { a: .nan }\n",
        "application: shop\nrepository: x\nstages: {}\ntemplates: [ { src: a, dest: b, mode: true } ]\n",
        "application: shop\nrepository: x\nstages:\n  a:\n    hosts: [ { host: a } ]\n    gate: { nope: 1 }\n",
        "application: shop\nrepository: x\nstages:\n  a:\n    rollout: {}\n",
    ];
    for c in cases {
        match parse_with(c, Path::new("deploy.yml"), &ctx) {
            Ok(_) => println!("OK"),
            Err(e) => println!("{e}"),
        }
    }
    let m = SourceMap::build("a: 1\nb:\n  - x\n  - { c: d }\n  -  \"q\"\ne: [1, 2]\n");
    println!("{:?}", m);
    panic!();
}
