//! The serde types of cluster.yaml.
//!
//! Unknown keys are not rejected by serde itself: the loader collects every ignored
//! key (serde_ignored) so that all of them are reported in one run, each with a
//! did-you-mean. The JSON Schema still says `additionalProperties: false`
//! (`#[schemars(deny_unknown_fields)]`), so editors flag them too.
//!
//! Doc comments on fields become the schema's descriptions.

use super::defaults as d;
use ipnet::Ipv4Net;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A kube-aws cluster: the one file platform engineers review in git.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Config {
    /// Name of the cluster: DNS-safe, starts with a letter, at most 32 characters.
    /// It prefixes every stack and resource name.
    pub cluster_name: String,
    /// Where rendered templates, cloud-configs and encrypted credentials are uploaded,
    /// as `s3://bucket[/prefix]`. Objects go under `<s3URI>/<clusterName>/`.
    #[serde(rename = "s3URI")]
    pub s3_uri: String,
    /// AWS region, for example `us-west-2`.
    pub region: String,
    /// EC2 key pair for SSH access to nodes. Optional: nodes are reachable through SSM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    /// KMS key that encrypts the TLS assets and secrets, in the cluster's region.
    pub kms_key_arn: String,
    /// Route53 hosted zone for API endpoint records (required when an endpoint sets
    /// `recordSetManaged: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosted_zone_id: Option<String>,
    /// Fixed AMI for every node. When absent, the current Ubuntu LTS AMI is resolved by
    /// CloudFormation from the public SSM parameter, with no lookup at render time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ami_id: Option<String>,
    /// Kubernetes version, `MAJOR.MINOR.PATCH`.
    #[serde(default = "d::kubernetes_version")]
    pub kubernetes_version: String,
    /// ClusterIP range of Services. Its first address is the `kubernetes` Service.
    #[serde(rename = "serviceCIDR", default = "d::service_cidr")]
    #[schemars(with = "String")]
    pub service_cidr: Ipv4Net,
    /// Range pod IPs are allocated from. Must not overlap the VPC or the service range.
    #[serde(rename = "podCIDR", default = "d::pod_cidr")]
    #[schemars(with = "String")]
    pub pod_cidr: Ipv4Net,
    /// DNS domain of the cluster's Services.
    #[serde(default = "d::cluster_domain")]
    pub cluster_domain: String,
    /// Load-balanced endpoints of the Kubernetes API. At least one.
    pub api_endpoints: Vec<ApiEndpoint>,
    /// The VPC: a new one (`cidr`) or an existing one (`id`).
    #[serde(default)]
    pub vpc: Vpc,
    /// Subnets, by name. Controllers, etcd and node pools refer to them by name.
    pub subnets: Vec<Subnet>,
    #[serde(default)]
    pub etcd: Etcd,
    #[serde(default)]
    pub controller: Controller,
    #[serde(default)]
    pub worker: Worker,
    #[serde(default)]
    pub tls: Tls,
    /// Tags added to the root stack, and by CloudFormation to every resource it creates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stack_tags: BTreeMap<String, String>,
    #[serde(default)]
    pub cloudformation: CloudFormation,
    #[serde(default)]
    pub addons: Addons,
    #[serde(default)]
    pub cni: Cni,
}

/// The pod network plugin, installed by the first controller from a pinned upstream
/// manifest whose sha256 is checked before it is applied.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Cni {
    /// `calico` (the default; enforces NetworkPolicy, IP-in-IP between nodes) or
    /// `amazon-vpc` (the AWS VPC CNI: pods get VPC addresses; NetworkPolicy is not
    /// enforced; `podCIDR` is then unused and pods take addresses of the node subnets).
    #[serde(default)]
    pub provider: CniProvider,
    /// Where to fetch the manifest instead of its upstream release URL, for example a
    /// mirror inside the VPC. The file must have this sha256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<CniManifest>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CniProvider {
    #[default]
    Calico,
    AmazonVpc,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct CniManifest {
    /// `https://…` (or `http://` on a private mirror) URL of the manifest.
    pub url: String,
    /// Hex sha256 of the manifest's bytes.
    pub sha256: String,
}

/// An endpoint of the Kubernetes API behind a network load balancer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct ApiEndpoint {
    /// Unique, DNS-safe name of the endpoint.
    pub name: String,
    /// DNS name clients use. It is a SAN of the API server certificate.
    pub dns_name: String,
    #[serde(default)]
    pub load_balancer: LoadBalancer,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct LoadBalancer {
    /// `internet-facing` (public subnets) or `internal` (private subnets).
    #[serde(default)]
    pub scheme: LoadBalancerScheme,
    /// Create a Route53 alias record for `dnsName` in `hostedZoneId`.
    #[serde(default)]
    pub record_set_managed: bool,
    /// Subnet names for the load balancer. Default: the public subnets for
    /// `internet-facing`, the private ones for `internal`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<String>,
    /// Source ranges allowed to reach the API (port 6443) through this endpoint, the
    /// original kube-aws name. Default: the VPC's CIDR for an internal endpoint,
    /// 0.0.0.0/0 for an internet-facing one.
    #[serde(
        default,
        rename = "apiAccessAllowedSourceCIDRs",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(with = "Vec<String>")]
    pub api_access_allowed_source_cidrs: Vec<Ipv4Net>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LoadBalancerScheme {
    #[default]
    InternetFacing,
    Internal,
}

