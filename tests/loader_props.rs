//! Property tests of the cluster.yaml loader: arbitrary bytes and arbitrary mutations
//! of valid files never panic, and every reported problem is well-formed.
//!
//! Case counts: 3,000 + 3,000 + 6,000 generated inputs plus 7 pathological ones per
//! run; PROPTEST_CASES overrides the generated counts.

mod common;

use proptest::prelude::*;
use std::sync::LazyLock;

static EXAMPLES: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut v: Vec<String> = std::fs::read_dir(common::repo().join("examples"))
        .expect("examples/")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("read"))
        .collect();
    v.sort();
    v
});

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Parses and checks the result is either Ok or a list of positioned problems.
fn check(text: &str) {
    if let Err(e) = kube_aws::config::parse(text, "fuzz.yaml") {
        assert!(!e.diagnostics.is_empty());
        // Display must not panic either.
        let shown = e.to_string();
        assert!(shown.contains("fuzz.yaml"));
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipByte(usize, u8),
    Delete(usize, usize),
    Insert(usize, String),
    DuplicateLine(usize),
    DeleteLine(usize),
    SwapLines(usize, usize),
    Indent(usize, i8),
    ReplaceScalar(usize, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let junk = prop_oneof![
        Just("-".to_string()),
        Just(": ".to_string()),
        Just("[".to_string()),
        Just("{".to_string()),
        Just("\t".to_string()),
        Just("&a ".to_string()),
        Just("*a".to_string()),
        Just("!!binary ".to_string()),
        Just("\"".to_string()),
        Just("\n  - ".to_string()),
        Just("<<: *a\n".to_string()),
        "[ -~]{0,12}",
        "\\PC{0,6}",
    ];
    let scalar = prop_oneof![
        Just("-1".to_string()),
        Just("4294967296".to_string()),
        Just("~".to_string()),
        Just("0.0.0.0/0".to_string()),
        Just("255.255.255.255/32".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("\"\"".to_string()),
        Just("true".to_string()),
        "[a-z0-9./:-]{0,20}",
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::FlipByte(i, b)),
        (any::<usize>(), 1usize..40).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<usize>(), junk).prop_map(|(i, s)| Mutation::Insert(i, s)),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        any::<usize>().prop_map(Mutation::DeleteLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (any::<usize>(), -4i8..4).prop_map(|(i, d)| Mutation::Indent(i, d)),
        (any::<usize>(), scalar).prop_map(|(i, s)| Mutation::ReplaceScalar(i, s)),
    ]
}

fn apply(text: &str, m: &Mutation) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let n = lines.len().max(1);
    match m {
        Mutation::FlipByte(i, b) => {
            if !bytes.is_empty() {
                let i = i % bytes.len();
                bytes[i] = *b;
            }
            return String::from_utf8_lossy(&bytes).into_owned();
        }
        Mutation::Delete(i, len) => {
            if !bytes.is_empty() {
                let i = i % bytes.len();
                let end = (i + len).min(bytes.len());
                bytes.drain(i..end);
            }
            return String::from_utf8_lossy(&bytes).into_owned();
        }
        Mutation::Insert(i, s) => {
            let i = i % (bytes.len() + 1);
            bytes.splice(i..i, s.bytes());
            return String::from_utf8_lossy(&bytes).into_owned();
        }
        Mutation::DuplicateLine(i) => {
            if !lines.is_empty() {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
        }
        Mutation::DeleteLine(i) => {
            if !lines.is_empty() {
                lines.remove(i % n);
            }
        }
        Mutation::SwapLines(a, b) => {
            if !lines.is_empty() {
                lines.swap(a % n, b % n);
            }
        }
        Mutation::Indent(i, d) => {
            if !lines.is_empty() {
                let l = &mut lines[i % n];
                if *d > 0 {
                    l.insert_str(0, &" ".repeat(*d as usize));
                } else {
                    let k = l.len() - l.trim_start().len();
                    l.drain(..k.min(d.unsigned_abs() as usize));
                }
            }
        }
        Mutation::ReplaceScalar(i, s) => {
            if !lines.is_empty() {
                let l = &mut lines[i % n];
                if let Some(c) = l.find(": ") {
                    l.truncate(c + 2);
                    l.push_str(s);
                }
            }
        }
    }
    lines.join("\n") + "\n"
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(3000), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn arbitrary_yamlish_text_never_panics(s in "([a-zA-Z:{}\\[\\],\\-#&*!|>'\" \n\t0-9./]){0,400}") {
        check(&s);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(6000), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_examples_never_panic(which in any::<usize>(), ms in proptest::collection::vec(mutation(), 1..6)) {
        let base = &EXAMPLES[which % EXAMPLES.len()];
        let mut text = base.clone();
        for m in &ms {
            text = apply(&text, m);
        }
        check(&text);
    }
}

#[test]
fn pathological_inputs_never_panic() {
    let deep_seq = "[".repeat(100_000);
    let deep_map = "a: ".repeat(20_000) + "b";
    let deep_block: String = (0..5_000)
        .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
        .collect();
    let alias_bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n\
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nclusterName: *g\n";
    let nul = "clusterName: a\u{0}b\n";
    let bom = "\u{feff}clusterName: x\n";
    let multi_doc = "clusterName: a\n---\nclusterName: b\n";
    for text in [
        &deep_seq,
        &deep_map,
        &deep_block,
        &alias_bomb.to_string(),
        &nul.to_string(),
        &bom.to_string(),
        &multi_doc.to_string(),
    ] {
        // Run on a thread with a modest stack: a recursion bug would overflow here.
        let t = text.clone();
        let h = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || check(&t))
            .expect("thread");
        h.join().expect("no panic or stack overflow");
    }
}
