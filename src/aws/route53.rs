//! Route 53: the etcd members' A records, which the members write themselves at boot
//! (so CloudFormation does not own them) and `destroy` deletes before the zone.

use anyhow::{Result, anyhow};
use aws_config::SdkConfig;
use aws_sdk_route53::types::{Change, ChangeAction, ChangeBatch, RrType};

/// Deletes every record of a hosted zone but its SOA and NS: a zone that holds other
/// records cannot be deleted ("HostedZoneNotEmpty",
/// https://docs.aws.amazon.com/Route53/latest/APIReference/API_DeleteHostedZone.html).
/// Returns how many it deleted.
pub async fn delete_member_records(sdk: &SdkConfig, zone_id: &str) -> Result<usize> {
    let r53 = aws_sdk_route53::Client::new(sdk);
    let out = r53
        .list_resource_record_sets()
        .hosted_zone_id(zone_id)
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "listing the records of zone {zone_id}: {}",
                super::describe(&e)
            )
        })?;
    let changes: Vec<Change> = out
        .resource_record_sets()
        .iter()
        .filter(|r| !matches!(r.r#type(), RrType::Soa | RrType::Ns))
        .filter_map(|r| {
            Change::builder()
                .action(ChangeAction::Delete)
                .resource_record_set(r.clone())
                .build()
                .ok()
        })
        .collect();
    let n = changes.len();
    if n == 0 {
        return Ok(0);
    }
    let batch = ChangeBatch::builder()
        .set_changes(Some(changes))
        .build()
        .map_err(|e| anyhow!("zone {zone_id}: {e}"))?;
    r53.change_resource_record_sets()
        .hosted_zone_id(zone_id)
        .change_batch(batch)
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "deleting the records of zone {zone_id}: {}",
                super::describe(&e)
            )
        })?;
    Ok(n)
}
