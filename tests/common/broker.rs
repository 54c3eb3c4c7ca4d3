//! Starts `kube-aws broker serve` against a moto server and talks OSB to it with reqwest.

#![allow(dead_code)]

use crate::common::Moto;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "test-token-0123456789abcdef";

pub struct Broker {
    child: Child,
    pub port: u16,
    pub state: String,
    pub log: PathBuf,
    pub client: reqwest::Client,
}

impl Broker {
    /// Starts the broker with `state` (a directory or `dynamodb:TABLE`).
    pub fn start(moto: &Moto, state: &str, extra: &[&str]) -> Broker {
        Self::launch(moto, state, extra, false)
    }

    /// Starts the broker with TLS arguments in `extra`; waits for its port.
    pub fn start_tls(moto: &Moto, state: &str, extra: &[&str]) -> Broker {
        Self::launch(moto, state, extra, true)
    }

    fn launch(moto: &Moto, state: &str, extra: &[&str], tls: bool) -> Broker {
        let port = crate::common::free_port();
        let log = crate::common::testbed()
            .join("logs")
            .join(format!("broker-{port}.log"));
        std::fs::create_dir_all(log.parent().expect("dir")).expect("logs");
        let f = std::fs::File::create(&log).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_kube-aws"))
            .args([
                "broker",
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--auth",
                "bearer",
            ])
            .args(["--state", state])
            .args(if extra.contains(&"--broker-id") {
                &[][..]
            } else {
                &["--broker-id", "kab"][..]
            })
            .args(extra)
            .envs(moto.env())
            .env("KUBE_AWS_BROKER_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("log"))
            .stderr(f)
            .spawn()
            .expect("start the broker");
        let b = Broker {
            child,
            port,
            state: state.to_string(),
            log,
            client: reqwest::Client::new(),
        };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            let up = if tls {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            } else {
                crate::common::http_get_status(port, "/healthz") == Some(200)
            };
            if up {
                return b;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the broker did not start: {}",
            std::fs::read_to_string(&b.log).unwrap_or_default()
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// An OSB request with the version header and the bearer token.
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("X-Broker-API-Version", "2.17")
            .header(
                "X-Broker-API-Originating-Identity",
                "kubernetes eyJ1c2VybmFtZSI6InRlc3QifQ==",
            )
            .bearer_auth(TOKEN)
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self.req(method, path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.expect("broker answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(json!({"raw": text})),
        )
    }

    /// Deprovision (instance path) or unbind (binding path), as the platform sends it.
    pub async fn delete(&self, path: &str, sid: &str, pid: &str, incomplete: bool) -> (u16, Value) {
        let extra = if incomplete {
            "&accepts_incomplete=true"
        } else {
            ""
        };
        self.call(
            reqwest::Method::DELETE,
            &format!("{path}?service_id={sid}&plan_id={pid}{extra}"),
            None,
        )
        .await
    }

    /// (service id, plan id) by their names.
    pub async fn ids(&self, service: &str, plan: &str) -> (String, String) {
        let (s, c) = self.call(reqwest::Method::GET, "/v2/catalog", None).await;
        assert_eq!(s, 200);
        let svc = c["services"]
            .as_array()
            .expect("services")
            .iter()
            .find(|x| x["name"] == service)
            .unwrap_or_else(|| panic!("no service {service}"));
        let p = svc["plans"]
            .as_array()
            .expect("plans")
            .iter()
            .find(|x| x["name"] == plan)
            .unwrap_or_else(|| panic!("no plan {plan}"));
        (
            svc["id"].as_str().expect("id").to_string(),
            p["id"].as_str().expect("id").to_string(),
        )
    }

    /// Polls last_operation until it leaves "in progress"; returns the final body.
    pub async fn wait(&self, path: &str) -> Value {
        let t = Instant::now();
        loop {
            let (s, b) = self
                .call(
                    reqwest::Method::GET,
                    &format!("{path}/last_operation"),
                    None,
                )
                .await;
            assert_eq!(s, 200, "{path}: {b}");
            if b["state"] != "in progress" {
                return b;
            }
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "{path} still in progress"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the broker at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the broker with SIGTERM and waits for it.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().expect("wait")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file under `dir` with its bytes: the file store's whole state.
pub fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                // `.lock` is the store's lock file, not state.
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The records of a file store: (file name, `doc`), without the version wrapper.
pub fn records(dir: &Path) -> Vec<(String, Value)> {
    snapshot(dir)
        .into_iter()
        .map(|(n, b)| {
            let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
            (n, v.get("doc").cloned().unwrap_or(v))
        })
        .collect()
}

/// The provision body the OSB spec requires, for `service_id` and `plan_id`.
pub fn provision_body(sid: &str, pid: &str) -> Value {
    json!({"service_id": sid, "plan_id": pid, "organization_guid": "org-1", "space_guid": "space-1"})
}

/// The names of every stack CloudFormation lists.
pub async fn stack_names(sdk: &aws_config::SdkConfig) -> Vec<String> {
    kube_aws::aws::cloudformation(sdk)
        .describe_stacks()
        .send()
        .await
        .expect("stacks")
        .stacks()
        .iter()
        .filter_map(|s| s.stack_name().map(str::to_string))
        .collect()
}