/// Exactly one of `cidr` (create a VPC) or `id` (use an existing VPC).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Vpc {
    /// ID of an existing VPC, `vpc-…`. Its subnets must then be given by `id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// CIDR of a new VPC. Default `10.0.0.0/16` when `id` is absent. For an existing
    /// VPC, give its CIDR too so subnet ranges can be checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub cidr: Option<Ipv4Net>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Subnet {
    /// Unique, DNS-safe name that other sections refer to.
    pub name: String,
    /// Availability zone, in the cluster's region.
    pub availability_zone: String,
    /// CIDR inside the VPC. Required for a new VPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub cidr: Option<Ipv4Net>,
    /// Existing subnet ID, `subnet-…`. Required with an existing VPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Private subnets route out through the NAT gateway of a public subnet in the
    /// same availability zone.
    #[serde(default)]
    pub private: bool,
    /// Create a NAT gateway in this (public) subnet for the private subnets of its zone.
    #[serde(default)]
    pub nat_gateway: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Etcd {
    /// Number of etcd members: 1, 3 or 5.
    #[serde(default = "d::etcd_count")]
    pub count: u32,
    #[serde(default = "d::etcd_instance_type")]
    pub instance_type: String,
    /// Subnet names. Members are spread over them in order. Default: private subnets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<String>,
    #[serde(default)]
    pub data_volume: DataVolume,
    #[serde(default)]
    pub snapshot: Snapshot,
}

impl Default for Etcd {
    fn default() -> Self {
        Etcd {
            count: d::etcd_count(),
            instance_type: d::etcd_instance_type(),
            subnets: Vec::new(),
            data_volume: DataVolume::default(),
            snapshot: Snapshot::default(),
        }
    }
}

/// The EBS volume that holds a member's data and follows the member across instance
/// replacements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct DataVolume {
    /// Size in GiB.
    #[serde(default = "d::etcd_volume_size_gib")]
    pub size: u32,
    /// EBS volume type: gp3, gp2, io1 or io2.
    #[serde(rename = "type", default = "d::volume_type")]
    pub volume_type: String,
    /// Provisioned IOPS (io1, io2, gp3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iops: Option<u32>,
}

