//! The admin kubeconfig: the first API endpoint, the cluster CA, the admin client
//! certificate and key embedded. Pure.

use crate::model::Model;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Kubeconfig<'a> {
    api_version: &'a str,
    kind: &'a str,
    clusters: Vec<Named<'a, Cluster>>,
    users: Vec<Named<'a, User>>,
    contexts: Vec<Named<'a, Context<'a>>>,
    current_context: &'a str,
}

#[derive(Serialize)]
struct Named<'a, T> {
    name: &'a str,
    #[serde(flatten)]
    inner: T,
}

#[derive(Serialize)]
struct Cluster {
    cluster: ClusterInner,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ClusterInner {
    server: String,
    certificate_authority_data: String,
}

#[derive(Serialize)]
struct User {
    user: UserInner,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct UserInner {
    client_certificate_data: String,
    client_key_data: String,
}

#[derive(Serialize)]
struct Context<'a> {
    context: ContextInner<'a>,
}

#[derive(Serialize)]
struct ContextInner<'a> {
    cluster: &'a str,
    user: &'a str,
}

/// The kubeconfig text. Holds a private key: write it 0600.
pub fn admin(m: &Model, ca_pem: &str, cert_pem: &str, key_pem: &str) -> String {
    let name = m.cluster_name.as_str();
    let user = format!("{name}-admin");
    let kc = Kubeconfig {
        api_version: "v1",
        kind: "Config",
        clusters: vec![Named {
            name,
            inner: Cluster {
                cluster: ClusterInner {
                    server: m.api_server_url.clone(),
                    certificate_authority_data: STANDARD.encode(ca_pem),
                },
            },
        }],
        users: vec![Named {
            name: &user,
            inner: User {
                user: UserInner {
                    client_certificate_data: STANDARD.encode(cert_pem),
                    client_key_data: STANDARD.encode(key_pem),
                },
            },
        }],
        contexts: vec![Named {
            name,
            inner: Context {
                context: ContextInner {
                    cluster: name,
                    user: &user,
                },
            },
        }],
        current_context: name,
    };
    // Plain structs of strings always serialize.
    serde_yaml_ng::to_string(&kc).unwrap_or_default()
}
