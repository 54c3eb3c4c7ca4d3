//! What templates see: a serializable projection of Config + Model. Every list is in a
//! fixed order and every map sorted, so the same input renders the same bytes.

use crate::config::types::{
    Config, LoadBalancerScheme, NodePool, RollingStrategy, SpotAllocationStrategy,
};
use crate::model::{API_PORT, Model};
use serde::Serialize;
use std::collections::BTreeMap;

/// The etcd image, run as a static pod by a standalone kubelet on the etcd members.
/// kubeadm refuses an external etcd older than its MinExternalEtcdVersion, which the
/// 1.31–1.34 release branches raised to 3.5.24-0 (kubernetes/kubernetes#134861,
/// #135018–#135020; cmd/kubeadm/app/constants/constants.go).
pub const ETCD_IMAGE: &str = "registry.k8s.io/etcd:3.5.24-0";
/// Minor version of the standalone kubelet on etcd hosts. It only runs the etcd static
/// pod and never joins the cluster, so it follows the etcd image, not kubernetesVersion:
/// a Kubernetes upgrade never replaces the etcd members.
pub const ETCD_HOST_KUBELET_MINOR: &str = "1.34";
/// The public SSM parameter of the current Ubuntu LTS AMI.
pub const UBUNTU_AMI_PARAMETER: &str =
    "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id";

pub use crate::model::stack_id::logical;