impl Default for DataVolume {
    fn default() -> Self {
        DataVolume {
            size: d::etcd_volume_size_gib(),
            volume_type: d::volume_type(),
            iops: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Snapshot {
    /// Take scheduled snapshots to `<s3URI>/<clusterName>/etcd-snapshots/`.
    #[serde(default = "d::yes")]
    pub enabled: bool,
    /// Schedule, as an EventBridge `cron(…)` or `rate(…)` expression.
    #[serde(default = "d::etcd_snapshot_schedule")]
    pub schedule: String,
    /// Days snapshots are kept.
    #[serde(default = "d::etcd_snapshot_retention_days")]
    pub retention_days: u32,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            enabled: true,
            schedule: d::etcd_snapshot_schedule(),
            retention_days: d::etcd_snapshot_retention_days(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Controller {
    /// Number of control-plane nodes.
    #[serde(default = "d::controller_count")]
    pub count: u32,
    #[serde(default = "d::controller_instance_type")]
    pub instance_type: String,
    /// Subnet names. Default: private subnets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<String>,
    #[serde(default)]
    pub root_volume: RootVolume,
}

impl Default for Controller {
    fn default() -> Self {
        Controller {
            count: d::controller_count(),
            instance_type: d::controller_instance_type(),
            subnets: Vec::new(),
            root_volume: RootVolume::default(),
        }
    }
}

/// The encrypted root EBS volume of a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct RootVolume {
    /// Size in GiB.
    #[serde(default = "d::root_volume_size_gib")]
    pub size: u32,
    #[serde(rename = "type", default = "d::volume_type")]
    pub volume_type: String,
}

impl Default for RootVolume {
    fn default() -> Self {
        RootVolume {
            size: d::root_volume_size_gib(),
            volume_type: d::volume_type(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Worker {
    /// Node pools, each its own nested stack and auto scaling group.
    #[serde(default)]
    pub node_pools: Vec<NodePool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct NodePool {
    /// Unique, DNS-safe name of the pool.
    pub name: String,
    /// Instance type of every node. Leave it out when `mixedInstances` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// Several instance types and spot capacity, as an ASG MixedInstancesPolicy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mixed_instances: Option<MixedInstances>,
    /// Subnet names. Default: private subnets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<String>,
    #[serde(default = "d::pool_min_size")]
    pub min_size: u32,
    #[serde(default = "d::pool_max_size")]
    pub max_size: u32,
    #[serde(default = "d::pool_desired_capacity")]
    pub desired_capacity: u32,
    /// Node labels given to kubelet.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Node taints given to kubelet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
    #[serde(default)]
    pub rolling_update: RollingUpdate,
    #[serde(default)]
    pub root_volume: RootVolume,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct MixedInstances {
    /// Instance types, in order of preference. At least one.
    pub instance_types: Vec<String>,
    /// On-demand instances before any spot capacity.
    #[serde(default = "d::on_demand_base_capacity")]
    pub on_demand_base_capacity: u32,
    /// Percentage of on-demand above the base; 0 means all spot.
    #[serde(default = "d::on_demand_percentage_above_base")]
    pub on_demand_percentage_above_base_capacity: u32,
    #[serde(default)]
    pub spot_allocation_strategy: SpotAllocationStrategy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SpotAllocationStrategy {
    #[default]
    PriceCapacityOptimized,
    CapacityOptimized,
    LowestPrice,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Taint {
    pub key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    pub effect: TaintEffect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

/// How CloudFormation replaces the pool's instances when its launch template or
/// cloud-config changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct RollingUpdate {
    /// Instances kept in service during a roll. Must be below `maxSize`.
    #[serde(default = "d::min_instances_in_service")]
    pub min_instances_in_service: u32,
    /// Instances replaced at once.
    #[serde(default = "d::max_batch_size")]
    pub max_batch_size: u32,
    /// Order of this pool's roll relative to the other pools.
    #[serde(default)]
    pub strategy: RollingStrategy,
    /// Seconds a node may take to drain before it is terminated anyway.
    #[serde(default = "d::drain_timeout_seconds")]
    pub drain_timeout_seconds: u32,
    /// How long CloudFormation waits for a batch's signals (ISO 8601, e.g. `PT15M`).
    #[serde(default = "d::pause_time")]
    pub pause_time: String,
    /// Bring new instances up before old ones go.
    #[serde(default)]
    pub surge: bool,
}

impl Default for RollingUpdate {
    fn default() -> Self {
        RollingUpdate {
            min_instances_in_service: d::min_instances_in_service(),
            max_batch_size: d::max_batch_size(),
            strategy: RollingStrategy::default(),
            drain_timeout_seconds: d::drain_timeout_seconds(),
            pause_time: d::pause_time(),
            surge: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum RollingStrategy {
    /// Roll with the other Parallel pools at the same time.
    #[default]
    Parallel,
    /// Roll after the previous pool in the list has finished.
    Sequential,
    /// Roll one availability zone at a time.
    AvailabilityZone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    #[default]
    EcdsaP256,
    #[serde(rename = "rsa-2048")]
    Rsa2048,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Tls {
    /// Algorithm of every generated key: `ecdsa-p256` or `rsa-2048`.
    #[serde(default)]
    pub key_algorithm: KeyAlgorithm,
    /// Validity of the generated CAs, in days.
    #[serde(default = "d::ca_duration_days")]
    pub ca_duration_days: u32,
    /// Validity of the generated leaf certificates, in days.
    #[serde(default = "d::cert_duration_days")]
    pub cert_duration_days: u32,
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            key_algorithm: KeyAlgorithm::default(),
            ca_duration_days: d::ca_duration_days(),
            cert_duration_days: d::cert_duration_days(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct CloudFormation {
    /// IAM role CloudFormation assumes for every stack operation.
    #[serde(rename = "roleARN", default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// Protect the root stack from deletion.
    #[serde(default)]
    pub termination_protection: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Addons {
    #[serde(default)]
    pub service_catalog: ServiceCatalog,
    #[serde(default)]
    pub aws_service_broker: AwsServiceBroker,
}

/// The Kubernetes Service Catalog, with v1 CRDs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct ServiceCatalog {
    #[serde(default)]
    pub enabled: bool,
}

/// The AWS service broker built into this binary. Requires the Service Catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct AwsServiceBroker {
    #[serde(default)]
    pub enabled: bool,
    /// Prefix of the broker's CloudFormation stacks; DNS-safe.
    #[serde(default = "d::broker_id")]
    pub broker_id: String,
    /// Catalog services to offer, e.g. s3, sqs, sns, dynamodb.
    #[serde(default = "d::broker_services")]
    pub services: Vec<String>,
    /// How the Service Catalog authenticates to the broker.
    #[serde(default)]
    pub auth: BrokerAuth,
    /// Namespace the broker runs in.
    #[serde(default = "d::broker_namespace")]
    pub namespace: String,
    /// Container image with `kube-aws` as its entrypoint (build it from the repository's
    /// Dockerfile and push it to your registry).
    #[serde(default = "d::broker_image")]
    pub image: String,
}

impl Default for AwsServiceBroker {
    fn default() -> Self {
        AwsServiceBroker {
            enabled: false,
            broker_id: d::broker_id(),
            services: d::broker_services(),
            auth: BrokerAuth::default(),
            namespace: d::broker_namespace(),
            image: d::broker_image(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BrokerAuth {
    Basic,
    #[default]
    Bearer,
}
