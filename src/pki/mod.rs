//! The cluster PKI: CAs, per-component certificates (every key distinct), the bootstrap
//! token, the service-account key pair, the encryption-at-rest config, and the admin
//! kubeconfig; plus the KMS envelope (`envelope`) that encrypts the secrets for S3.
//!
//! Writes only to the cluster directory's `credentials/` and `kubeconfig`. Never calls
//! AWS: encryption goes through the `envelope::Encryptor` trait.

pub mod envelope;
pub mod generate;
pub mod inspect;
pub mod kubeconfig;
pub mod spec;
pub mod store;

use crate::config::types::{KeyAlgorithm, Tls};
use crate::model::Model;
use inspect::CertInfo;
use spec::{
    BOOTSTRAP_TOKEN, CaId, ENCRYPTION_CONFIG, LeafSpec, SERVICE_ACCOUNT, cert_file, key_file,
};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use store::{PUBLIC_MODE, SECRET_MODE, read_optional, write_atomic};
use time::OffsetDateTime;

/// What rendering needs from credentials/: certificate PEMs (public) and the sha256 of
/// every secret's plaintext (its `.enc` is stored under a key named by it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub public: BTreeMap<String, String>,
    pub fingerprints: BTreeMap<String, String>,
}

pub const CREDENTIALS_DIR: &str = "credentials";
pub const KUBECONFIG: &str = "kubeconfig";

/// Where the cluster CA comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaSource {
    /// Use the CA already in credentials/.
    Existing,
    /// Generate one if there is none (or replace it with `force`).
    Generate,
    /// Bring your own: copied into credentials/ after it is checked.
    Provided { cert: PathBuf, key: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub ca: CaSource,
    /// Replace every existing asset (a timestamped backup is kept first).
    pub force: bool,
    /// Replace every leaf certificate and key before expiry; keep the CAs and secrets.
    pub rotate: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Kept,
    Replaced(String),
}

#[derive(Debug, Default)]
pub struct Report {
    pub backup: Option<PathBuf>,
    /// (file, outcome), in the order they were handled.
    pub files: Vec<(String, Outcome)>,
    pub notes: Vec<String>,
}

