//! Approval of kubelet serving certificates. With `serverTLSBootstrap: true` every
//! kubelet asks for a `kubernetes.io/kubelet-serving` certificate, which the
//! kube-controller-manager never approves by itself
//! (https://kubernetes.io/docs/reference/access-authn-authz/certificate-signing-requests/#kubernetes-signers).
//! The controllers approve a request only when it is what that signer allows and names
//! nothing but the addresses EC2 reports for the requesting node's own instance in this
//! cluster (https://kubernetes.io/docs/reference/access-authn-authz/kubelet-tls-bootstrapping/):
//! - requested by `system:node:<name>` in group `system:nodes`;
//! - subject `O=system:nodes`, `CN=system:node:<name>`;
//! - usages within {digital signature, key encipherment, server auth}, server auth
//!   included;
//! - at least one DNS or IP SAN, no email or URI SAN, every SAN an address of the
//!   instance whose private DNS name is `<name>`.

use serde_json::Value;
use std::net::IpAddr;

pub const SIGNER: &str = "kubernetes.io/kubelet-serving";

/// What EC2 says about the instance a node name belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceAddresses {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

/// The node a pending kubelet-serving CSR is for, or None for any other request.
pub fn node_of(csr: &Value) -> Option<String> {
    if csr.pointer("/spec/signerName").and_then(|s| s.as_str()) != Some(SIGNER) {
        return None;
    }
    let user = csr.pointer("/spec/username")?.as_str()?;
    user.strip_prefix("system:node:").map(str::to_string)
}

/// Whether the request may be approved; Err says why not.
pub fn check(csr: &Value, node: &str, instance: &InstanceAddresses) -> Result<(), String> {
    let groups: Vec<&str> = csr
        .pointer("/spec/groups")
        .and_then(|g| g.as_array())
        .map(|g| g.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    if !groups.contains(&"system:nodes") {
        return Err("the requester is not in group system:nodes".into());
    }
    let usages: Vec<&str> = csr
        .pointer("/spec/usages")
        .and_then(|g| g.as_array())
        .map(|g| g.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    if !usages.contains(&"server auth")
        || usages
            .iter()
            .any(|u| !matches!(*u, "server auth" | "digital signature" | "key encipherment"))
    {
        return Err(format!(
            "usages {usages:?} are not those of a serving certificate"
        ));
    }
    let request = csr
        .pointer("/spec/request")
        .and_then(|r| r.as_str())
        .ok_or("no spec.request")?;
    let pem_bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, request)
        .map_err(|e| format!("spec.request: {e}"))?;
    let block = pem::parse(&pem_bytes).map_err(|e| format!("spec.request: {e}"))?;
    use x509_parser::prelude::FromDer;
    let (_, req) =
        x509_parser::certification_request::X509CertificationRequest::from_der(block.contents())
            .map_err(|e| format!("spec.request: {e}"))?;
    let subject = &req.certification_request_info.subject;
    let cn: Vec<&str> = subject
        .iter_common_name()
        .filter_map(|c| c.as_str().ok())
        .collect();
    let orgs: Vec<&str> = subject
        .iter_organization()
        .filter_map(|c| c.as_str().ok())
        .collect();
    if cn != [format!("system:node:{node}").as_str()] || orgs != ["system:nodes"] {
        return Err(format!(
            "subject CN={cn:?} O={orgs:?} is not system:node:{node} in system:nodes"
        ));
    }
    let mut sans = 0;
    for ext in req.requested_extensions().into_iter().flatten() {
        if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                use x509_parser::extensions::GeneralName;
                match name {
                    GeneralName::DNSName(d) => {
                        if !instance.dns.iter().any(|x| x.eq_ignore_ascii_case(d)) {
                            return Err(format!("DNS name {d} is not an address of {node}"));
                        }
                    }
                    GeneralName::IPAddress(b) => {
                        let ip = match b.len() {
                            4 => IpAddr::from(<[u8; 4]>::try_from(*b).map_err(|_| "bad IP")?),
                            16 => IpAddr::from(<[u8; 16]>::try_from(*b).map_err(|_| "bad IP")?),
                            _ => return Err("a malformed IP SAN".into()),
                        };
                        if !instance.ips.contains(&ip) {
                            return Err(format!("IP {ip} is not an address of {node}"));
                        }
                    }
                    other => return Err(format!("SAN {other:?} is not allowed")),
                }
                sans += 1;
            }
        }
    }
    if sans == 0 {
        return Err("no DNS or IP SAN".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn csr(cn: &str, org: &str, dns: &[&str], ips: &[&str]) -> String {
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, org);
        let mut sans: Vec<rcgen::SanType> = dns
            .iter()
            .map(|d| rcgen::SanType::DnsName((*d).try_into().unwrap()))
            .collect();
        sans.extend(
            ips.iter()
                .map(|i| rcgen::SanType::IpAddress(i.parse().unwrap())),
        );
        p.subject_alt_names = sans;
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = p.serialize_request(&key).unwrap().pem().unwrap();
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pem)
    }

    fn obj(request: String, user: &str) -> Value {
        json!({"spec": {"signerName": SIGNER, "username": user, "groups": ["system:nodes", "system:authenticated"],
            "usages": ["digital signature", "server auth"], "request": request}})
    }

    #[test]
    fn approves_only_the_nodes_own_addresses() {
        let node = "ip-10-0-1-5.ec2.internal";
        let inst = InstanceAddresses {
            dns: vec![node.into()],
            ips: vec!["10.0.1.5".parse().unwrap()],
        };
        let user = format!("system:node:{node}");
        let cn = user.clone();
        let good = obj(csr(&cn, "system:nodes", &[node], &["10.0.1.5"]), &user);
        assert_eq!(node_of(&good).as_deref(), Some(node));
        assert_eq!(check(&good, node, &inst), Ok(()));
        let other_ip = obj(csr(&cn, "system:nodes", &[node], &["10.0.1.6"]), &user);
        assert!(
            check(&other_ip, node, &inst)
                .unwrap_err()
                .contains("10.0.1.6")
        );
        let other_name = obj(
            csr(&cn, "system:nodes", &["kubernetes.default"], &[]),
            &user,
        );
        assert!(check(&other_name, node, &inst).is_err());
        let wrong_cn = obj(
            csr("system:node:other", "system:nodes", &[node], &[]),
            &user,
        );
        assert!(check(&wrong_cn, node, &inst).is_err());
        let no_san = obj(csr(&cn, "system:nodes", &[], &[]), &user);
        assert!(check(&no_san, node, &inst).is_err());
        let mut client_auth = good.clone();
        client_auth["spec"]["usages"] = json!(["digital signature", "client auth", "server auth"]);
        assert!(check(&client_auth, node, &inst).is_err());
        let mut not_node = good.clone();
        not_node["spec"]["groups"] = json!(["system:authenticated"]);
        assert!(check(&not_node, node, &inst).is_err());
        let mut other_signer = good.clone();
        other_signer["spec"]["signerName"] = json!("kubernetes.io/kube-apiserver-client-kubelet");
        assert_eq!(node_of(&other_signer), None);
    }
}
