//! The AWS calls a node makes (`kube-aws node …`), with the instance role: KMS Decrypt
//! of its secrets, CloudFormation SignalResource, and the Auto Scaling lifecycle.

use anyhow::{Result, anyhow};
use aws_config::SdkConfig;
use aws_sdk_kms::primitives::Blob;

/// Decrypts a secret under the context it was encrypted with (`{cluster, file}`); the
/// role's policy allows only the files of its role.
pub async fn decrypt(sdk: &SdkConfig, blob: Vec<u8>, cluster: &str, file: &str) -> Result<Vec<u8>> {
    let out = super::kms(sdk)
        .decrypt()
        .ciphertext_blob(Blob::new(blob))
        .encryption_context("cluster", cluster)
        .encryption_context("file", file)
        .send()
        .await
        .map_err(|e| anyhow!("KMS Decrypt of {file}: {}", super::describe(&e)))?;
    out.plaintext()
        .map(|b| b.as_ref().to_vec())
        .ok_or_else(|| anyhow!("KMS Decrypt of {file} returned no plaintext"))
}

/// CloudFormation SignalResource: one signal per instance (`UniqueId`). A FAILURE
/// "causes CloudFormation to immediately fail the stack creation or update"
/// (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_SignalResource.html).
pub async fn signal(
    sdk: &SdkConfig,
    stack: &str,
    resource: &str,
    instance: &str,
    success: bool,
) -> Result<()> {
    use aws_sdk_cloudformation::types::ResourceSignalStatus;
    super::cloudformation(sdk)
        .signal_resource()
        .stack_name(stack)
        .logical_resource_id(resource)
        .unique_id(instance)
        .status(if success {
            ResourceSignalStatus::Success
        } else {
            ResourceSignalStatus::Failure
        })
        .send()
        .await
        .map_err(|e| anyhow!("SignalResource {stack}/{resource}: {}", super::describe(&e)))?;
    Ok(())
}

/// The auto scaling group an instance belongs to.
pub async fn instance_group(sdk: &SdkConfig, instance: &str) -> Result<Option<String>> {
    let out = aws_sdk_autoscaling::Client::new(sdk)
        .describe_auto_scaling_instances()
        .instance_ids(instance)
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "DescribeAutoScalingInstances {instance}: {}",
                super::describe(&e)
            )
        })?;
    Ok(out
        .auto_scaling_instances()
        .first()
        .and_then(|i| i.auto_scaling_group_name())
        .map(str::to_string))
}

/// CompleteLifecycleAction CONTINUE: the terminating instance may go.
pub async fn complete_lifecycle(
    sdk: &SdkConfig,
    group: &str,
    hook: &str,
    instance: &str,
) -> Result<()> {
    aws_sdk_autoscaling::Client::new(sdk)
        .complete_lifecycle_action()
        .auto_scaling_group_name(group)
        .lifecycle_hook_name(hook)
        .instance_id(instance)
        .lifecycle_action_result("CONTINUE")
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "CompleteLifecycleAction {group}/{hook}: {}",
                super::describe(&e)
            )
        })?;
    Ok(())
}

/// SDK configuration on a node: the region and the instance role's credentials from the
/// instance metadata service at `imds` (overridable, so tests run the real code), and
/// the standard endpoint override (`AWS_ENDPOINT_URL`).
pub async fn sdk_config(region: &str, imds: &str) -> Result<SdkConfig> {
    use aws_config::retry::RetryConfig;
    let client = aws_config::imds::Client::builder()
        .endpoint(imds)
        .map_err(|e| anyhow!("instance metadata endpoint {imds}: {e}"))?
        .build();
    let creds = aws_config::imds::credentials::ImdsCredentialsProvider::builder()
        .imds_client(client)
        .build();
    Ok(aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .credentials_provider(creds)
        .retry_config(
            RetryConfig::adaptive()
                .with_max_attempts(super::MAX_ATTEMPTS)
                .with_initial_backoff(super::INITIAL_BACKOFF)
                .with_max_backoff(super::MAX_BACKOFF),
        )
        .load()
        .await)
}

