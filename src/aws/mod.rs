//! AWS SDK clients. The only module (with `deploy`, later) that talks to AWS.
//!
//! Configuration follows the standard chain (environment, profile, IMDS). An endpoint
//! override, `AWS_ENDPOINT_URL` or `--endpoint-url`, points every client at another
//! endpoint such as the local moto server; S3 then uses path-style addressing, which
//! local emulators need. Retries are adaptive, so throttling slows the client down
//! instead of failing the run.

pub mod dynamodb;
pub mod kms;
pub mod node;
pub mod route53;
pub mod s3;
pub mod ssm;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

/// Attempts per call, throttling and 5xx included.
pub const MAX_ATTEMPTS: u32 = 10;
/// Backoff between attempts starts here and doubles, with jitter, up to `MAX_BACKOFF`:
/// long enough to let a throttled API recover, short enough that a run that will
/// succeed is not left waiting for minutes.
pub const INITIAL_BACKOFF: std::time::Duration = std::time::Duration::from_millis(200);
pub const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(5);

/// Loads the shared SDK configuration for `region`.
pub async fn sdk_config(region: &str, endpoint_url: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .retry_config(
            RetryConfig::adaptive()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_initial_backoff(INITIAL_BACKOFF)
                .with_max_backoff(MAX_BACKOFF),
        );
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

pub fn cloudformation(cfg: &SdkConfig) -> aws_sdk_cloudformation::Client {
    aws_sdk_cloudformation::Client::new(cfg)
}

pub fn ec2(cfg: &SdkConfig) -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(cfg)
}

pub fn elbv2(cfg: &SdkConfig) -> aws_sdk_elasticloadbalancingv2::Client {
    aws_sdk_elasticloadbalancingv2::Client::new(cfg)
}

/// A one-line description of an SDK error: the service's code and message when there
/// is one, the transport cause otherwise.
pub fn describe<E, R>(e: &aws_sdk_kms::error::SdkError<E, R>) -> String
where
    E: aws_sdk_kms::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    use aws_sdk_kms::error::SdkError;
    match e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            match (err.code(), err.message()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_string(),
                _ => err.to_string(),
            }
        }
        SdkError::DispatchFailure(d) => format!(
            "cannot reach AWS: {}",
            source_chain(
                d.as_connector_error()
                    .map(|c| c as &(dyn std::error::Error + 'static))
            )
        ),
        SdkError::TimeoutError(_) => "AWS did not answer in time".to_string(),
        other => source_chain(Some(other)),
    }
}

fn source_chain(e: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut parts = Vec::new();
    let mut cur = e;
    while let Some(err) = cur {
        parts.push(err.to_string());
        cur = err.source();
    }
    parts.join(": ")
}