impl Report {
    fn push(&mut self, file: &str, o: Outcome) {
        self.files.push((file.to_string(), o));
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A user error; the message says what to do.
    #[error("{0}")]
    User(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("generating {what}: {source}")]
    Crypto { what: String, source: rcgen::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn crypto(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Crypto {
        what: what.to_string(),
        source,
    }
}

/// Checks a CA pair: the key matches, it is a CA, and it is valid now.
pub fn check_ca(cert_pem: &str, key_pem: &str, now: OffsetDateTime) -> Result<CertInfo, String> {
    let info = inspect::parse_pem(cert_pem)?;
    if rcgen::KeyPair::from_pem(key_pem).is_err() {
        return Err("the key is not a PEM private key (PKCS#8, SEC1 or PKCS#1)".into());
    }
    if !inspect::key_matches(&info, key_pem) {
        return Err("the key does not belong to the certificate".into());
    }
    if !info.is_ca {
        return Err(format!(
            "`{}` is not a CA certificate (basicConstraints CA:TRUE is missing)",
            info.subject
        ));
    }
    if info.not_after <= now {
        return Err(format!("the CA expired on {}", info.not_after.date()));
    }
    if info.not_before > now {
        return Err(format!(
            "the CA is not valid before {}",
            info.not_before.date()
        ));
    }
    Ok(info)
}

struct Ca {
    cert_pem: String,
    key_pem: String,
    info: CertInfo,
}

/// Renders credentials/ and kubeconfig in `cluster_dir`. See `Options` for what is
/// replaced; everything else that exists and still matches the model is kept.
pub fn render(
    m: &Model,
    tls: &Tls,
    cluster_dir: &Path,
    opts: &Options,
    now: OffsetDateTime,
) -> Result<Report, PkiError> {
    let dir = cluster_dir.join(CREDENTIALS_DIR);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(io(&dir))?;
    let mut report = Report::default();
    if opts.force || opts.rotate {
        report.backup = store::backup(&dir, now).map_err(io(&dir))?;
    }

    let mut cas = Vec::new();
    for id in CaId::ALL {
        cas.push((id, ca(id, m, tls, &dir, opts, now, &mut report)?));
    }
    let ca_of = |id: CaId| cas.iter().find(|(i, _)| *i == id).map(|(_, c)| c);

    for spec in spec::leaves(m) {
        let Some(issuer) = ca_of(spec.ca) else {
            continue;
        };
        leaf(&spec, issuer, tls, &dir, opts, now, &mut report)?;
    }

    service_account(tls.key_algorithm, &dir, opts.force, &mut report)?;
    secret_file(&dir, BOOTSTRAP_TOKEN, opts.force, &mut report, || {
        generate::bootstrap_token().map(|t| t + "\n")
    })?;
    if m.broker_namespace.is_some() {
        secret_file(&dir, spec::BROKER_TOKEN, opts.force, &mut report, || {
            generate::broker_token().map(|t| t + "\n")
        })?;
    }
    // A file an earlier release wrote without its indentation is repaired, same key.
    let enc_path = dir.join(ENCRYPTION_CONFIG);
    if let Ok(text) = std::fs::read_to_string(&enc_path)
        && let Some(fixed) = generate::repair_encryption_config(&text)
    {
        write_atomic(&enc_path, fixed.as_bytes(), SECRET_MODE).map_err(io(&enc_path))?;
        report.notes.push(format!(
            "repaired {ENCRYPTION_CONFIG}: it had lost its indentation (invalid YAML); the key is kept"
        ));
    }
    // Never replaced, not even with --force: a new key makes every Secret in etcd unreadable.
    secret_file(
        &dir,
        ENCRYPTION_CONFIG,
        false,
        &mut report,
        generate::encryption_config,
    )?;
    if opts.force
        && report
            .files
            .iter()
            .any(|(f, o)| f == ENCRYPTION_CONFIG && *o == Outcome::Kept)
    {
        report.notes.push(format!(
            "kept {ENCRYPTION_CONFIG}: replacing it would make every Secret already in etcd unreadable \
             (to rotate it, add a new key first as the Kubernetes docs describe)"
        ));
    }

    if let Some(cluster_ca) = ca_of(CaId::Cluster) {
        write_kubeconfig(m, cluster_ca, &dir, cluster_dir, &mut report)?;
    }
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
fn ca(
    id: CaId,
    m: &Model,
    tls: &Tls,
    dir: &Path,
    opts: &Options,
    now: OffsetDateTime,
    report: &mut Report,
) -> Result<Ca, PkiError> {
    let cert_name = cert_file(id.stem());
    let key_name = key_file(id.stem());
    let (cert_path, key_path) = (dir.join(&cert_name), dir.join(&key_name));
    let existing = match (
        read_optional(&cert_path).map_err(io(&cert_path))?,
        read_optional(&key_path).map_err(io(&key_path))?,
    ) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            return Err(PkiError::User(format!(
                "{} has only one of {cert_name} and {key_name}; restore the other from a backup, or pass --force to start over",
                dir.display()
            )));
        }
    };
    let write = |cert_pem: String,
                 key_pem: String,
                 outcome: Outcome,
                 report: &mut Report|
     -> Result<Ca, PkiError> {
        write_atomic(&key_path, key_pem.as_bytes(), SECRET_MODE).map_err(io(&key_path))?;
        write_atomic(&cert_path, cert_pem.as_bytes(), PUBLIC_MODE).map_err(io(&cert_path))?;
        report.push(&cert_name, outcome);
        let info = inspect::parse_pem(&cert_pem).map_err(PkiError::User)?;
        Ok(Ca {
            cert_pem,
            key_pem,
            info,
        })
    };
    let generate = |outcome: Outcome, report: &mut Report| -> Result<Ca, PkiError> {
        let key = generate::new_key(tls.key_algorithm).map_err(crypto(&key_name))?;
        let cert = generate::ca_cert(id, &m.cluster_name, &key, tls.ca_duration_days, now)
            .map_err(crypto(&cert_name))?;
        write(cert, key.serialize_pem(), outcome, report)
    };
    let keep = |(c, k): (String, String), report: &mut Report| -> Result<Ca, PkiError> {
        let info = check_ca(&c, &k, now).map_err(|e| {
            PkiError::User(format!(
                "{}: {e}\n  fix: restore it from a backup, or pass --force{} to replace it (every certificate is then re-issued)",
                cert_path.display(),
                if id == CaId::Cluster { " --generate-ca" } else { "" }
            ))
        })?;
        report.push(&cert_name, Outcome::Kept);
        Ok(Ca {
            cert_pem: c,
            key_pem: k,
            info,
        })
    };

    match (id, &opts.ca) {
        (CaId::Cluster, CaSource::Provided { cert, key }) => {
            let read = |p: &Path| std::fs::read_to_string(p).map_err(io(p));
            let (c, k) = (read(cert)?, read(key)?);
            check_ca(&c, &k, now).map_err(|e| {
                PkiError::User(format!(
                    "the CA given by --ca-cert-path {} and --ca-key-path {} cannot be used: {e}\n  fix: give a CA certificate (CA:TRUE) that is valid today and its own private key",
                    cert.display(),
                    key.display()
                ))
            })?;
            match existing {
                Some((ec, _)) if ec == c => keep((ec, k), report),
                Some(_) if !opts.force => Err(PkiError::User(format!(
                    "{} already holds a different CA\n  fix: pass --force to replace it (a backup is kept and every certificate is re-issued)",
                    cert_path.display()
                ))),
                Some(_) => write(
                    c,
                    k,
                    Outcome::Replaced("--force with --ca-cert-path".into()),
                    report,
                ),
                None => write(c, k, Outcome::Created, report),
            }
        }
        (CaId::Cluster, CaSource::Existing) => match existing {
            Some(pair) => keep(pair, report),
            None => Err(PkiError::User(format!(
                "there is no cluster CA in {}\n  fix: pass --generate-ca, or bring your own with --ca-cert-path and --ca-key-path",
                dir.display()
            ))),
        },
        (CaId::Cluster, CaSource::Generate) => match existing {
            Some(_) if opts.force => {
                generate(Outcome::Replaced("--force --generate-ca".into()), report)
            }
            Some(pair) => {
                report.notes.push(
                    "kept the existing cluster CA; `--force --generate-ca` replaces it".into(),
                );
                keep(pair, report)
            }
            None => generate(Outcome::Created, report),
        },
        (_, _) => match existing {
            Some(_) if opts.force => generate(Outcome::Replaced("--force".into()), report),
            Some(pair) => keep(pair, report),
            None => generate(Outcome::Created, report),
        },
    }
}

/// Why an existing leaf no longer fits its spec, or None when it still does.
fn stale_reason(
    spec: &LeafSpec,
    cert_pem: &str,
    key_pem: &str,
    issuer: &Ca,
    alg: KeyAlgorithm,
    now: OffsetDateTime,
) -> Option<String> {
    let info = match inspect::parse_pem(cert_pem) {
        Ok(i) => i,
        Err(e) => return Some(format!("unreadable: {e}")),
    };
    if !inspect::key_matches(&info, key_pem) {
        return Some("its key does not match".into());
    }
    if !inspect::signed_by(&info, &issuer.info) {
        return Some("its CA changed".into());
    }
    if info.common_name != spec.common_name || info.organizations != spec.organizations {
        return Some(format!(
            "subject changed: {} → CN={} O={:?}",
            info.subject, spec.common_name, spec.organizations
        ));
    }
    let want: BTreeSet<String> = spec.san_strings().into_iter().collect();
    let have: BTreeSet<String> = info.sans.iter().cloned().collect();
    if want != have {
        let added: Vec<_> = want.difference(&have).map(|s| format!("+{s}")).collect();
        let removed: Vec<_> = have.difference(&want).map(|s| format!("-{s}")).collect();
        return Some(format!(
            "SANs changed: {}",
            [added, removed].concat().join(" ")
        ));
    }
    let is_rsa =
        rcgen::KeyPair::from_pem(key_pem).is_ok_and(|k| k.algorithm() == &rcgen::PKCS_RSA_SHA256);
    if is_rsa != (alg == KeyAlgorithm::Rsa2048) {
        return Some("tls.keyAlgorithm changed".into());
    }
    if info.not_after <= now {
        return Some("expired".into());
    }
    None
}

#[allow(clippy::too_many_arguments)]
fn leaf(
    spec: &LeafSpec,
    issuer: &Ca,
    tls: &Tls,
    dir: &Path,
    opts: &Options,
    now: OffsetDateTime,
    report: &mut Report,
) -> Result<(), PkiError> {
    let cert_name = cert_file(spec.stem);
    let key_name = key_file(spec.stem);
    let (cert_path, key_path) = (dir.join(&cert_name), dir.join(&key_name));
    let existing = (
        read_optional(&cert_path).map_err(io(&cert_path))?,
        read_optional(&key_path).map_err(io(&key_path))?,
    );
    let outcome = match existing {
        (Some(c), Some(k)) => {
            if opts.force {
                Outcome::Replaced("--force".into())
            } else if opts.rotate {
                Outcome::Replaced("rotated".into())
            } else {
                match stale_reason(spec, &c, &k, issuer, tls.key_algorithm, now) {
                    None => {
                        report.push(&cert_name, Outcome::Kept);
                        return Ok(());
                    }
                    Some(why) => Outcome::Replaced(why),
                }
            }
        }
        (None, None) => Outcome::Created,
        _ => Outcome::Replaced("its certificate or key was missing".into()),
    };
    let ca_key = rcgen::KeyPair::from_pem(&issuer.key_pem).map_err(crypto(spec.ca.stem()))?;
    let rc_issuer = rcgen::Issuer::from_ca_cert_pem(&issuer.cert_pem, &ca_key)
        .map_err(crypto(spec.ca.stem()))?;
    let key = generate::new_key(tls.key_algorithm).map_err(crypto(&key_name))?;
    let cert = generate::leaf_cert(
        spec,
        &key,
        &rc_issuer,
        tls.key_algorithm,
        tls.cert_duration_days,
        now,
    )
    .map_err(crypto(&cert_name))?;
    write_atomic(&key_path, key.serialize_pem().as_bytes(), SECRET_MODE).map_err(io(&key_path))?;
    write_atomic(&cert_path, cert.as_bytes(), PUBLIC_MODE).map_err(io(&cert_path))?;
    report.push(&cert_name, outcome);
    Ok(())
}

fn service_account(
    alg: KeyAlgorithm,
    dir: &Path,
    force: bool,
    report: &mut Report,
) -> Result<(), PkiError> {
    let key_name = key_file(SERVICE_ACCOUNT);
    let pub_name = format!("{SERVICE_ACCOUNT}-pub.pem");
    let (key_path, pub_path) = (dir.join(&key_name), dir.join(&pub_name));
    let have = key_path.exists() && pub_path.exists();
    if have && !force {
        report.push(&key_name, Outcome::Kept);
        return Ok(());
    }
    let key = generate::new_key(alg).map_err(crypto(&key_name))?;
    write_atomic(&key_path, key.serialize_pem().as_bytes(), SECRET_MODE).map_err(io(&key_path))?;
    write_atomic(&pub_path, key.public_key_pem().as_bytes(), PUBLIC_MODE).map_err(io(&pub_path))?;
    report.push(
        &key_name,
        if have {
            Outcome::Replaced("--force".into())
        } else {
            Outcome::Created
        },
    );
    Ok(())
}

fn secret_file(
    dir: &Path,
    name: &str,
    force: bool,
    report: &mut Report,
    make: impl FnOnce() -> Result<String, getrandom::Error>,
) -> Result<(), PkiError> {
    let path = dir.join(name);
    let have = path.exists();
    if have && !force {
        report.push(name, Outcome::Kept);
        return Ok(());
    }
    let text =
        make().map_err(|e| PkiError::User(format!("the system random source failed: {e}")))?;
    write_atomic(&path, text.as_bytes(), SECRET_MODE).map_err(io(&path))?;
    report.push(
        name,
        if have {
            Outcome::Replaced("--force".into())
        } else {
            Outcome::Created
        },
    );
    Ok(())
}

fn write_kubeconfig(
    m: &Model,
    ca: &Ca,
    dir: &Path,
    cluster_dir: &Path,
    report: &mut Report,
) -> Result<(), PkiError> {
    let read = |n: &str| std::fs::read_to_string(dir.join(n)).map_err(io(&dir.join(n)));
    let cert = read(&cert_file("admin"))?;
    let key = read(&key_file("admin"))?;
    let text = kubeconfig::admin(m, &ca.cert_pem, &cert, &key);
    let path = cluster_dir.join(KUBECONFIG);
    let old = read_optional(&path).map_err(io(&path))?;
    if old.as_deref() == Some(text.as_str()) {
        report.push(KUBECONFIG, Outcome::Kept);
        return Ok(());
    }
    write_atomic(&path, text.as_bytes(), SECRET_MODE).map_err(io(&path))?;
    report.push(
        KUBECONFIG,
        if old.is_some() {
            Outcome::Replaced("admin certificate or endpoint changed".into())
        } else {
            Outcome::Created
        },
    );
    Ok(())
}