/// The private and public names and addresses EC2 reports for the running instance of
/// this cluster whose private DNS name is `node`: what a kubelet serving certificate may
/// name. None when no such instance exists.
pub async fn instance_addresses(
    sdk: &SdkConfig,
    cluster: &str,
    node: &str,
) -> Result<Option<(Vec<String>, Vec<std::net::IpAddr>)>> {
    use aws_sdk_ec2::types::Filter;
    let out = super::ec2(sdk)
        .describe_instances()
        .filters(
            Filter::builder()
                .name("private-dns-name")
                .values(node)
                .build(),
        )
        .filters(
            Filter::builder()
                .name(format!("tag:kubernetes.io/cluster/{cluster}"))
                .values("owned")
                .values("shared")
                .build(),
        )
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("running")
                .build(),
        )
        .send()
        .await
        .map_err(|e| anyhow!("DescribeInstances {node}: {}", super::describe(&e)))?;
    let Some(i) = out.reservations().iter().flat_map(|r| r.instances()).next() else {
        return Ok(None);
    };
    let (mut dns, mut ips): (Vec<String>, Vec<std::net::IpAddr>) = (Vec::new(), Vec::new());
    for d in [i.private_dns_name(), i.public_dns_name()]
        .into_iter()
        .flatten()
    {
        if !d.is_empty() {
            dns.push(d.to_string());
        }
    }
    for ni in i.network_interfaces() {
        for p in ni.private_ip_addresses() {
            if let Some(ip) = p.private_ip_address().and_then(|s| s.parse().ok()) {
                ips.push(ip);
            }
            if let Some(ip) = p
                .association()
                .and_then(|x| x.public_ip())
                .and_then(|s| s.parse().ok())
            {
                ips.push(ip);
            }
        }
    }
    if let Some(ip) = i.private_ip_address().and_then(|s| s.parse().ok())
        && !ips.contains(&ip)
    {
        ips.push(ip);
    }
    Ok(Some((dns, ips)))
}

/// A String parameter's value, or None when it does not exist.
pub async fn ssm_parameter(sdk: &SdkConfig, name: &str) -> Result<Option<String>> {
    match aws_sdk_ssm::Client::new(sdk)
        .get_parameter()
        .name(name)
        .send()
        .await
    {
        Ok(out) => Ok(out.parameter().and_then(|p| p.value()).map(str::to_string)),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_parameter_not_found()) =>
        {
            Ok(None)
        }
        Err(e) => Err(anyhow!("SSM GetParameter {name}: {}", super::describe(&e))),
    }
}

/// KMS Encrypt under the context `{cluster, file}` (the one nodes decrypt with).
pub async fn encrypt(
    sdk: &SdkConfig,
    key_arn: &str,
    plaintext: &[u8],
    cluster: &str,
    file: &str,
) -> Result<Vec<u8>> {
    let out = super::kms(sdk)
        .encrypt()
        .key_id(key_arn)
        .plaintext(Blob::new(plaintext.to_vec()))
        .encryption_context("cluster", cluster)
        .encryption_context("file", file)
        .send()
        .await
        .map_err(|e| anyhow!("KMS Encrypt of {file}: {}", super::describe(&e)))?;
    out.ciphertext_blob()
        .map(|b| b.as_ref().to_vec())
        .ok_or_else(|| anyhow!("KMS Encrypt of {file} returned no ciphertext"))
}

/// Writes one object (server-side encrypted), replacing what is there.
pub async fn put_object(sdk: &SdkConfig, bucket: &str, key: &str, body: Vec<u8>) -> Result<()> {
    super::s3(sdk)
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body.into())
        .content_type("application/octet-stream")
        .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::Aes256)
        .send()
        .await
        .map_err(|e| anyhow!("writing s3://{bucket}/{key}: {}", super::describe(&e)))?;
    Ok(())
}

/// One object's bytes from S3.
pub async fn get_object(sdk: &SdkConfig, bucket: &str, key: &str) -> Result<Vec<u8>> {
    let out = super::s3(sdk)
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| anyhow!("s3://{bucket}/{key}: {}", super::describe(&e)))?;
    Ok(out
        .body
        .collect()
        .await
        .map_err(|e| anyhow!("s3://{bucket}/{key}: {e}"))?
        .into_bytes()
        .to_vec())
}

/// The tags of an instance (ec2:DescribeTags): nodes keep tags out of the metadata
/// service, which refuses keys with "/".
pub async fn instance_tags(
    sdk: &SdkConfig,
    instance: &str,
) -> Result<std::collections::BTreeMap<String, String>> {
    use aws_sdk_ec2::types::Filter;
    let mut tags = std::collections::BTreeMap::new();
    let mut pages = super::ec2(sdk)
        .describe_tags()
        .filters(
            Filter::builder()
                .name("resource-id")
                .values(instance)
                .build(),
        )
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| anyhow!("DescribeTags {instance}: {}", super::describe(&e)))?;
        for t in page.tags() {
            if let (Some(k), Some(v)) = (t.key(), t.value()) {
                tags.insert(k.to_string(), v.to_string());
            }
        }
    }
    Ok(tags)
}

