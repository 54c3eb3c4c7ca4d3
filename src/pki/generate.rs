//! Key and certificate generation (rcgen on aws-lc-rs).

use super::spec::{CaId, LeafSpec};
use crate::config::types::KeyAlgorithm;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, RsaKeySize, SanType,
    SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// Certificates start a little in the past, so a node whose clock runs slightly behind
/// still accepts them.
const BACKDATE: Duration = Duration::minutes(5);

pub fn new_key(alg: KeyAlgorithm) -> Result<KeyPair, rcgen::Error> {
    match alg {
        KeyAlgorithm::EcdsaP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
        KeyAlgorithm::Rsa2048 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048),
    }
}

/// 16 random bytes, positive as DER integers want.
fn serial() -> Result<SerialNumber, rcgen::Error> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|_| rcgen::Error::RingUnspecified)?;
    b[0] &= 0x7f;
    b[0] |= 0x01;
    Ok(SerialNumber::from_slice(&b))
}

fn dn(cn: &str, orgs: &[String]) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    for o in orgs {
        d.push(DnType::OrganizationName, o.as_str());
    }
    d.push(DnType::CommonName, cn);
    d
}

fn ca_params(
    ca: CaId,
    cluster: &str,
    days: u32,
    now: OffsetDateTime,
) -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name = dn(ca.common_name(), &[format!("kube-aws:{cluster}")]);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = now - BACKDATE;
    p.not_after = now + Duration::days(days.into());
    p.serial_number = Some(serial()?);
    Ok(p)
}

/// A self-signed CA certificate (PEM).
pub fn ca_cert(
    ca: CaId,
    cluster: &str,
    key: &KeyPair,
    days: u32,
    now: OffsetDateTime,
) -> Result<String, rcgen::Error> {
    Ok(ca_params(ca, cluster, days, now)?.self_signed(key)?.pem())
}

/// A leaf certificate (PEM) for `spec`, signed by `issuer`.
pub fn leaf_cert(
    spec: &LeafSpec,
    key: &KeyPair,
    issuer: &Issuer<'_, &KeyPair>,
    alg: KeyAlgorithm,
    days: u32,
    now: OffsetDateTime,
) -> Result<String, rcgen::Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name = dn(&spec.common_name, &spec.organizations);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if alg == KeyAlgorithm::Rsa2048 {
        p.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    if spec.server_auth {
        p.extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    if spec.client_auth {
        p.extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    for d in &spec.dns_names {
        p.subject_alt_names
            .push(SanType::DnsName(d.as_str().try_into()?));
    }
    for ip in &spec.ip_addresses {
        p.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    p.use_authority_key_identifier_extension = true;
    p.not_before = now - BACKDATE;
    p.not_after = now + Duration::days(days.into());
    p.serial_number = Some(serial()?);
    Ok(p.signed_by(key, issuer)?.pem())
}

/// A kubeadm-style bootstrap token, `[a-z0-9]{6}.[a-z0-9]{16}`.
/// 32 random bytes as hex: the Service Catalog's bearer token for the broker.
pub fn broker_token() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b)?;
    Ok(hex::encode(b))
}

pub fn bootstrap_token() -> Result<String, getrandom::Error> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(23);
    let mut buf = [0u8; 64];
    getrandom::fill(&mut buf)?;
    // 252 = 7 * 36: rejection sampling keeps the draw uniform.
    let mut chars = buf
        .iter()
        .filter(|b| **b < 252)
        .map(|b| ALPHABET[(*b % 36) as usize] as char);
    for i in 0..22 {
        if i == 6 {
            out.push('.');
        }
        match chars.next() {
            Some(c) => out.push(c),
            None => return bootstrap_token(),
        }
    }
    Ok(out)
}

/// An EncryptionConfiguration with a fresh 32-byte secretbox key; `identity` last so that
/// data written before encryption was enabled can still be read.
pub fn encryption_config() -> Result<String, getrandom::Error> {
    use base64::Engine;
    let mut key = [0u8; 32];
    getrandom::fill(&mut key)?;
    Ok(encryption_config_with(
        &base64::engine::general_purpose::STANDARD.encode(key),
    ))
}

/// The EncryptionConfiguration for a given base64 secretbox key
/// (https://kubernetes.io/docs/tasks/administer-cluster/encrypt-data/).
pub fn encryption_config_with(secret: &str) -> String {
    [
        "apiVersion: apiserver.config.k8s.io/v1",
        "kind: EncryptionConfiguration",
        "resources:",
        "  - resources:",
        "      - secrets",
        "    providers:",
        "      - secretbox:",
        "          keys:",
        "            - name: key1",
        &format!("              secret: {secret}"),
        "      - identity: {}",
        "",
    ]
    .join("\n")
}

/// Earlier releases wrote the file with its indentation lost (invalid YAML, which the
/// API server refuses). Returns the repaired file, same key, when `text` is such a file.
pub fn repair_encryption_config(text: &str) -> Option<String> {
    let parsed: Result<serde_yaml_ng::Value, _> = serde_yaml_ng::from_str(text);
    let ok = parsed.ok().is_some_and(|v| {
        v["resources"][0]["providers"][0]["secretbox"]["keys"][0]["secret"].is_string()
    });
    if ok {
        return None;
    }
    let secret = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("secret: "))?
        .trim();
    Some(encryption_config_with(secret))
}

#[cfg(test)]
mod encryption_config_tests {
    #[test]
    fn is_an_encryption_configuration_and_old_files_are_repaired() {
        let text = super::encryption_config().expect("random");
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("valid YAML");
        assert_eq!(v["kind"].as_str(), Some("EncryptionConfiguration"));
        assert_eq!(v["resources"][0]["resources"][0].as_str(), Some("secrets"));
        let key = v["resources"][0]["providers"][0]["secretbox"]["keys"][0]["secret"]
            .as_str()
            .expect("key")
            .to_string();
        assert!(v["resources"][0]["providers"][1]["identity"].is_mapping());
        assert_eq!(super::repair_encryption_config(&text), None);
        // What earlier releases wrote: every indent lost.
        let flat: String = text
            .lines()
            .map(|l| format!("{}\n", l.trim_start()))
            .collect();
        let fixed = super::repair_encryption_config(&flat).expect("repaired");
        assert_eq!(fixed, super::encryption_config_with(&key));
    }
}
