//! cluster.yaml text → `Config`, or every problem at once.
//!
//! Pure: takes text, returns values. Reading the file is the caller's business.

use super::diagnostic::{ConfigErrors, Diagnostic};
use super::location::{LocationIndex, join_index, join_key};
use super::schema;
use super::types::Config;
use super::validate;
use regex::Regex;
use std::sync::LazyLock;

static AT_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r" at line \d+ column \d+").unwrap_or_else(|e| panic!("built-in regex: {e}"))
});

/// Parses and validates a cluster.yaml. `file` is only used in messages.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigErrors> {
    let errors = |diagnostics| ConfigErrors {
        file: file.to_string(),
        diagnostics,
    };
    if text.trim().is_empty() {
        return Err(errors(vec![Diagnostic::new("", "the file is empty").fix(
            "write a cluster.yaml with `kube-aws init` or copy one from examples/",
        )]));
    }
    let index = LocationIndex::build(text);
    let mut diags = Vec::new();

    let mut unknown: Vec<String> = Vec::new();
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let parsed = serde_ignored::deserialize(de, |p| unknown.push(ignored_path(&p)));
    for path in unknown {
        let mut d = Diagnostic::new(path.clone(), "unknown field");
        let field = path.rsplit(['.', ']']).next().unwrap_or(&path).to_string();
        d.message = format!("unknown field `{field}`");
        d.fix = Some(match schema::fields_at(&path) {
            Some(fields) => match did_you_mean(&field, &fields) {
                Some(best) => format!("did you mean `{best}`?"),
                None => format!("remove it; fields allowed here: {}", fields.join(", ")),
            },
            None => "remove it".to_string(),
        });
        d.pos = index.key(&path);
        diags.push(d);
    }

    match parsed {
        Ok(cfg) => {
            // Unknown keys do not stop deserialization, so the semantic checks run
            // too and one run reports everything.
            for mut d in validate::validate(&cfg) {
                d.pos = index.key(&d.path);
                diags.push(d);
            }
            if diags.is_empty() {
                return Ok(cfg);
            }
        }
        Err(e) => {
            let d = serde_diagnostic(&e, &index);
            // A malformed document (no field path) makes the unknown-key list noise.
            if d.path.is_empty() {
                diags.clear();
            }
            diags.push(d);
        }
    }
    diags.sort_by_key(|d| d.pos.map(|p| (p.line, p.column)));
    Err(errors(diags))
}

/// Turns a serde_yaml_ng error into a diagnostic with a clean path, position and fix.
fn serde_diagnostic(e: &serde_yaml_ng::Error, index: &LocationIndex) -> Diagnostic {
    // serde_yaml_ng prints "<path>: <message> at line L column C[, while …]"; the
    // position is reported separately.
    let mut msg = AT_LINE.replace_all(&e.to_string(), "").into_owned();
    let mut path = String::new();
    if let Some((p, rest)) = msg.split_once(": ")
        && !p.contains(' ')
        && p != "."
    {
        path = p.to_string();
        msg = rest.to_string();
    } else if let Some(rest) = msg.strip_prefix(".: ") {
        msg = rest.to_string();
    }
    let mut d = Diagnostic::new(path.clone(), msg.clone());
    d.pos = e
        .location()
        .map(|l| super::location::Pos {
            line: l.line(),
            column: l.column(),
        })
        .or_else(|| index.value(&path));
    if let Some(variants) = expected_list(&msg, "unknown variant `") {
        let (given, allowed) = variants;
        d.fix = Some(match did_you_mean(&given, &allowed) {
            Some(best) => format!("did you mean `{best}`?"),
            None => format!("use one of: {}", allowed.join(", ")),
        });
    } else if let Some(field) = between(&msg, "missing field `", "`") {
        d.message = format!("required field `{field}` is missing");
        d.fix = Some(format!(
            "add `{field}:` here (see `kube-aws schema` or examples/)"
        ));
        d.path = join_key(&path, field);
    } else if msg.starts_with("invalid type") || msg.starts_with("invalid value") {
        d.fix = Some("give a value of the expected type".to_string());
    } else if msg.contains("invalid IPv4") || msg.contains("invalid IP") {
        d.message = format!("{msg}; expected a CIDR such as 10.0.0.0/16");
        d.fix = Some("write the range as a.b.c.d/prefix".to_string());
    } else if path.is_empty() {
        d.fix = Some("fix the YAML syntax at this position".to_string());
    }
    d
}

/// From "unknown variant `x`, expected one of `a`, `b`" returns ("x", [a, b]).
fn expected_list(msg: &str, prefix: &str) -> Option<(String, Vec<String>)> {
    let given = between(msg, prefix, "`")?.to_string();
    let (_, rest) = msg.split_once("expected ")?;
    let allowed = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect::<Vec<_>>();
    Some((given, allowed))
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = s.find(start)? + start.len();
    let j = s[i..].find(end)? + i;
    Some(&s[i..j])
}

/// The closest allowed name, if it is close enough to be what was meant.
pub fn did_you_mean(given: &str, allowed: &[String]) -> Option<String> {
    let lower = given.to_ascii_lowercase();
    allowed
        .iter()
        .map(|a| {
            let score = strsim::jaro_winkler(&lower, &a.to_ascii_lowercase());
            (score, a)
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, a)| a.clone())
}

fn ignored_path(p: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match p {
        Path::Root => String::new(),
        Path::Seq { parent, index } => join_index(&ignored_path(parent), *index),
        Path::Map { parent, key } => join_key(&ignored_path(parent), key),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}