#[derive(Debug, Clone, Serialize)]
pub struct Ctx {
    pub cluster: ClusterCtx,
    pub s3: S3Ctx,
    pub network: NetworkCtx,
    pub etcd: EtcdCtx,
    pub controller: ControllerCtx,
    pub endpoints: Vec<EndpointCtx>,
    pub pools: Vec<PoolCtx>,
    pub versions: VersionsCtx,
    pub ami: AmiCtx,
    pub addons: AddonsCtx,
    /// Filled in as rendering proceeds.
    pub assets: AssetsCtx,
    pub credentials: CredentialsCtx,
    /// The pool a node-pool template or worker cloud-config is rendered for.
    pub pool: Option<PoolCtx>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterCtx {
    pub name: String,
    pub region: String,
    pub domain: String,
    pub service_cidr: String,
    pub pod_cidr: String,
    pub kubernetes_service_ip: String,
    pub dns_service_ip: String,
    /// The URL nodes use: the first internal endpoint, else the first one.
    pub api_url: String,
    pub api_host: String,
    pub api_port: u16,
    pub key_name: Option<String>,
    pub kms_key_arn: String,
    pub hosted_zone_id: Option<String>,
    pub etcd_endpoints: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct S3Ctx {
    pub bucket: String,
    pub prefix: String,
    /// `https://…` up to and including the prefix; the root stack's AssetsBaseUrl default.
    pub base_url: String,
    pub arn_prefix: String,
    /// `arn:${AWS::Partition}:s3:::<bucket>`, for Fn::Sub.
    pub bucket_arn: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubnetCtx {
    pub name: String,
    pub logical: String,
    pub az: String,
    pub az_logical: String,
    pub cidr: String,
    pub private: bool,
    pub nat: bool,
    pub id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NetworkCtx {
    pub new_vpc: bool,
    pub vpc_id: Option<String>,
    pub vpc_cidr: String,
    /// Who may reach the API load balancer on 6443: every endpoint's
    /// apiAccessAllowedSourceCIDRs, or its default (the VPC for internal endpoints,
    /// anywhere for internet-facing ones), deduplicated in order.
    pub api_allowed_cidrs: Vec<String>,
    pub subnets: Vec<SubnetCtx>,
    /// One NAT gateway per zone that has a public subnet with natGateway: true.
    pub nats: Vec<NatCtx>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NatCtx {
    pub az: String,
    pub az_logical: String,
    /// The public subnet it sits in.
    pub public_logical: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberCtx {
    pub index: usize,
    pub name: String,
    pub logical: String,
    pub dns_name: String,
    pub subnet_logical: String,
    pub az: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct EtcdCtx {
    pub zone: String,
    pub instance_type: String,
    pub volume_size: u32,
    pub volume_type: String,
    pub volume_iops: Option<u32>,
    pub snapshot_enabled: bool,
    pub snapshot_schedule: String,
    pub snapshot_retention_days: u32,
    pub members: Vec<MemberCtx>,
    /// The subnets the members use, each once.
    pub subnets: Vec<String>,
    pub initial_cluster: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ControllerCtx {
    pub count: u32,
    pub instance_type: String,
    pub subnets: Vec<String>,
    /// Controller subnets and API load balancer subnets, each once.
    pub all_subnets: Vec<String>,
    pub root_volume_size: u32,
    pub root_volume_type: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct EndpointCtx {
    pub name: String,
    pub logical: String,
    pub dns_name: String,
    pub internal: bool,
    pub record_set_managed: bool,
    pub subnets: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MixedCtx {
    pub instance_types: Vec<String>,
    pub on_demand_base: u32,
    pub on_demand_percentage: u32,
    pub spot_strategy: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaintCtx {
    pub key: String,
    pub value: String,
    pub effect: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AzGroupCtx {
    pub az: String,
    pub logical: String,
    pub subnets: Vec<String>,
    pub min_size: u32,
    pub max_size: u32,
    pub desired: u32,
    /// Instances of this group kept in service while it rolls; with one group per zone,
    /// the other zones stay whole, so the pool never drops below its minInstancesInService.
    pub min_in_service: u32,
}

/// `total` spread over `n` groups, the first ones taking the remainder.
fn share(total: u32, n: usize, i: usize) -> u32 {
    let n = n.max(1) as u32;
    total / n + u32::from((i as u32) < total % n)
}

#[derive(Debug, Clone, Serialize)]
pub struct PoolCtx {
    pub name: String,
    pub logical: String,
    /// The pool stack's logical id in the root (StackId::logical_id).
    pub stack_logical: String,
    pub instance_type: String,
    pub mixed: Option<MixedCtx>,
    pub subnets: Vec<String>,
    /// Auto scaling groups: one per zone for the AvailabilityZone strategy (each rolls
    /// after the previous), else one with every subnet and an empty logical suffix.
    pub groups: Vec<AzGroupCtx>,
    /// Base64 of the pool's instance user data stub; filled in by the renderer.
    pub stub: String,
    /// Key of the pool's rendered stack template; filled in by the renderer.
    pub template: String,
    pub min_size: u32,
    pub max_size: u32,
    pub desired: u32,
    /// `k=v,k2=v2`, sorted by key: reordering labels in YAML changes nothing.
    pub labels: String,
    /// The labels as pairs, sorted by key.
    pub label_pairs: Vec<(String, String)>,
    /// The taints for kubeadm's JoinConfiguration.
    pub taint_list: Vec<TaintCtx>,
    /// (key, `value:Effect`) for the cluster-autoscaler node-template tags.
    pub taint_pairs: Vec<(String, String)>,
    /// `k=v:Effect,…`, in config order.
    pub taints: String,
    pub min_in_service: u32,
    pub max_batch_size: u32,
    pub strategy: String,
    pub drain_timeout: u32,
    pub pause_time: String,
    pub surge: bool,
    pub root_volume_size: u32,
    pub root_volume_type: String,
    /// For the Sequential strategy: the root-stack logical id of the pool stack to wait for
    /// (the previous pool's `stack_logical`).
    pub depends_on: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VersionsCtx {
    pub kubernetes: String,
    pub kubernetes_minor: String,
    pub etcd_image: String,
    pub etcd_host_kubelet_minor: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AmiCtx {
    pub id: Option<String>,
    pub ssm_parameter: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct UserdataRef {
    pub key: String,
    pub url: String,
    pub sha256: String,
}

/// The add-ons: their stack exists when any add-on is on; the broker's prerequisites
/// only when the broker is.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AddonsCtx {
    pub enabled: bool,
    pub catalog: bool,
    pub broker: bool,
    /// SSM parameter the controllers read to find the bundle.
    pub parameter: String,
    /// `<s3 key> <sha256>` of the rendered bundle (set while rendering).
    pub bundle: String,
    pub broker_id: String,
    pub namespace: String,
    /// DynamoDB table of the broker's state.
    pub table: String,
    /// IAM role the broker assumes from the controllers.
    pub role_name: String,
    /// The role's statements for the offered services, as JSON arrays, each small enough
    /// for one managed policy (IAM: 6,144 characters; a role's inline policies share
    /// 10,240, which all 18 services exceed).
    /// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html
    pub broker_policies: Vec<String>,
    /// The managed policy that bounds every binding user (`broker_names`).
    pub boundary_name: String,
    /// The broker offers EMR: the stack holds the one EMR service role.
    pub broker_emr: bool,
    /// Its statements: the offered services' `bindBoundary`, as a JSON array.
    pub bind_boundary: String,
}

/// Characters of statements per managed policy: IAM's 6,144 less the document's frame.
const MANAGED_POLICY_BUDGET: usize = 6_000;

/// Splits statements, in order, into JSON arrays of at most `budget` characters each.
pub fn chunk_statements(statements: &[serde_json::Value], budget: usize) -> Vec<String> {
    let mut out: Vec<Vec<&serde_json::Value>> = Vec::new();
    let mut size = 0;
    for s in statements {
        let n = serde_json::to_string(s).map(|x| x.len() + 1).unwrap_or(0);
        match out.last_mut() {
            Some(c) if size + n <= budget => c.push(s),
            _ => {
                out.push(vec![s]);
                size = 0;
            }
        }
        size += n;
    }
    out.iter()
        .map(|c| serde_json::to_string(c).unwrap_or_else(|_| "[]".into()))
        .collect()
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AssetsCtx {
    /// Stack name → key relative to the cluster prefix.
    pub stacks: BTreeMap<String, String>,
    /// The cloud-config the stub being rendered fetches.
    pub target: UserdataRef,
    /// Role (`etcd`, `controller`, `worker-<pool>`) → base64 of its instance user data stub.
    pub stubs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CredentialsCtx {
    /// Certificate and public-key PEMs by file name (safe to embed).
    pub public: BTreeMap<String, String>,
    /// Secret file name → S3 key of its `.enc` (named by the plaintext fingerprint).
    pub secrets: BTreeMap<String, String>,
}

fn subnet_names(refs: &[String], c: &Config, want_private: bool) -> Vec<String> {
    if !refs.is_empty() {
        return refs.iter().map(|r| logical(r)).collect();
    }
    let chosen: Vec<String> = c
        .subnets
        .iter()
        .filter(|s| s.private == want_private)
        .map(|s| logical(&s.name))
        .collect();
    if chosen.is_empty() {
        c.subnets.iter().map(|s| logical(&s.name)).collect()
    } else {
        chosen
    }
}

fn pool_ctx(c: &Config, p: &NodePool, prev: Option<&str>) -> PoolCtx {
    let subnets = subnet_names(&p.subnets, c, true);
    let mut az_groups: Vec<AzGroupCtx> = Vec::new();
    for s in c
        .subnets
        .iter()
        .filter(|s| subnets.contains(&logical(&s.name)))
    {
        match az_groups.iter_mut().find(|g| g.az == s.availability_zone) {
            Some(g) => g.subnets.push(logical(&s.name)),
            None => az_groups.push(AzGroupCtx {
                az: s.availability_zone.clone(),
                logical: logical(&s.availability_zone),
                subnets: vec![logical(&s.name)],
                min_size: 0,
                max_size: 0,
                desired: 0,
                min_in_service: 0,
            }),
        }
    }
    let labels = p
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let taints = p
        .taints
        .iter()
        .map(|t| format!("{}={}:{:?}", t.key, t.value, t.effect))
        .collect::<Vec<_>>()
        .join(",");
    let ru = &p.rolling_update;
    let groups = if ru.strategy == RollingStrategy::AvailabilityZone && !az_groups.is_empty() {
        let n = az_groups.len();
        for (i, g) in az_groups.iter_mut().enumerate() {
            g.min_size = share(p.min_size, n, i);
            g.max_size = share(p.max_size, n, i);
            g.desired = share(p.desired_capacity, n, i);
            let others = p.desired_capacity - g.desired;
            g.min_in_service = ru
                .min_instances_in_service
                .saturating_sub(others)
                .min(g.max_size.saturating_sub(1));
        }
        az_groups
    } else {
        vec![AzGroupCtx {
            az: String::new(),
            logical: String::new(),
            subnets: subnets.clone(),
            min_size: p.min_size,
            max_size: p.max_size,
            desired: p.desired_capacity,
            min_in_service: ru.min_instances_in_service,
        }]
    };
    PoolCtx {
        name: p.name.clone(),
        logical: logical(&p.name),
        stack_logical: crate::model::stack_id::StackId::NodePool(p.name.clone()).logical_id(),
        instance_type: p
            .instance_type
            .clone()
            .unwrap_or_else(crate::config::defaults::worker_instance_type),
        mixed: p.mixed_instances.as_ref().map(|m| MixedCtx {
            instance_types: m.instance_types.clone(),
            on_demand_base: m.on_demand_base_capacity,
            on_demand_percentage: m.on_demand_percentage_above_base_capacity,
            spot_strategy: match m.spot_allocation_strategy {
                SpotAllocationStrategy::PriceCapacityOptimized => "price-capacity-optimized",
                SpotAllocationStrategy::CapacityOptimized => "capacity-optimized",
                SpotAllocationStrategy::LowestPrice => "lowest-price",
            }
            .to_string(),
        }),
        subnets,
        groups,
        stub: String::new(),
        template: String::new(),
        min_size: p.min_size,
        max_size: p.max_size,
        desired: p.desired_capacity,
        labels,
        label_pairs: p
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        taint_list: p
            .taints
            .iter()
            .map(|t| TaintCtx {
                key: t.key.clone(),
                value: t.value.clone(),
                effect: format!("{:?}", t.effect),
            })
            .collect(),
        taint_pairs: p
            .taints
            .iter()
            .map(|t| (t.key.clone(), format!("{}:{:?}", t.value, t.effect)))
            .collect(),
        taints,
        min_in_service: ru.min_instances_in_service,
        max_batch_size: ru.max_batch_size,
        strategy: format!("{:?}", ru.strategy),
        drain_timeout: ru.drain_timeout_seconds,
        pause_time: ru.pause_time.clone(),
        surge: ru.surge,
        root_volume_size: p.root_volume.size,
        root_volume_type: p.root_volume.volume_type.clone(),
        depends_on: if ru.strategy == RollingStrategy::Sequential {
            prev.map(str::to_string)
        } else {
            None
        },
    }
}

/// HTTPS URL of `<bucket>/<prefix>` in S3: virtual-hosted, or path-style for a bucket
/// name with dots (which virtual-hosted TLS cannot serve).
pub fn build_base_url(bucket: &str, region: &str, prefix: &str) -> String {
    if bucket.contains('.') {
        format!("https://s3.{region}.amazonaws.com/{bucket}/{prefix}")
    } else {
        format!("https://{bucket}.s3.{region}.amazonaws.com/{prefix}")
    }
}

/// Builds the context; `assets` and `credentials` are filled in by the renderer.
pub fn build(c: &Config, m: &Model) -> Ctx {
    let subnets: Vec<SubnetCtx> = c
        .subnets
        .iter()
        .map(|s| SubnetCtx {
            name: s.name.clone(),
            logical: logical(&s.name),
            az: s.availability_zone.clone(),
            az_logical: logical(&s.availability_zone),
            cidr: s.cidr.map(|n| n.to_string()).unwrap_or_default(),
            private: s.private,
            nat: s.nat_gateway,
            id: s.id.clone(),
        })
        .collect();
    let mut nats: Vec<NatCtx> = Vec::new();
    for s in subnets.iter().filter(|s| s.nat && !s.private) {
        if !nats.iter().any(|n| n.az == s.az) {
            nats.push(NatCtx {
                az: s.az.clone(),
                az_logical: s.az_logical.clone(),
                public_logical: s.logical.clone(),
            });
        }
    }
    let subnet_az = |l: &str| {
        subnets
            .iter()
            .find(|s| s.logical == l)
            .map(|s| s.az.clone())
            .unwrap_or_default()
    };
    let members: Vec<MemberCtx> = m
        .etcd_members
        .iter()
        .map(|e| MemberCtx {
            index: e.index,
            name: e.name.clone(),
            logical: format!("Etcd{}", e.index),
            dns_name: e.dns_name.clone(),
            subnet_logical: logical(&e.subnet),
            az: subnet_az(&logical(&e.subnet)),
        })
        .collect();
    let mut etcd_subnets: Vec<String> = Vec::new();
    for m in &members {
        if !etcd_subnets.contains(&m.subnet_logical) {
            etcd_subnets.push(m.subnet_logical.clone());
        }
    }
    let initial_cluster = members
        .iter()
        .map(|e| format!("{}=https://{}:2380", e.name, e.dns_name))
        .collect::<Vec<_>>()
        .join(",");
    let etcd_endpoints = members
        .iter()
        .map(|e| format!("https://{}:2379", e.dns_name))
        .collect::<Vec<_>>()
        .join(",");
    let vpc_cidr = c
        .vpc
        .cidr
        .unwrap_or_else(crate::config::defaults::vpc_cidr)
        .to_string();
    let endpoints: Vec<EndpointCtx> = c
        .api_endpoints
        .iter()
        .map(|e| {
            let internal = e.load_balancer.scheme == LoadBalancerScheme::Internal;
            EndpointCtx {
                name: e.name.clone(),
                logical: logical(&e.name),
                dns_name: e.dns_name.clone(),
                internal,
                record_set_managed: e.load_balancer.record_set_managed,
                subnets: subnet_names(&e.load_balancer.subnets, c, internal),
            }
        })
        .collect();
    let controller_subnets = subnet_names(&c.controller.subnets, c, true);
    let mut all_subnets = controller_subnets.clone();
    for e in &endpoints {
        for s in &e.subnets {
            if !all_subnets.contains(s) {
                all_subnets.push(s.clone());
            }
        }
    }
    let api_host = endpoints
        .iter()
        .find(|e| e.internal)
        .or(endpoints.first())
        .map(|e| e.dns_name.clone())
        .unwrap_or_default();
    let mut pools = Vec::new();
    let mut prev: Option<String> = None;
    for p in &c.worker.node_pools {
        let ctx = pool_ctx(c, p, prev.as_deref());
        prev = Some(ctx.stack_logical.clone());
        pools.push(ctx);
    }
    let base_url = build_base_url(&m.s3_bucket, &m.region, &m.s3_prefix);
    let dns_ip = c
        .service_cidr
        .hosts()
        .nth(9)
        .unwrap_or(m.kubernetes_service_ip);
    let version = c.kubernetes_version.trim_start_matches('v').to_string();
    let minor = version
        .rsplit_once('.')
        .map(|(mm, _)| mm.to_string())
        .unwrap_or_else(|| version.clone());
    Ctx {
        cluster: ClusterCtx {
            name: m.cluster_name.clone(),
            region: m.region.clone(),
            domain: m.cluster_domain.clone(),
            service_cidr: c.service_cidr.to_string(),
            pod_cidr: c.pod_cidr.to_string(),
            kubernetes_service_ip: m.kubernetes_service_ip.to_string(),
            dns_service_ip: dns_ip.to_string(),
            api_url: format!("https://{api_host}:{API_PORT}"),
            api_host,
            api_port: API_PORT,
            key_name: c.key_name.clone(),
            kms_key_arn: c.kms_key_arn.clone(),
            hosted_zone_id: c.hosted_zone_id.clone(),
            etcd_endpoints,
        },
        s3: S3Ctx {
            bucket: m.s3_bucket.clone(),
            prefix: m.s3_prefix.clone(),
            base_url,
            // For Fn::Sub: the partition is the stack's, so GovCloud and China work.
            arn_prefix: format!(
                "arn:${{AWS::Partition}}:s3:::{}/{}",
                m.s3_bucket, m.s3_prefix
            ),
            bucket_arn: format!("arn:${{AWS::Partition}}:s3:::{}", m.s3_bucket),
        },
        network: NetworkCtx {
            new_vpc: c.vpc.id.is_none(),
            vpc_id: c.vpc.id.clone(),
            vpc_cidr: vpc_cidr.clone(),
            api_allowed_cidrs: {
                let mut v: Vec<String> = Vec::new();
                for e in &c.api_endpoints {
                    let lb = &e.load_balancer;
                    let these: Vec<String> = if !lb.api_access_allowed_source_cidrs.is_empty() {
                        lb.api_access_allowed_source_cidrs
                            .iter()
                            .map(|n| n.to_string())
                            .collect()
                    } else if lb.scheme == LoadBalancerScheme::Internal {
                        vec![vpc_cidr.clone()]
                    } else {
                        vec!["0.0.0.0/0".to_string()]
                    };
                    for t in these {
                        if !v.contains(&t) {
                            v.push(t);
                        }
                    }
                }
                v
            },
            subnets,
            nats,
        },
        etcd: EtcdCtx {
            zone: m.etcd_zone.clone(),
            instance_type: c.etcd.instance_type.clone(),
            volume_size: c.etcd.data_volume.size,
            volume_type: c.etcd.data_volume.volume_type.clone(),
            volume_iops: c.etcd.data_volume.iops,
            snapshot_enabled: c.etcd.snapshot.enabled,
            snapshot_schedule: c.etcd.snapshot.schedule.clone(),
            snapshot_retention_days: c.etcd.snapshot.retention_days,
            members,
            subnets: etcd_subnets,
            initial_cluster,
        },
        controller: ControllerCtx {
            count: c.controller.count,
            instance_type: c.controller.instance_type.clone(),
            subnets: controller_subnets,
            all_subnets,
            root_volume_size: c.controller.root_volume.size,
            root_volume_type: c.controller.root_volume.volume_type.clone(),
        },
        endpoints,
        pools,
        versions: VersionsCtx {
            kubernetes: version,
            kubernetes_minor: minor,
            etcd_image: ETCD_IMAGE.to_string(),
            etcd_host_kubelet_minor: ETCD_HOST_KUBELET_MINOR.to_string(),
        },
        ami: AmiCtx {
            id: c.ami_id.clone().or_else(|| m.ami_pin.clone()),
            ssm_parameter: UBUNTU_AMI_PARAMETER.to_string(),
        },
        addons: addons_ctx(c),
        assets: AssetsCtx::default(),
        credentials: CredentialsCtx::default(),
        pool: None,
    }
}

fn addons_ctx(c: &Config) -> AddonsCtx {
    let b = &c.addons.aws_service_broker;
    let (table, role_name) = crate::model::names::broker_names(&c.cluster_name, &b.broker_id);
    // The built-in catalog always parses (a unit test proves it).
    let cat = if b.enabled {
        crate::broker_catalog::Catalog::load(None).unwrap_or_default()
    } else {
        Default::default()
    };
    let policy = crate::broker_catalog::broker_policy(
        &cat,
        &b.services,
        &b.broker_id,
        &serde_json::json!({"Ref": "BindingBoundary"}),
    );
    let mut boundary = crate::broker_catalog::bind_boundary(&cat, &b.services, &b.broker_id);
    if boundary.is_empty() {
        // A policy needs a statement: with no binding users possible, the boundary
        // allows nothing.
        boundary.push(serde_json::json!({"Effect": "Deny", "Action": "*", "Resource": "*"}));
    }
    AddonsCtx {
        enabled: c.addons.service_catalog.enabled || b.enabled,
        parameter: crate::addons::pointer_parameter(&c.cluster_name),
        bundle: String::new(),
        catalog: c.addons.service_catalog.enabled,
        broker: b.enabled,
        broker_id: b.broker_id.clone(),
        namespace: b.namespace.clone(),
        table,
        role_name,
        broker_policies: chunk_statements(&policy, MANAGED_POLICY_BUDGET),
        boundary_name: crate::model::names::boundary_name(&c.cluster_name, &b.broker_id),
        broker_emr: b.enabled && b.services.iter().any(|s| s == "emr"),
        bind_boundary: serde_json::to_string(&boundary).unwrap_or_else(|_| "[]".into()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn shares_add_up() {
        for total in 0..10 {
            for n in 1..5 {
                assert_eq!(
                    (0..n).map(|i| super::share(total, n, i)).sum::<u32>(),
                    total
                );
            }
        }
    }

    #[test]
    fn logical_ids() {
        assert_eq!(super::logical("private-a"), "PrivateA");
        assert_eq!(super::logical("us-west-2-lax-1a"), "UsWest2Lax1a");
    }
}
