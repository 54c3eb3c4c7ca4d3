//! Bootstrap token rotation (pure). The token nodes join with used to live forever
//! (`ttl: 0s`). Now the first one lives `TTL_HOURS` (kubeadm's own default TTL, 24h:
//! kubeadm InitConfiguration `bootstrapTokens[].ttl`), and the controllers' timer
//! (`kube-aws node rotate-token`) creates a fresh one before the published one gets
//! within `RENEW_BELOW_HOURS` of its expiry, then publishes it KMS-encrypted at one fixed
//! S3 key that joining nodes read. Expired tokens are deleted by the controller
//! manager's TokenCleaner.
//!
//! The Secret follows "Authenticating with Bootstrap Tokens"
//! (https://kubernetes.io/docs/reference/access-authn-authz/bootstrap-tokens/): named
//! `bootstrap-token-<token id>` in kube-system, type `bootstrap.kubernetes.io/token`,
//! `expiration` in RFC 3339, and the group kubeadm's RBAC binds for joining nodes.

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub const TTL_HOURS: i64 = 24;
pub const RENEW_BELOW_HOURS: i64 = 12;
/// The group `kubeadm init` binds to node bootstrap and CSR auto-approval.
pub const NODE_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
/// `bootstrapTokens[].ttl` of the first token, in the kubeadm Duration form.
pub const INIT_TTL: &str = "24h0m0s";

/// The token id (`abcdef` of `abcdef.0123456789abcdef`), if the text is a token.
pub fn token_id(token: &str) -> Option<&str> {
    let (id, secret) = token.trim().split_once('.')?;
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    (ok(id, 6) && ok(secret, 16)).then_some(id)
}

/// Whether the published token must be replaced: it has no Secret (deleted, or never
/// created), or its expiration is unreadable or within `RENEW_BELOW_HOURS`.
pub fn needs_new(expiration: Option<&str>, now: OffsetDateTime) -> bool {
    match expiration.and_then(|e| OffsetDateTime::parse(e, &Rfc3339).ok()) {
        Some(t) => t - now < time::Duration::hours(RENEW_BELOW_HOURS),
        None => true,
    }
}

/// The token's Secret, expiring `TTL_HOURS` after `now`.
pub fn secret(token: &str, now: OffsetDateTime) -> Option<Value> {
    let id = token_id(token)?;
    let (_, secret) = token.trim().split_once('.')?;
    let expires = (now + time::Duration::hours(TTL_HOURS))
        .replace_nanosecond(0)
        .ok()?
        .format(&Rfc3339)
        .ok()?;
    Some(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
        "type": "bootstrap.kubernetes.io/token",
        "stringData": {
            "description": "kube-aws: rotated by kube-aws-token.timer on the controllers",
            "token-id": id,
            "token-secret": secret,
            "expiration": expires,
            "usage-bootstrap-authentication": "true",
            "usage-bootstrap-signing": "true",
            "auth-extra-groups": NODE_GROUP,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_decisions_and_the_secret() {
        let now = OffsetDateTime::parse("2026-12-03T12:00:00Z", &Rfc3339).expect("time");
        assert!(!needs_new(Some("2026-12-04T11:00:00Z"), now));
        assert!(needs_new(Some("2026-12-03T23:00:00Z"), now));
        assert!(needs_new(Some("garbage"), now));
        assert!(needs_new(None, now));
        assert_eq!(token_id("abcdef.0123456789abcdef\n"), Some("abcdef"));
        assert_eq!(token_id("ABCDEF.0123456789abcdef"), None);
        assert_eq!(token_id("abcdef.0123"), None);
        let s = secret("abcdef.0123456789abcdef", now).expect("secret");
        assert_eq!(s["metadata"]["name"], "bootstrap-token-abcdef");
        assert_eq!(s["stringData"]["expiration"], "2026-12-04T12:00:00Z");
        assert_eq!(s["stringData"]["token-secret"], "0123456789abcdef");
        assert_eq!(s["stringData"]["auth-extra-groups"], NODE_GROUP);
    }
}
