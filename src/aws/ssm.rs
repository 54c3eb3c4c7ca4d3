//! SSM Run Command: how `kube-aws etcd restore` runs the node agent's etcd steps on the
//! members (they carry the AmazonSSMManagedInstanceCore policy).

use anyhow::{Result, anyhow, bail};
use aws_config::SdkConfig;
use std::time::{Duration, Instant};

/// Runs a shell command on one instance with AWS-RunShellScript and waits for its
/// outcome. Returns its standard output.
pub async fn run_on(
    sdk: &SdkConfig,
    instance: &str,
    command: &str,
    timeout: Duration,
) -> Result<String> {
    let ssm = aws_sdk_ssm::Client::new(sdk);
    let sent = ssm
        .send_command()
        .document_name("AWS-RunShellScript")
        .instance_ids(instance)
        .parameters("commands", vec![command.to_string()])
        .timeout_seconds(timeout.as_secs().clamp(30, 2_592_000) as i32)
        .comment("kube-aws etcd restore")
        .send()
        .await
        .map_err(|e| anyhow!("SSM SendCommand to {instance}: {}", super::describe(&e)))?;
    let id = sent
        .command()
        .and_then(|c| c.command_id())
        .ok_or_else(|| anyhow!("SSM SendCommand to {instance} returned no command id"))?
        .to_string();
    let deadline = Instant::now() + timeout;
    loop {
        // GetCommandInvocation answers InvocationDoesNotExist for a moment after the send.
        if let Ok(inv) = ssm
            .get_command_invocation()
            .command_id(&id)
            .instance_id(instance)
            .send()
            .await
        {
            let status = inv
                .status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default();
            match status.as_str() {
                "Success" => {
                    return Ok(inv
                        .standard_output_content()
                        .unwrap_or_default()
                        .to_string());
                }
                "Failed" | "Cancelled" | "TimedOut" => bail!(
                    "`{command}` on {instance}: {status}\n{}",
                    inv.standard_error_content().unwrap_or_default()
                ),
                _ => {}
            }
        }
        if Instant::now() > deadline {
            bail!(
                "`{command}` on {instance} did not finish within {}s (SSM command {id})",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}
