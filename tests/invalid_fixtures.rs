//! Every file under tests/fixtures/invalid/ is a broken cluster.yaml whose header says
//! what `kube-aws validate` must report: exit 1, `FILE:LINE:` (or some line:column for
//! `expect-line: any`), the field path and a message fragment.

mod common;

use std::path::Path;

struct Expect {
    line: Option<usize>,
    path: String,
    message: String,
}

fn header(text: &str, key: &str) -> Option<String> {
    text.lines()
        .take_while(|l| l.starts_with('#'))
        .find_map(|l| l.strip_prefix(&format!("# {key}: ")).map(str::to_string))
}

fn expect(text: &str) -> Expect {
    let line = header(text, "expect-line").expect("expect-line header");
    Expect {
        line: if line == "any" {
            None
        } else {
            Some(line.parse().expect("line number"))
        },
        path: header(text, "expect-path").expect("expect-path header"),
        message: header(text, "expect-message").expect("expect-message header"),
    }
}

#[test]
fn every_invalid_fixture_fails_with_field_and_line() {
    let dir = common::repo().join("tests/fixtures/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixture dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 40, "only {} fixtures", files.len());
    let position = regex::Regex::new(r":\d+:\d+: ").expect("regex");
    let mut failures = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("fixture");
        let want = expect(&text);
        let name = f.file_name().expect("name").to_string_lossy().into_owned();
        let out = common::run_in(&dir, &["validate", &name]);
        let stderr = common::text(&out.stderr);
        let mut why = Vec::new();
        if out.status.code() != Some(1) {
            why.push(format!("exit {:?}, want 1", out.status.code()));
        }
        match want.line {
            Some(l) if !stderr.contains(&format!("{name}:{l}:")) => {
                why.push(format!("no `{name}:{l}:`"))
            }
            None if !position.is_match(&stderr) => why.push("no line:column".into()),
            _ => {}
        }
        if !stderr.contains(&want.path) {
            why.push(format!("no field path `{}`", want.path));
        }
        if !stderr.contains(&want.message) {
            why.push(format!("no message `{}`", want.message));
        }
        if !stderr.contains("fix: ") {
            why.push("no fix".into());
        }
        if stderr.contains("panicked") {
            why.push("panic".into());
        }
        if !why.is_empty() {
            failures.push(format!("{}: {}\n{stderr}", display(f), why.join("; ")));
        }
    }
    eprintln!("{} invalid fixtures checked", files.len());
    assert!(
        failures.is_empty(),
        "{} fixture(s) misbehaved:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn display(p: &Path) -> String {
    p.strip_prefix(common::repo())
        .unwrap_or(p)
        .display()
        .to_string()
}

#[test]
fn all_problems_are_reported_in_one_run() {
    let text = "clusterName: Bad_Name\ns3URI: bucket\nregion: us-west-2\nkmsKeyArn: nope\n\
apiEndpoints: [{name: a, dnsName: k8s.example.com}]\n\
subnets: [{name: s, availabilityZone: eu-west-1a, cidr: 10.0.0.0/24}]\n\
etcd: {count: 4}\nworker: {nodePools: [{name: p, minSize: 5, maxSize: 2, desiredCapacity: 3, instanceTyp: x}]}\n";
    let err = kube_aws::config::parse(text, "cluster.yaml").expect_err("invalid");
    let paths: Vec<&str> = err.diagnostics.iter().map(|d| d.path.as_str()).collect();
    for want in [
        "clusterName",
        "s3URI",
        "kmsKeyArn",
        "subnets[0].availabilityZone",
        "etcd.count",
        "worker.nodePools[0].minSize",
        "worker.nodePools[0].desiredCapacity",
        "worker.nodePools[0].instanceTyp",
    ] {
        assert!(paths.contains(&want), "{want} missing from {paths:?}");
    }
    assert!(err.diagnostics.iter().all(|d| d.pos.is_some()), "{err}");
}
