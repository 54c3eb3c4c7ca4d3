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
    let secret = base64::engine::general_purpose::STANDARD.encode(key);
    Ok(format!(
        "apiVersion: apiserver.config.k8s.io/v1\n\
kind: EncryptionConfiguration\n\
resources:\n\
  - resources:\n\
      - secrets\n\
    providers:\n\
      - secretbox:\n\
          keys:\n\
            - name: key1\n\
              secret: {secret}\n\
      - identity: {{}}\n"
    ))
}
