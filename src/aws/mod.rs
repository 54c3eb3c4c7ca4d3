//! AWS SDK clients. The only module (with `deploy`, later) that talks to AWS.
//!
//! Configuration follows the standard chain (environment, profile, IMDS). An endpoint
//! override, `AWS_ENDPOINT_URL` or `--endpoint-url`, points every client at another
//! endpoint such as the local moto server; S3 then uses path-style addressing, which
//! local emulators need. Retries are adaptive, so throttling slows the client down
//! instead of failing the run.

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

/// Attempts per call, throttling and 5xx included.
pub const MAX_ATTEMPTS: u32 = 10;

/// Loads the shared SDK configuration for `region`.
pub async fn sdk_config(region: &str, endpoint_url: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .retry_config(RetryConfig::adaptive().with_max_attempts(MAX_ATTEMPTS));
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// An S3 client; path-style whenever the endpoint is overridden.
pub fn s3(cfg: &SdkConfig) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(cfg)
        .force_path_style(cfg.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

pub fn kms(cfg: &SdkConfig) -> aws_sdk_kms::Client {
    aws_sdk_kms::Client::new(cfg)
}
