//! IMDSv2: a session token (PUT), then GETs with it. Every call retries transport
//! errors and 5xx answers with backoff: the metadata service may answer late right after
//! boot. 404 means "not there" (no spot notice, no lifecycle state yet).
//! (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-instance-metadata-service.html)

use anyhow::{Result, anyhow};
use std::time::Duration;

pub const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";
const ATTEMPTS: u32 = 8;

#[derive(Clone)]
pub struct Imds {
    base: String,
    http: reqwest::Client,
}

impl Imds {
    pub fn new(base: &str) -> Result<Imds> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .no_proxy()
            .build()
            .map_err(|e| anyhow!("building the metadata client: {e}"))?;
        Ok(Imds {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.base
    }

    async fn token(&self) -> Result<String, String> {
        let r = self
            .http
            .put(format!("{}/latest/api/token", self.base))
            .header("X-aws-ec2-metadata-token-ttl-seconds", "300")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("token: HTTP {}", r.status()));
        }
        r.text().await.map_err(|e| e.to_string())
    }

    /// `meta-data/…` or `dynamic/…`: the value, or None on 404.
    pub async fn get(&self, path: &str) -> Result<Option<String>> {
        let mut pause = Duration::from_millis(250);
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let result: Result<Option<String>, String> = async {
                let token = self.token().await?;
                let r = self
                    .http
                    .get(format!("{}/latest/{path}", self.base))
                    .header("X-aws-ec2-metadata-token", token)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                match r.status().as_u16() {
                    200 => Ok(Some(r.text().await.map_err(|e| e.to_string())?)),
                    404 => Ok(None),
                    code => Err(format!("HTTP {code}")),
                }
            }
            .await;
            match result {
                Ok(v) => return Ok(v),
                Err(e) => last = e,
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
        Err(anyhow!(
            "instance metadata {path}: {last} (after {ATTEMPTS} attempts at {})",
            self.base
        ))
    }

    /// A value that must exist.
    pub async fn require(&self, path: &str) -> Result<String> {
        self.get(path)
            .await?
            .ok_or_else(|| anyhow!("instance metadata {path} is missing"))
    }
}