/// (ENIs, IPv4 addresses per ENI) of an instance type (ec2:DescribeInstanceTypes).
pub async fn eni_limits(sdk: &SdkConfig, instance_type: &str) -> Result<(u32, u32)> {
    let out = super::ec2(sdk)
        .describe_instance_types()
        .instance_types(aws_sdk_ec2::types::InstanceType::from(instance_type))
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "DescribeInstanceTypes {instance_type}: {}",
                super::describe(&e)
            )
        })?;
    let n = out
        .instance_types()
        .first()
        .and_then(|t| t.network_info())
        .ok_or_else(|| anyhow!("EC2 reports no network limits for {instance_type}"))?;
    Ok((
        n.maximum_network_interfaces().unwrap_or(1).max(1) as u32,
        n.ipv4_addresses_per_interface().unwrap_or(1).max(1) as u32,
    ))
}

/// The state of an EBS volume and the instance it is attached to, if any.
pub async fn volume_attachment(sdk: &SdkConfig, volume: &str) -> Result<(String, Option<String>)> {
    let out = super::ec2(sdk)
        .describe_volumes()
        .volume_ids(volume)
        .send()
        .await
        .map_err(|e| anyhow!("DescribeVolumes {volume}: {}", super::describe(&e)))?;
    let v = out
        .volumes()
        .first()
        .ok_or_else(|| anyhow!("volume {volume} does not exist"))?;
    let state = v
        .state()
        .map(|s| s.as_str().to_string())
        .unwrap_or_default();
    let owner = v
        .attachments()
        .iter()
        .find(|a| {
            a.state()
                .is_some_and(|s| s.as_str() == "attached" || s.as_str() == "attaching")
        })
        .and_then(|a| a.instance_id())
        .map(str::to_string);
    Ok((state, owner))
}

/// ec2:AttachVolume of the member's own volume to this instance.
pub async fn attach_volume(
    sdk: &SdkConfig,
    volume: &str,
    instance: &str,
    device: &str,
) -> Result<()> {
    super::ec2(sdk)
        .attach_volume()
        .volume_id(volume)
        .instance_id(instance)
        .device(device)
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "AttachVolume {volume} to {instance}: {}",
                super::describe(&e)
            )
        })?;
    Ok(())
}

/// Points the member's DNS name at this instance (an UPSERT of its A record, TTL 30 s,
/// so peers and the API servers follow a replacement within half a minute).
pub async fn claim_name(sdk: &SdkConfig, zone_id: &str, name: &str, ip: &str) -> Result<()> {
    use aws_sdk_route53::types::{
        Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
    };
    let build = |e: aws_sdk_route53::error::BuildError| anyhow!("record {name}: {e}");
    let set = ResourceRecordSet::builder()
        .name(name)
        .r#type(RrType::A)
        .ttl(30)
        .resource_records(ResourceRecord::builder().value(ip).build().map_err(build)?)
        .build()
        .map_err(build)?;
    let batch = ChangeBatch::builder()
        .changes(
            Change::builder()
                .action(ChangeAction::Upsert)
                .resource_record_set(set)
                .build()
                .map_err(build)?,
        )
        .build()
        .map_err(build)?;
    aws_sdk_route53::Client::new(sdk)
        .change_resource_record_sets()
        .hosted_zone_id(zone_id)
        .change_batch(batch)
        .send()
        .await
        .map_err(|e| anyhow!("Route 53 UPSERT {name} → {ip}: {}", super::describe(&e)))?;
    Ok(())
}

/// Every key under a prefix (s3:ListBucket with that prefix).
pub async fn list_keys(sdk: &SdkConfig, bucket: &str, prefix: &str) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut pages = super::s3(sdk)
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| anyhow!("listing s3://{bucket}/{prefix}: {}", super::describe(&e)))?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key())
                .map(str::to_string),
        );
    }
    Ok(keys)
}

/// Whether an instance still exists (pending or running). A terminated instance stays
/// visible for about an hour, then DescribeInstances answers InvalidInstanceID.NotFound
/// (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/terminating-instances.html).
pub async fn instance_alive(sdk: &SdkConfig, instance: &str) -> Result<bool> {
    match super::ec2(sdk)
        .describe_instances()
        .instance_ids(instance)
        .send()
        .await
    {
        Ok(out) => Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .any(|i| {
                i.state()
                    .and_then(|s| s.name())
                    .is_some_and(|n| matches!(n.as_str(), "pending" | "running"))
            })),
        Err(e) => {
            let msg = super::describe(&e);
            if msg.contains("InvalidInstanceID") {
                Ok(false)
            } else {
                Err(anyhow!("DescribeInstances {instance}: {msg}"))
            }
        }
    }
}
