//! OSB error answers. A 4xx explains the platform's mistake; a 5xx tells the platform only
//! a reference that the broker's log carries with the whole cause, so account ids, role
//! ARNs and raw AWS messages never leave the broker (OSB 2.17 "Service Broker Errors":
//! the body is `{"error": code?, "description": text?}`).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub struct OsbError {
    pub status: StatusCode,
    pub error: Option<&'static str>,
    pub description: String,
}

impl OsbError {
    pub fn new(status: StatusCode, error: Option<&'static str>, d: impl Into<String>) -> Self {
        OsbError {
            status,
            error,
            description: d.into(),
        }
    }

    pub fn bad(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, None, d)
    }

    pub fn not_found(d: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, None, d)
    }

    pub fn gone() -> Self {
        Self::new(StatusCode::GONE, None, "")
    }

    pub fn conflict(d: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, None, d)
    }

    pub fn concurrency() -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("ConcurrencyError"),
            "another operation for this service instance is in progress",
        )
    }

    pub fn async_required() -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("AsyncRequired"),
            "this service plan requires client support for asynchronous service operations",
        )
    }

    /// A CloudFormation refusal caused by the request (say, a parameter a template
    /// rejects): 400, with account ids and ARNs masked.
    pub fn refused(msg: &str) -> Self {
        Self::bad(scrub(msg))
    }

    /// The broker's own failure: logged in full under a reference, answered as 500 with
    /// the reference only.
    pub fn internal(e: anyhow::Error) -> Self {
        let r = reference();
        eprintln!("internal error {r}: {}", escape(&format!("{e:#}")));
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            format!("internal error (reference {r}); the broker's log has the cause"),
        )
    }
}

impl IntoResponse for OsbError {
    fn into_response(self) -> Response {
        let mut body = json!({});
        if !self.description.is_empty() {
            body["description"] = json!(self.description);
        }
        if let Some(e) = self.error {
            body["error"] = json!(e);
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<anyhow::Error> for OsbError {
    fn from(e: anyhow::Error) -> Self {
        OsbError::internal(e)
    }
}

impl From<crate::deploy::broker::CfnError> for OsbError {
    fn from(e: crate::deploy::broker::CfnError) -> Self {
        match e {
            crate::deploy::broker::CfnError::Refused(m) => OsbError::refused(&m),
            crate::deploy::broker::CfnError::Other(e) => OsbError::internal(e),
        }
    }
}

fn reference() -> String {
    let mut b = [0u8; 6];
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        b.copy_from_slice(&t.to_le_bytes()[..6]);
    }
    format!("ref-{}", hex::encode(b))
}

/// Masks what identifies the account: every `arn:…` token becomes `arn:…`, every run of
/// twelve digits (an account id) `************`.
pub fn scrub(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find("arn:") {
        out.push_str(&rest[..i]);
        out.push_str("arn:…");
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ')' | ']'))
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    let chars: Vec<char> = out.chars().collect();
    let mut masked = String::with_capacity(out.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() {
            let j = (i..chars.len())
                .find(|&j| !chars[j].is_ascii_digit())
                .unwrap_or(chars.len());
            if j - i == 12 {
                masked.push_str("************");
            } else {
                masked.extend(&chars[i..j]);
            }
            i = j;
        } else {
            masked.push(chars[i]);
            i += 1;
        }
    }
    masked
}

/// Makes untrusted text one safe log line: control characters (a newline would forge a
/// line) and backslashes are escaped.
pub fn escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() || c == '\\' {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_account_ids_and_arns() {
        let m = "ValidationError: User: arn:aws:sts::123456789012:assumed-role/broker/x is not authorized (account 123456789012, port 5432)";
        let s = scrub(m);
        assert!(!s.contains("123456789012"), "{s}");
        assert!(!s.contains("assumed-role"), "{s}");
        assert!(
            s.contains("port 5432") && s.contains("ValidationError"),
            "{s}"
        );
    }

    #[test]
    fn internal_errors_carry_only_a_reference() {
        let e = OsbError::internal(anyhow::anyhow!(
            "AccessDenied: arn:aws:iam::123456789012:role/kube-aws-broker"
        ));
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(e.description.starts_with("internal error (reference ref-"));
        assert!(!e.description.contains("123456789012"));
    }

    #[test]
    fn escapes_log_lines() {
        assert_eq!(escape("alice\nGET /v2 -> 200"), "alice\\nGET /v2 -> 200");
        assert_eq!(escape("a\\b\u{1b}"), "a\\\\b\\u{1b}");
    }
}
