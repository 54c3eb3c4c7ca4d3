//! Shared test helpers: the test-bed paths, the kube-aws binary, and a moto server on
//! a free loopback port that is killed by PID when the handle is dropped.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Directory that scripts/testbed-setup.sh installs into.
pub fn testbed() -> PathBuf {
    std::env::var_os("KUBE_AWS_TESTBED")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/testbed"))
}

/// A tool from the test-bed venv (python, cfn-lint, …). Fails loudly when missing:
/// a test that cannot run its real component must not pass.
pub fn venv_bin(name: &str) -> PathBuf {
    let p = testbed().join("venv/bin").join(name);
    assert!(
        p.exists(),
        "{} is missing: run scripts/testbed-setup.sh first (scripts/test.sh does)",
        p.display()
    );
    p
}

/// The kube-aws binary. Tests that do not boot a node give `up` a small stand-in as
/// the node agent binary to upload (tests/fixtures/node-agent-standin); the rehearsal
/// overrides it with the real binary.
pub fn kube_aws() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kube-aws"));
    c.env(
        "KUBE_AWS_NODE_BINARY",
        repo().join("tests/fixtures/node-agent-standin"),
    );
    c
}

/// Runs kube-aws with `args` in `dir` and returns its output.
pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    kube_aws()
        .args(args)
        .current_dir(dir)
        .env_remove("KUBE_AWS_DIR")
        .output()
        .expect("kube-aws binary runs")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub const REGION: &str = "us-east-1";

/// A moto server (through the harness launcher, see tests/harness) on loopback.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Moto {
        let python = venv_bin("python");
        let launcher = repo().join("tests/harness/moto_launcher.py");
        let logs = testbed().join("logs");
        std::fs::create_dir_all(&logs).expect("log directory");
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            let log =
                std::fs::File::create(logs.join(format!("moto-{port}.log"))).expect("log file");
            let log2 = log.try_clone().expect("log file");
            let child = Command::new(&python)
                .arg(&launcher)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .spawn()
                .expect("start moto server");
            let mut moto = Moto { child, port };
            match moto.wait_ready(Duration::from_secs(60)) {
                Ok(()) => return moto,
                Err(e) => last_err = e, // port taken in the meantime, or slow start: retry
            }
        }
        panic!("moto server did not start: {last_err}");
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("moto exited with {status}"));
            }
            if http_get_status(self.port, "/moto-api/").is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("no answer on port {} after {limit:?}", self.port))
    }

    /// `localhost`, not 127.0.0.1: moto reads path-style TemplateURLs only on
    /// hostnames containing "localhost".
    pub fn endpoint(&self) -> String {
        format!("http://localhost:{}", self.port)
    }

    /// Environment for a kube-aws subprocess: endpoint, dummy credentials, region.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_SESSION_TOKEN", "testing".into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_DEFAULT_REGION", REGION.into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    /// SDK configuration for in-process tests, with static dummy credentials.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(REGION))
            .endpoint_url(self.endpoint())
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "testing", "testing", None, None, "moto",
            ))
            .load()
            .await
    }
}

impl Moto {
    /// Stops the server now (it is also stopped on drop).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Status code of a plain HTTP GET on loopback, or None if nothing answers.
pub fn http_get_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace().nth(1)?.parse().ok()
}

/// Writes `dir/name`: the kubeconfig `render credentials` wrote, pointed at `server`.
pub fn kubeconfig_for(dir: &Path, name: &str, server: &str) {
    let kc = std::fs::read_to_string(dir.join("kubeconfig")).expect("kubeconfig");
    let old = kc
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .expect("server")
        .to_string();
    std::fs::write(dir.join(name), kc.replace(&old, server)).expect("write kubeconfig");
}
