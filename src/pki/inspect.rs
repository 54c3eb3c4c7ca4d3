//! Reading certificates back: subject, SANs, issuer, validity, CA flag, usages,
//! signature and key checks (x509-parser).

use serde::Serialize;
use time::OffsetDateTime;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

#[derive(Debug, Clone, Serialize)]
pub struct CertInfo {
    pub subject: String,
    pub common_name: String,
    pub organizations: Vec<String>,
    /// `DNS:x` / `IP:y`, sorted.
    pub sans: Vec<String>,
    pub issuer: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    pub is_ca: bool,
    pub server_auth: bool,
    pub client_auth: bool,
    #[serde(skip)]
    pub der: Vec<u8>,
    /// The subject public key bits.
    #[serde(skip)]
    pub public_key: Vec<u8>,
}

impl CertInfo {
    pub fn days_left(&self, now: OffsetDateTime) -> i64 {
        (self.not_after - now).whole_days()
    }
}

/// Parses the first certificate of a PEM text.
pub fn parse_pem(pem_text: &str) -> Result<CertInfo, String> {
    let block = pem::parse(pem_text).map_err(|e| format!("not PEM: {e}"))?;
    if block.tag() != "CERTIFICATE" {
        return Err(format!("a `{}` block, not a certificate", block.tag()));
    }
    parse_der(block.contents())
}

pub fn parse_der(der: &[u8]) -> Result<CertInfo, String> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let mut sans = Vec::new();
    let mut is_ca = false;
    let (mut server_auth, mut client_auth) = (false, false);
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for n in &san.general_names {
                    match n {
                        GeneralName::DNSName(d) => sans.push(format!("DNS:{d}")),
                        GeneralName::IPAddress(b) => sans.push(format!("IP:{}", ip_string(b))),
                        _ => {}
                    }
                }
            }
            ParsedExtension::BasicConstraints(bc) => is_ca = bc.ca,
            ParsedExtension::ExtendedKeyUsage(eku) => {
                server_auth = eku.server_auth;
                client_auth = eku.client_auth;
            }
            _ => {}
        }
    }
    sans.sort();
    let subject = cert.subject();
    let common_name = subject
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or_default()
        .to_string();
    let organizations = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Ok(CertInfo {
        subject: subject.to_string(),
        common_name,
        organizations,
        sans,
        issuer: cert.issuer().to_string(),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        is_ca,
        server_auth,
        client_auth,
        der: der.to_vec(),
        public_key: cert.public_key().subject_public_key.data.to_vec(),
    })
}

fn ip_string(b: &[u8]) -> String {
    match b.len() {
        4 => std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            std::net::Ipv6Addr::from(a).to_string()
        }
        _ => hex::encode(b),
    }
}

/// True when `cert` carries a valid signature by the key of `issuer`.
pub fn signed_by(cert: &CertInfo, issuer: &CertInfo) -> bool {
    let (Ok((_, c)), Ok((_, i))) = (
        X509Certificate::from_der(&cert.der),
        X509Certificate::from_der(&issuer.der),
    ) else {
        return false;
    };
    c.verify_signature(Some(i.public_key())).is_ok()
}

/// True when the private key (PEM) belongs to the certificate.
pub fn key_matches(cert: &CertInfo, key_pem: &str) -> bool {
    rcgen::KeyPair::from_pem(key_pem)
        .is_ok_and(|k| k.public_key_raw() == cert.public_key.as_slice())
}
