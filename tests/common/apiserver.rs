//! TEST-BED STAND-IN, NOT A KUBERNETES API SERVER. No kube-apiserver can be installed on
//! this machine (no reachable registry ships one), so this answers just what
//! `kube-aws addons apply` sends, and records it:
//! - discovery of a group/version (`/api/v1`, `/apis/G/V`), from the kinds it is given;
//! - GET of one object; PATCH with `application/apply-patch+yaml` (server-side apply),
//!   stored as sent, with `dryRun=All` honoured;
//! - the CRD list by `metadata.name` field selector that kube-rs's wait starts with (a
//!   stored CRD is reported Established), and a watch that just stays open.
//!
//! It speaks TLS with the cluster's own apiserver certificate and demands a client
//! certificate from the cluster CA, like the real one. What it proves is the client
//! side: the kubeconfig from `render credentials` works with kube-rs, and the requests,
//! their parameters and their order. It models only two Kubernetes rules: an object
//! needs its namespace, and resourceVersion changes only when an applied object differs
//! from the stored one.

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
}

#[derive(Default)]
struct Inner {
    /// group/version → [(kind, namespaced)]
    kinds: BTreeMap<String, Vec<(String, bool)>>,
    objects: HashMap<String, Value>,
    version: u64,
    log: Vec<Req>,
}

#[derive(Clone)]
pub struct FakeApi {
    inner: Arc<Mutex<Inner>>,
    pub url: String,
    handle: axum_server::Handle,
}

fn plural(kind: &str) -> String {
    format!("{}s", kind.to_ascii_lowercase())
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response()
}

fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            for (k, v) in p {
                if v.is_null() {
                    if let Some(o) = target.as_object_mut() {
                        o.remove(k);
                    }
                } else {
                    merge(&mut target[k], v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn without_server_fields(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    v
}

async fn handle(State(inner): State<Arc<Mutex<Inner>>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body: Bytes = axum::body::to_bytes(req.into_body(), 1 << 24)
        .await
        .unwrap_or_default();
    match respond(&inner, method, path, query, content_type, &body) {
        Some(r) => r,
        None => {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            (StatusCode::OK, "").into_response()
        }
    }
}

/// The answer, or None for a watch (kept open a while, then ended empty).
fn respond(
    inner: &Mutex<Inner>,
    method: Method,
    path: String,
    query: String,
    content_type: String,
    body: &[u8],
) -> Option<Response> {
    let mut st = inner.lock().expect("lock");
    st.log.push(Req {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        content_type: content_type.clone(),
    });
    // The server's version (https://kubernetes.io/docs/reference/using-api/health-checks/
    // lists /version among the endpoints every API server serves).
    if method == Method::GET && path == "/version" {
        return Some(
            axum::Json(
                json!({"major": "1", "minor": "34", "gitVersion": "v1.34.2-kube-aws-standin"}),
            )
            .into_response(),
        );
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    // (group/version, rest of the path)
    let (gv, rest) = match parts.as_slice() {
        ["api", v, rest @ ..] => (v.to_string(), rest.to_vec()),
        ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest.to_vec()),
        _ => return Some(status(404, "NotFound", "no such path")),
    };
    if rest.is_empty() {
        // A CRD's group is served once the CRD is stored.
        let Some(kinds) = st.kinds.get(&gv) else {
            return Some(status(404, "NotFound", "no such group"));
        };
        let served: Vec<Value> = kinds
            .iter()
            .filter(|(k, _)| {
                !gv.starts_with("servicecatalog.k8s.io/")
                    || st
                        .objects
                        .keys()
                        .any(|p| p.ends_with(&format!("/{}.servicecatalog.k8s.io", plural(k))))
            })
            .map(|(k, ns)| {
                json!({"name": plural(k), "singularName": k.to_ascii_lowercase(),
                "namespaced": ns, "kind": k, "verbs": ["get", "list", "watch", "patch"]})
            })
            .collect();
        if served.is_empty() {
            return Some(status(404, "NotFound", "no such group"));
        }
        return Some(
            axum::Json(json!({"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": gv, "resources": served}))
            .into_response(),
        );
    }
    if method == Method::GET
        && gv == "apiextensions.k8s.io/v1"
        && rest == ["customresourcedefinitions"]
    {
        if query.contains("watch=true") {
            return None;
        }
        let name = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("fieldSelector=metadata.name%3D"))
            .unwrap_or_default()
            .to_string();
        let items: Vec<Value> = st
            .objects
            .iter()
            .filter(|(p, _)| p.ends_with(&format!("/customresourcedefinitions/{name}")))
            .map(|(_, v)| v.clone())
            .collect();
        return Some(
            axum::Json(json!({"kind": "CustomResourceDefinitionList",
                "apiVersion": "apiextensions.k8s.io/v1",
                "metadata": {"resourceVersion": st.version.to_string()}, "items": items}))
            .into_response(),
        );
    }
    // A list of a core kind, cluster-wide (`/api/v1/PLURAL`) or in one namespace
    // (`/api/v1/namespaces/NS/PLURAL`), optionally with `fieldSelector=spec.nodeName=X`
    // (pods of a node, as the drainer asks); other field selectors are ignored, the
    // caller filters what it needs — the list conventions of
    // https://kubernetes.io/docs/reference/using-api/api-concepts/#collections.
    let in_list = |p: &str| match rest.as_slice() {
        [plural] => p.split('/').nth_back(1) == Some(*plural),
        ["namespaces", _, _] => p.rsplit_once('/').map(|(d, _)| d) == Some(path.as_str()),
        _ => false,
    };
    if method == Method::GET
        && !query.contains("watch=true")
        && matches!(rest.as_slice(), [_] | ["namespaces", _, _])
    {
        let node = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("fieldSelector=spec.nodeName%3D"))
            .map(str::to_string);
        let items: Vec<Value> = st
            .objects
            .iter()
            .filter(|(p, _)| in_list(p))
            .filter(|(_, v)| node.as_deref().is_none_or(|n| v["spec"]["nodeName"] == n))
            .map(|(_, v)| v.clone())
            .collect();
        return Some(
            axum::Json(json!({"kind": "List", "apiVersion": "v1",
                "metadata": {"resourceVersion": st.version.to_string()}, "items": items}))
            .into_response(),
        );
    }
    // Eviction: a pod with no PodDisruptionBudget in the way is deleted, answered 201
    // (https://kubernetes.io/docs/concepts/scheduling-eviction/api-eviction/). A pod whose
    // annotation `test.kube-aws/pdb-blocks` counts down is refused with 429 until it
    // reaches 0, as a budget that does not yet allow the disruption.
    if method == Method::POST
        && let ["namespaces", ns, "pods", name, "eviction"] = rest.as_slice()
    {
        let key = format!("/api/v1/namespaces/{ns}/pods/{name}");
        let Some(mut pod) = st.objects.get(&key).cloned() else {
            return Some(status(
                404,
                "NotFound",
                &format!("pods \"{name}\" not found"),
            ));
        };
        let blocks = pod["metadata"]["annotations"]["test.kube-aws/pdb-blocks"]
            .as_str()
            .and_then(|b| b.parse::<u32>().ok())
            .unwrap_or(0);
        if blocks > 0 {
            pod["metadata"]["annotations"]["test.kube-aws/pdb-blocks"] =
                (blocks - 1).to_string().into();
            st.objects.insert(key, pod);
            return Some(status(
                429,
                "TooManyRequests",
                "Cannot evict pod as it would violate the pod's disruption budget.",
            ));
        }
        st.objects.remove(&key);
        st.version += 1;
        return Some(
            (
                StatusCode::CREATED,
                axum::Json(json!({"kind": "Status", "apiVersion": "v1",
                "metadata": {}, "status": "Success", "code": 201})),
            )
                .into_response(),
        );
    }
    // JSON merge patch (RFC 7386) of a stored object, and of a CSR's approval
    // subresource (conditions are stored in status).
    if method == Method::PATCH && content_type == "application/merge-patch+json" {
        let key = path.trim_end_matches("/approval").to_string();
        let Some(mut obj) = st.objects.get(&key).cloned() else {
            return Some(status(404, "NotFound", &format!("{key} not found")));
        };
        let Ok(patch) = serde_json::from_slice::<Value>(body) else {
            return Some(status(400, "BadRequest", "not JSON"));
        };
        merge(&mut obj, &patch);
        st.version += 1;
        obj["metadata"]["resourceVersion"] = st.version.to_string().into();
        st.objects.insert(key, obj.clone());
        return Some(axum::Json(obj).into_response());
    }
    // Namespaced objects need their namespace, as in Kubernetes.
    if let ["namespaces", ns, _, ..] = rest.as_slice()
        && method == Method::PATCH
        && !st.objects.contains_key(&format!("/api/v1/namespaces/{ns}"))
    {
        return Some(status(
            404,
            "NotFound",
            &format!("namespaces \"{ns}\" not found"),
        ));
    }
    Some(match method {
        Method::GET => match st.objects.get(&path) {
            Some(v) => axum::Json(v.clone()).into_response(),
            None => status(404, "NotFound", &format!("{path} not found")),
        },
        Method::PATCH => {
            if content_type != "application/apply-patch+yaml" {
                return Some(status(415, "UnsupportedMediaType", &content_type));
            }
            let Ok(mut sent) = serde_json::from_slice::<Value>(body) else {
                return Some(status(400, "BadRequest", "not JSON"));
            };
            let dry = query.split('&').any(|kv| kv == "dryRun=All");
            let stored = st.objects.get(&path).cloned();
            if let Some(old) = &stored
                && without_server_fields(old) == without_server_fields(&sent)
            {
                return Some(axum::Json(old.clone()).into_response());
            }
            st.version += 1;
            sent["metadata"]["resourceVersion"] = st.version.to_string().into();
            if sent["kind"] == "CustomResourceDefinition" {
                sent["status"] = json!({"conditions": [
                    {"type": "NamesAccepted", "status": "True"},
                    {"type": "Established", "status": "True"}]});
            }
            // A Secret's stringData is write-only: the API server merges it into data,
            // base64-encoded, and never returns it (Secret v1 API reference, stringData).
            if sent["kind"] == "Secret"
                && let Some(Value::Object(sd)) =
                    sent.as_object_mut().and_then(|o| o.remove("stringData"))
            {
                use base64::Engine;
                for (k, v) in sd {
                    let b = base64::engine::general_purpose::STANDARD
                        .encode(v.as_str().unwrap_or_default());
                    sent["data"][k] = Value::from(b);
                }
            }
            if !dry {
                st.objects.insert(path, sent.clone());
            }
            axum::Json(sent).into_response()
        }
        _ => status(405, "MethodNotAllowed", method.as_str()),
    })
}

impl FakeApi {
    /// Serves on a free loopback port with `credentials/apiserver.pem`, trusting client
    /// certificates from `credentials/ca.pem`; knows the kinds of `docs`.
    pub fn start(rt: &tokio::runtime::Runtime, creds: &Path, docs: &[Value]) -> FakeApi {
        let mut inner = Inner::default();
        for d in docs {
            let gv = d["apiVersion"].as_str().expect("apiVersion").to_string();
            let k = d["kind"].as_str().expect("kind").to_string();
            let namespaced = d["metadata"]["namespace"].is_string();
            let e = inner.kinds.entry(gv).or_default();
            if !e.iter().any(|(x, _)| *x == k) {
                e.push((k, namespaced));
            }
        }
        inner
            .kinds
            .entry("apiextensions.k8s.io/v1".into())
            .or_default();
        let inner = Arc::new(Mutex::new(inner));
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let read = |f: &str| std::fs::read(creds.join(f)).expect("credential");
        let certs: Vec<_> = rustls_pki_certs(&read("apiserver.pem"));
        let key = rustls::pki_types::PrivateKeyDer::try_from(
            pem::parse(read("apiserver-key.pem"))
                .expect("key")
                .contents()
                .to_vec(),
        )
        .expect("key der");
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pki_certs(&read("ca.pem")) {
            roots.add(c).expect("ca");
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .expect("verifier");
        let mut cfg = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .expect("server config");
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(cfg));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let handle = axum_server::Handle::new();
        let app = axum::Router::new()
            .fallback(handle_any)
            .with_state(inner.clone());
        let h = handle.clone();
        rt.spawn(async move {
            axum_server::from_tcp_rustls(listener, tls)
                .handle(h)
                .serve(app.into_make_service())
                .await
                .expect("serve");
        });
        FakeApi {
            inner,
            url: format!("https://127.0.0.1:{}", addr.port()),
            handle,
        }
    }

    pub fn log(&self) -> Vec<Req> {
        self.inner.lock().expect("lock").log.clone()
    }

    pub fn clear_log(&self) {
        self.inner.lock().expect("lock").log.clear();
    }

    pub fn object(&self, path: &str) -> Option<Value> {
        self.inner.lock().expect("lock").objects.get(path).cloned()
    }

    /// Stores an object as if a client had created it (a Node the kubelet registered).
    #[allow(dead_code)] // only the boot rehearsal seeds objects
    pub fn put(&self, path: &str, v: Value) {
        let mut st = self.inner.lock().expect("lock");
        st.version += 1;
        let mut v = v;
        v["metadata"]["resourceVersion"] = st.version.to_string().into();
        st.objects.insert(path.to_string(), v);
    }

    pub fn count(&self) -> usize {
        self.inner.lock().expect("lock").objects.len()
    }

    pub fn stop(&self) {
        self.handle.shutdown();
    }
}

async fn handle_any(state: State<Arc<Mutex<Inner>>>, req: Request) -> Response {
    handle(state, req).await
}

fn rustls_pki_certs(pem_bytes: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    pem::parse_many(pem_bytes)
        .expect("pem")
        .into_iter()
        .map(|p| rustls::pki_types::CertificateDer::from(p.contents().to_vec()))
        .collect()
}
