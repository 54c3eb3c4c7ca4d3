//! Semantic checks of a parsed cluster.yaml. Every check runs, so one run reports all
//! problems. Each diagnostic carries the field path; the loader adds line:column.

use super::defaults::SUPPORTED_KUBERNETES_MINORS;
use super::diagnostic::Diagnostic;
use super::types::*;
use ipnet::Ipv4Net;
use regex::Regex;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::LazyLock;

/// Services the broker add-on can offer: the built-in catalog (a test keeps them equal).
pub const BROKER_SERVICES: &[&str] = &[
    "athena",
    "dynamodb",
    "elasticache",
    "emr",
    "kinesis",
    "kms",
    "lex",
    "polly",
    "rdsmariadb",
    "rdsmysql",
    "rdspostgresql",
    "redshift",
    "rekognition",
    "route53",
    "s3",
    "sns",
    "sqs",
    "translate",
];

fn re(s: &str) -> Regex {
    // The patterns below are literals, checked by the unit tests.
    Regex::new(s).unwrap_or_else(|e| panic!("bad built-in regex {s}: {e}"))
}

static DNS_LABEL: LazyLock<Regex> = LazyLock::new(|| re(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"));
static CLUSTER_NAME: LazyLock<Regex> = LazyLock::new(|| re(r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$"));
static FQDN: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
});
static REGION: LazyLock<Regex> = LazyLock::new(|| re(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d+$"));
static KMS_ARN: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^arn:aws(-cn|-us-gov)?:kms:([a-z0-9-]+):(\d{12}):(key/[A-Za-z0-9-]+|alias/[A-Za-z0-9/_-]+)$",
    )
});
static ROLE_ARN: LazyLock<Regex> =
    LazyLock::new(|| re(r"^arn:aws(-cn|-us-gov)?:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$"));
static S3_BUCKET: LazyLock<Regex> = LazyLock::new(|| re(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"));
static S3_PREFIX: LazyLock<Regex> = LazyLock::new(|| re(r"^[A-Za-z0-9!_.*'()/-]+$"));
static HOSTED_ZONE: LazyLock<Regex> = LazyLock::new(|| re(r"^Z[A-Z0-9]{1,31}$"));

static VPC_ID: LazyLock<Regex> = LazyLock::new(|| re(r"^vpc-([0-9a-f]{8}|[0-9a-f]{17})$"));
static SUBNET_ID: LazyLock<Regex> = LazyLock::new(|| re(r"^subnet-([0-9a-f]{8}|[0-9a-f]{17})$"));
static INSTANCE_TYPE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[a-z][a-z0-9-]*\.[a-z0-9]+(-[a-z0-9]+)?$"));
static K8S_VERSION: LazyLock<Regex> = LazyLock::new(|| re(r"^v?(\d+)\.(\d+)\.(\d+)$"));
static LABEL_NAME: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"));
static DNS_SUBDOMAIN: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"));
static PAUSE_TIME: LazyLock<Regex> = LazyLock::new(|| re(r"^PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?$"));

#[derive(Default)]
struct Checker {
    diags: Vec<Diagnostic>,
}

impl Checker {
    fn err(&mut self, path: impl Into<String>, msg: impl Into<String>, fix: impl Into<String>) {
        self.diags.push(Diagnostic::new(path, msg).fix(fix));
    }

    fn dns_label(&mut self, path: &str, value: &str, what: &str) {
        if !DNS_LABEL.is_match(value) {
            self.err(
                path,
                format!("{what} `{value}` is not DNS-safe"),
                "use lowercase letters, digits and hyphens (at most 63), starting and ending with a letter or digit",
            );
        }
    }

    fn unique<'a>(&mut self, path: &str, names: impl Iterator<Item = &'a str>, field: &str) {
        let mut seen = HashSet::new();
        for (i, n) in names.enumerate() {
            if !seen.insert(n) {
                self.err(
                    format!("{path}[{i}].{field}"),
                    format!("duplicate {field} `{n}`"),
                    format!("give every entry of `{path}` its own {field}"),
                );
            }
        }
    }

    fn instance_type(&mut self, path: &str, value: &str) {
        if !INSTANCE_TYPE.is_match(value) {
            self.err(
                path,
                format!("`{value}` is not an EC2 instance type"),
                "use a type such as t3.large or m6i.xlarge",
            );
        }
    }

    fn subnet_refs(&mut self, path: &str, refs: &[String], subnets: &HashMap<&str, &Subnet>) {
        for (i, r) in refs.iter().enumerate() {
            if !subnets.contains_key(r.as_str()) {
                let mut names: Vec<&str> = subnets.keys().copied().collect();
                names.sort();
                self.err(
                    format!("{path}[{i}]"),
                    format!("no subnet is named `{r}`"),
                    format!("use one of the names under `subnets`: {}", names.join(", ")),
                );
            }
        }
    }

    fn cidr_exact(&mut self, path: &str, net: &Ipv4Net) {
        if net.trunc() != *net {
            self.err(
                path,
                format!("`{net}` has host bits set"),
                format!("did you mean `{}`?", net.trunc()),
            );
        }
    }
}

/// Runs every check and returns all problems found, in no particular order.
pub fn validate(c: &Config) -> Vec<Diagnostic> {
    let mut k = Checker::default();
    top_level(&mut k, c);
    let subnets = network(&mut k, c);
    endpoints(&mut k, c, &subnets);
    etcd(&mut k, &c.etcd, &subnets);
    controller(&mut k, &c.controller, &subnets);
    pools(&mut k, &c.worker.node_pools, &subnets);
    tls(&mut k, &c.tls);
    tags(&mut k, &c.stack_tags);
    addons(&mut k, &c.addons);
    k.diags
}

fn top_level(k: &mut Checker, c: &Config) {
    if !CLUSTER_NAME.is_match(&c.cluster_name) {
        k.err(
            "clusterName",
            format!("`{}` is not a valid cluster name", c.cluster_name),
            "use at most 32 lowercase letters, digits and hyphens, starting with a letter",
        );
    }
    s3_uri(k, &c.s3_uri);
    if !REGION.is_match(&c.region) {
        k.err(
            "region",
            format!("`{}` is not an AWS region name", c.region),
            "use a region such as us-west-2 or eu-central-1",
        );
    }
    if let Some(key) = &c.key_name
        && (key.is_empty() || key.len() > 255)
    {
        k.err(
            "keyName",
            "an EC2 key pair name has 1 to 255 characters",
            "give the key pair's name, or remove keyName",
        );
    }
    match KMS_ARN.captures(&c.kms_key_arn) {
        None => k.err(
            "kmsKeyArn",
            format!("`{}` is not a KMS key ARN", c.kms_key_arn),
            "use arn:aws:kms:<region>:<account>:key/<key-id>",
        ),
        Some(m) if m.get(2).map(|r| r.as_str()) != Some(c.region.as_str()) => k.err(
            "kmsKeyArn",
            format!(
                "the KMS key is in `{}`, the cluster in `{}`",
                m.get(2).map(|r| r.as_str()).unwrap_or_default(),
                c.region
            ),
            "KMS keys are regional: use a key in the cluster's region",
        ),
        Some(_) => {}
    }
    if let Some(z) = &c.hosted_zone_id
        && !HOSTED_ZONE.is_match(z)
    {
        k.err(
            "hostedZoneId",
            format!("`{z}` is not a Route53 hosted zone ID"),
            "use the zone's ID, such as Z1D633PJN98FT9 (without /hostedzone/)",
        );
    }
    if let Some(ami) = &c.ami_id
        && !super::ami::is_ami_id(ami)
    {
        k.err(
            "amiId",
            format!("`{ami}` is not an AMI ID"),
            "use ami- followed by 8 or 17 hex digits, or remove amiId to use the current Ubuntu LTS",
        );
    }
    let supported = SUPPORTED_KUBERNETES_MINORS.join(", ");
    match K8S_VERSION.captures(&c.kubernetes_version) {
        None => k.err(
            "kubernetesVersion",
            format!("`{}` is not a version", c.kubernetes_version),
            "write MAJOR.MINOR.PATCH, such as 1.34.2",
        ),
        Some(m) => {
            let minor = format!("{}.{}", &m[1], &m[2]);
            if !SUPPORTED_KUBERNETES_MINORS.contains(&minor.as_str()) {
                k.err(
                    "kubernetesVersion",
                    format!("Kubernetes {minor} is not supported"),
                    format!("use one of the supported minors: {supported}"),
                );
            }
        }
    }
    if !FQDN.is_match(&c.cluster_domain) && !DNS_LABEL.is_match(&c.cluster_domain) {
        k.err(
            "clusterDomain",
            format!("`{}` is not a DNS domain", c.cluster_domain),
            "use a domain such as cluster.local",
        );
    }
    if let Some(arn) = &c.cloudformation.role_arn
        && !ROLE_ARN.is_match(arn)
    {
        k.err(
            "cloudformation.roleARN",
            format!("`{arn}` is not an IAM role ARN"),
            "use arn:aws:iam::<account>:role/<name>",
        );
    }
}

fn s3_uri(k: &mut Checker, uri: &str) {
    let fix = "use s3://<bucket>[/<prefix>], e.g. s3://my-bucket/clusters";
    let Some(rest) = uri.strip_prefix("s3://") else {
        k.err("s3URI", format!("`{uri}` does not start with s3://"), fix);
        return;
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if !S3_BUCKET.is_match(bucket) || bucket.contains("..") {
        k.err(
            "s3URI",
            format!("`{bucket}` is not a valid S3 bucket name"),
            "bucket names have 3 to 63 lowercase letters, digits, dots and hyphens",
        );
    }
    let prefix = prefix.trim_end_matches('/');
    if !prefix.is_empty() && (!S3_PREFIX.is_match(prefix) || prefix.contains("//")) {
        k.err(
            "s3URI",
            format!("`{prefix}` is not a safe S3 key prefix"),
            fix,
        );
    }
}

fn network<'a>(k: &mut Checker, c: &'a Config) -> HashMap<&'a str, &'a Subnet> {
    let existing_vpc = c.vpc.id.is_some();
    if let Some(id) = &c.vpc.id
        && !VPC_ID.is_match(id)
    {
        k.err(
            "vpc.id",
            format!("`{id}` is not a VPC ID"),
            "use vpc- followed by 8 or 17 hex digits",
        );
    }
    let vpc_cidr = if existing_vpc {
        c.vpc.cidr
    } else {
        Some(c.vpc.cidr.unwrap_or_else(super::defaults::vpc_cidr))
    };
    if let Some(v) = c.vpc.cidr {
        k.cidr_exact("vpc.cidr", &v);
        if !(16..=28).contains(&v.prefix_len()) {
            k.err(
                "vpc.cidr",
                format!("a VPC range must be /16 to /28, not /{}", v.prefix_len()),
                "use a range such as 10.0.0.0/16",
            );
        }
    }

    // Service and pod ranges.
    k.cidr_exact("serviceCIDR", &c.service_cidr);
    k.cidr_exact("podCIDR", &c.pod_cidr);
    if c.service_cidr.prefix_len() < 12 {
        k.err(
            "serviceCIDR",
            "the service range can be at most /12",
            "use a smaller range such as 10.3.0.0/24",
        );
    }
    if overlaps(&c.service_cidr, &c.pod_cidr) {
        k.err(
            "podCIDR",
            format!("`{}` overlaps serviceCIDR `{}`", c.pod_cidr, c.service_cidr),
            "give pods and services disjoint ranges",
        );
    }
    if let Some(v) = vpc_cidr {
        for (path, net) in [("serviceCIDR", c.service_cidr), ("podCIDR", c.pod_cidr)] {
            if overlaps(&net, &v) {
                k.err(
                    path,
                    format!("`{net}` overlaps the VPC range `{v}`"),
                    "choose a range outside the VPC",
                );
            }
        }
    }

    if c.subnets.is_empty() {
        k.err(
            "subnets",
            "at least one subnet is required",
            "add a subnet with name, availabilityZone and cidr",
        );
    }
    k.unique("subnets", c.subnets.iter().map(|s| s.name.as_str()), "name");
    let mut nat_azs = HashSet::new();
    for (i, s) in c.subnets.iter().enumerate() {
        let p = format!("subnets[{i}]");
        k.dns_label(&format!("{p}.name"), &s.name, "subnet name");
        az_in_region(
            k,
            &format!("{p}.availabilityZone"),
            &s.availability_zone,
            &c.region,
        );
        if s.nat_gateway {
            if s.private {
                k.err(
                    format!("{p}.natGateway"),
                    "a NAT gateway must sit in a public subnet",
                    "move natGateway: true to a public subnet of the same zone",
                );
            } else {
                nat_azs.insert(s.availability_zone.as_str());
            }
        }
        if existing_vpc {
            match &s.id {
                None => k.err(
                    format!("{p}.id"),
                    "with an existing VPC (vpc.id), every subnet needs its id",
                    "add id: subnet-… for this subnet",
                ),
                Some(id) if !SUBNET_ID.is_match(id) => k.err(
                    format!("{p}.id"),
                    format!("`{id}` is not a subnet ID"),
                    "use subnet- followed by 8 or 17 hex digits",
                ),
                Some(_) => {}
            }
            if s.nat_gateway {
                k.err(
                    format!("{p}.natGateway"),
                    "kube-aws creates no NAT gateway in an existing VPC",
                    "remove natGateway; route the existing subnets yourself",
                );
            }
        } else {
            if s.id.is_some() {
                k.err(
                    format!("{p}.id"),
                    "a subnet id needs an existing VPC",
                    "set vpc.id to the subnet's VPC, or remove id to create the subnet",
                );
            }
            if s.cidr.is_none() {
                k.err(
                    format!("{p}.cidr"),
                    "a new subnet needs a cidr",
                    "add a cidr inside vpc.cidr, such as 10.0.1.0/24",
                );
            }
        }
        if let Some(net) = s.cidr {
            let cp = format!("{p}.cidr");
            k.cidr_exact(&cp, &net);
            if !(16..=28).contains(&net.prefix_len()) {
                k.err(
                    &cp,
                    format!(
                        "a subnet range must be /16 to /28, not /{}",
                        net.prefix_len()
                    ),
                    "use a range such as 10.0.1.0/24",
                );
            }
            if let Some(v) = vpc_cidr
                && !v.contains(&net)
            {
                k.err(
                    &cp,
                    format!("`{net}` is not inside the VPC range `{v}`"),
                    format!("choose a range inside {v}"),
                );
            }
            for (j, other) in c.subnets.iter().enumerate().take(i) {
                if let Some(o) = other.cidr
                    && overlaps(&net, &o)
                {
                    k.err(
                        &cp,
                        format!("`{net}` overlaps subnets[{j}] `{}` ({o})", other.name),
                        "give every subnet its own range",
                    );
                }
            }
            for (name, r) in [("serviceCIDR", c.service_cidr), ("podCIDR", c.pod_cidr)] {
                if overlaps(&net, &r) {
                    k.err(
                        &cp,
                        format!("`{net}` overlaps {name} `{r}`"),
                        format!("move the subnet or {name}"),
                    );
                }
            }
        }
    }
    if !existing_vpc {
        for (i, s) in c.subnets.iter().enumerate() {
            if s.private && !nat_azs.contains(s.availability_zone.as_str()) {
                k.err(
                    format!("subnets[{i}].private"),
                    format!("private subnet `{}` has no way out: no public subnet in {} has natGateway: true", s.name, s.availability_zone),
                    format!("add natGateway: true to a public subnet in {}", s.availability_zone),
                );
            }
        }
    }
    c.subnets.iter().map(|s| (s.name.as_str(), s)).collect()
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn az_in_region(k: &mut Checker, path: &str, az: &str, region: &str) {
    let in_region = az.strip_prefix(region).is_some_and(|rest| {
        (rest.len() == 1 && rest.chars().all(|ch| ch.is_ascii_lowercase()))
            || (rest.starts_with('-')
                && rest.len() > 2
                && rest
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-'))
    });
    if !in_region {
        k.err(
            path,
            format!("availability zone `{az}` is not in region `{region}`"),
            format!("use a zone of {region}, such as {region}a"),
        );
    }
}

fn endpoints(k: &mut Checker, c: &Config, subnets: &HashMap<&str, &Subnet>) {
    if c.api_endpoints.is_empty() {
        k.err(
            "apiEndpoints",
            "at least one API endpoint is required",
            "add an endpoint with name and dnsName",
        );
    }
    k.unique(
        "apiEndpoints",
        c.api_endpoints.iter().map(|e| e.name.as_str()),
        "name",
    );
    k.unique(
        "apiEndpoints",
        c.api_endpoints.iter().map(|e| e.dns_name.as_str()),
        "dnsName",
    );
    for (i, e) in c.api_endpoints.iter().enumerate() {
        let p = format!("apiEndpoints[{i}]");
        k.dns_label(&format!("{p}.name"), &e.name, "endpoint name");
        if !FQDN.is_match(&e.dns_name) {
            k.err(
                format!("{p}.dnsName"),
                format!("`{}` is not a fully qualified DNS name", e.dns_name),
                "use a name such as k8s.example.com",
            );
        }
        let lb = &e.load_balancer;
        if lb.record_set_managed && c.hosted_zone_id.is_none() {
            k.err(
                format!("{p}.loadBalancer.recordSetManaged"),
                "a managed record set needs hostedZoneId",
                "set hostedZoneId, or recordSetManaged: false and create the DNS record yourself",
            );
        }
        if lb.scheme == LoadBalancerScheme::Internal
            && lb.api_access_allowed_source_cidrs.is_empty()
            && c.vpc.id.is_some()
            && c.vpc.cidr.is_none()
        {
            k.err(
                format!("{p}.loadBalancer.apiAccessAllowedSourceCIDRs"),
                "an internal endpoint in an existing VPC is open to the VPC's CIDR by default, and vpc.cidr is not set",
                "set vpc.cidr to the VPC's CIDR, or list apiAccessAllowedSourceCIDRs",
            );
        }
        let lbp = format!("{p}.loadBalancer.subnets");
        k.subnet_refs(&lbp, &lb.subnets, subnets);
        let public = lb.scheme == LoadBalancerScheme::InternetFacing;
        if lb.subnets.is_empty() {
            if public && !subnets.values().any(|s| !s.private) {
                k.err(
                    format!("{p}.loadBalancer.scheme"),
                    "an internet-facing load balancer needs a public subnet",
                    "add a public subnet, or use scheme: internal",
                );
            }
        } else if public {
            for (j, r) in lb.subnets.iter().enumerate() {
                if subnets.get(r.as_str()).is_some_and(|s| s.private) {
                    k.err(format!("{lbp}[{j}]"), format!("subnet `{r}` is private; an internet-facing load balancer needs public subnets"), "list public subnets, or use scheme: internal");
                }
            }
        }
    }
}

fn etcd(k: &mut Checker, e: &Etcd, subnets: &HashMap<&str, &Subnet>) {
    if ![1, 3, 5].contains(&e.count) {
        k.err(
            "etcd.count",
            format!("{} etcd members cannot keep a useful quorum", e.count),
            "use 1, 3 or 5",
        );
    }
    k.instance_type("etcd.instanceType", &e.instance_type);
    k.subnet_refs("etcd.subnets", &e.subnets, subnets);
    let v = &e.data_volume;
    if !["gp2", "gp3", "io1", "io2"].contains(&v.volume_type.as_str()) {
        k.err(
            "etcd.dataVolume.type",
            format!(
                "`{}` is not a volume type etcd should run on",
                v.volume_type
            ),
            "use gp3, gp2, io1 or io2",
        );
    }
    if !(1..=16384).contains(&v.size) {
        k.err(
            "etcd.dataVolume.size",
            format!("{} GiB is outside 1..16384", v.size),
            "use a size such as 30",
        );
    }
    if v.iops.is_some() && v.volume_type == "gp2" {
        k.err(
            "etcd.dataVolume.iops",
            "gp2 volumes take no provisioned IOPS",
            "remove iops, or use gp3/io1/io2",
        );
    }
    let s = &e.snapshot;
    let sched = s.schedule.as_str();
    if !((sched.starts_with("cron(") || sched.starts_with("rate(")) && sched.ends_with(')')) {
        k.err(
            "etcd.snapshot.schedule",
            format!("`{sched}` is not a schedule expression"),
            "use cron(0/30 * * * ? *) or rate(1 hour)",
        );
    }
    if s.retention_days == 0 {
        k.err(
            "etcd.snapshot.retentionDays",
            "snapshots must be kept at least one day",
            "use 1 or more",
        );
    }
}

fn controller(k: &mut Checker, c: &Controller, subnets: &HashMap<&str, &Subnet>) {
    if !(1..=10).contains(&c.count) {
        k.err(
            "controller.count",
            format!("{} controllers is outside 1..10", c.count),
            "use 2 or 3 for high availability",
        );
    }
    k.instance_type("controller.instanceType", &c.instance_type);
    k.subnet_refs("controller.subnets", &c.subnets, subnets);
    root_volume(k, "controller.rootVolume", &c.root_volume);
}

fn root_volume(k: &mut Checker, path: &str, v: &RootVolume) {
    if !(8..=16384).contains(&v.size) {
        k.err(
            format!("{path}.size"),
            format!("{} GiB is outside 8..16384", v.size),
            "use a size such as 40",
        );
    }
    if !["gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"].contains(&v.volume_type.as_str()) {
        k.err(
            format!("{path}.type"),
            format!("`{}` is not an EBS volume type", v.volume_type),
            "use gp3",
        );
    }
}

fn pools(k: &mut Checker, pools: &[NodePool], subnets: &HashMap<&str, &Subnet>) {
    k.unique(
        "worker.nodePools",
        pools.iter().map(|p| p.name.as_str()),
        "name",
    );
    for (i, np) in pools.iter().enumerate() {
        let p = format!("worker.nodePools[{i}]");
        k.dns_label(&format!("{p}.name"), &np.name, "node pool name");
        match (&np.instance_type, &np.mixed_instances) {
            (Some(_), Some(_)) => k.err(
                format!("{p}.mixedInstances"),
                "give instanceType or mixedInstances, not both",
                "move the instance type into mixedInstances.instanceTypes",
            ),
            (Some(t), None) => k.instance_type(&format!("{p}.instanceType"), t),
            (None, Some(m)) => {
                let mp = format!("{p}.mixedInstances");
                if m.instance_types.is_empty() {
                    k.err(
                        format!("{mp}.instanceTypes"),
                        "at least one instance type is required",
                        "list types such as m6i.large, m5.large",
                    );
                }
                for (j, t) in m.instance_types.iter().enumerate() {
                    k.instance_type(&format!("{mp}.instanceTypes[{j}]"), t);
                }
                let mut seen = HashSet::new();
                for (j, t) in m.instance_types.iter().enumerate() {
                    if !seen.insert(t) {
                        k.err(
                            format!("{mp}.instanceTypes[{j}]"),
                            format!("duplicate instance type `{t}`"),
                            "list each type once",
                        );
                    }
                }
                if m.on_demand_percentage_above_base_capacity > 100 {
                    k.err(
                        format!("{mp}.onDemandPercentageAboveBaseCapacity"),
                        "a percentage is at most 100",
                        "use 0 (all spot) to 100 (all on-demand)",
                    );
                }
            }
            (None, None) => {}
        }
        k.subnet_refs(&format!("{p}.subnets"), &np.subnets, subnets);
        if np.max_size == 0 {
            k.err(
                format!("{p}.maxSize"),
                "maxSize must be at least 1",
                "remove the pool, or give it maxSize 1 or more",
            );
        }
        if np.min_size > np.desired_capacity {
            k.err(
                format!("{p}.minSize"),
                format!(
                    "minSize ({}) is greater than desiredCapacity ({})",
                    np.min_size, np.desired_capacity
                ),
                "make minSize ≤ desiredCapacity ≤ maxSize",
            );
        }
        if np.desired_capacity > np.max_size {
            k.err(
                format!("{p}.desiredCapacity"),
                format!(
                    "desiredCapacity ({}) is greater than maxSize ({})",
                    np.desired_capacity, np.max_size
                ),
                "make minSize ≤ desiredCapacity ≤ maxSize",
            );
        }
        let ru = &np.rolling_update;
        let rp = format!("{p}.rollingUpdate");
        if ru.min_instances_in_service >= np.max_size {
            k.err(format!("{rp}.minInstancesInService"), format!("minInstancesInService ({}) must be below maxSize ({}), or no instance could ever be replaced", ru.min_instances_in_service, np.max_size), "lower minInstancesInService or raise maxSize");
        }
        if ru.max_batch_size == 0 {
            k.err(
                format!("{rp}.maxBatchSize"),
                "maxBatchSize must be at least 1",
                "use 1 to replace one instance at a time",
            );
        }
        if !(30..=7200).contains(&ru.drain_timeout_seconds) {
            k.err(
                format!("{rp}.drainTimeoutSeconds"),
                format!(
                    "{} s is outside 30..7200 (the lifecycle hook's limits)",
                    ru.drain_timeout_seconds
                ),
                "use a value such as 300",
            );
        }
        match PAUSE_TIME.captures(&ru.pause_time) {
            Some(m) if ru.pause_time != "PT" => {
                let n = |i: usize| {
                    m.get(i)
                        .and_then(|x| x.as_str().parse::<u64>().ok())
                        .unwrap_or(0)
                };
                if n(1) * 3600 + n(2) * 60 + n(3) > 3600 {
                    k.err(
                        format!("{rp}.pauseTime"),
                        "CloudFormation allows a PauseTime of at most one hour",
                        "use PT1H or less",
                    );
                }
            }
            _ => k.err(
                format!("{rp}.pauseTime"),
                format!("`{}` is not an ISO 8601 duration", ru.pause_time),
                "use a duration such as PT15M",
            ),
        }
        for (key, value) in &np.labels {
            let lp = format!("{p}.labels.{key}");
            label_key(k, &lp, key);
            if !value.is_empty() && !LABEL_NAME.is_match(value) {
                k.err(&lp, format!("label value `{value}` is not valid"), "use at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit");
            }
        }
        for (j, t) in np.taints.iter().enumerate() {
            let tp = format!("{p}.taints[{j}]");
            label_key(k, &format!("{tp}.key"), &t.key);
            if !t.value.is_empty() && !LABEL_NAME.is_match(&t.value) {
                k.err(
                    format!("{tp}.value"),
                    format!("taint value `{}` is not valid", t.value),
                    "use at most 63 letters, digits, '-', '_' or '.'",
                );
            }
        }
        root_volume(k, &format!("{p}.rootVolume"), &np.root_volume);
    }
}

fn label_key(k: &mut Checker, path: &str, key: &str) {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let fix = "use [prefix/]name: a DNS-subdomain prefix and a name of at most 63 letters, digits, '-', '_' or '.'";
    if !LABEL_NAME.is_match(name)
        || prefix.is_some_and(|p| p.len() > 253 || !DNS_SUBDOMAIN.is_match(p))
    {
        k.err(path, format!("`{key}` is not a valid label key"), fix);
        return;
    }
    // The NodeRestriction admission plugin stops kubelet from setting these itself.
    if let Some(p) = prefix {
        let reserved = p == "kubernetes.io"
            || p.ends_with(".kubernetes.io")
            || p == "k8s.io"
            || p.ends_with(".k8s.io");
        let allowed = ["kubelet.kubernetes.io", "node.kubernetes.io"].contains(&p);
        if reserved && !allowed && path.contains(".labels.") {
            k.err(path, format!("kubelet may not set labels under `{p}/`"), "use your own prefix, such as example.com/role; only kubelet.kubernetes.io/ and node.kubernetes.io/ are allowed");
        }
    }
}

fn tls(k: &mut Checker, t: &Tls) {
    if t.cert_duration_days == 0 {
        k.err(
            "tls.certDurationDays",
            "certificates must be valid at least one day",
            "use a value such as 365",
        );
    }
    if t.ca_duration_days > 36500 {
        k.err(
            "tls.caDurationDays",
            "a CA valid for more than 100 years is not accepted",
            "use a value such as 3650",
        );
    }
    if t.cert_duration_days > t.ca_duration_days {
        k.err(
            "tls.certDurationDays",
            format!(
                "certificates ({} days) would outlive their CA ({} days)",
                t.cert_duration_days, t.ca_duration_days
            ),
            "make certDurationDays ≤ caDurationDays",
        );
    }
}

fn tags(k: &mut Checker, tags: &BTreeMap<String, String>) {
    if tags.len() > 50 {
        k.err(
            "stackTags",
            format!("{} tags; CloudFormation takes at most 50", tags.len()),
            "remove some tags",
        );
    }
    for (key, value) in tags {
        let p = format!("stackTags.{key}");
        if key.to_ascii_lowercase().starts_with("aws:") {
            k.err(
                &p,
                "tag keys starting with aws: are reserved",
                "use another key",
            );
        }
        if key.is_empty() || key.chars().count() > 127 || value.chars().count() > 255 {
            k.err(
                &p,
                "tag keys have 1 to 127 characters and values at most 255",
                "shorten the tag",
            );
        }
    }
}

fn addons(k: &mut Checker, a: &Addons) {
    let b = &a.aws_service_broker;
    if b.enabled && !a.service_catalog.enabled {
        k.err(
            "addons.awsServiceBroker.enabled",
            "the AWS service broker needs the Service Catalog",
            "set addons.serviceCatalog.enabled: true",
        );
    }
    if !b.broker_id.is_empty() && b.broker_id.len() <= 20 {
        k.dns_label(
            "addons.awsServiceBroker.brokerId",
            &b.broker_id,
            "broker id",
        );
    } else {
        k.err(
            "addons.awsServiceBroker.brokerId",
            "the broker id has 1 to 20 characters",
            "use a short id such as awsbroker",
        );
    }
    k.dns_label(
        "addons.awsServiceBroker.namespace",
        &b.namespace,
        "namespace",
    );
    if b.enabled && b.services.is_empty() {
        k.err(
            "addons.awsServiceBroker.services",
            "the broker offers no service",
            "list services such as s3, sqs",
        );
    }
    let known: Vec<String> = BROKER_SERVICES.iter().map(|s| s.to_string()).collect();
    let mut seen = HashSet::new();
    for (i, s) in b.services.iter().enumerate() {
        let p = format!("addons.awsServiceBroker.services[{i}]");
        if !BROKER_SERVICES.contains(&s.as_str()) {
            let fix = match super::load::did_you_mean(s, &known) {
                Some(best) => format!("did you mean `{best}`?"),
                None => format!("use one of: {}", BROKER_SERVICES.join(", ")),
            };
            k.err(&p, format!("unknown service `{s}`"), fix);
        }
        if !seen.insert(s) {
            k.err(
                &p,
                format!("service `{s}` is listed twice"),
                "list each service once",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_compile_and_match() {
        assert!(CLUSTER_NAME.is_match("prod-1"));
        assert!(!CLUSTER_NAME.is_match("1prod"));
        assert!(KMS_ARN.is_match("arn:aws:kms:us-west-2:123456789012:key/abcd-1234"));
        assert!(ROLE_ARN.is_match("arn:aws:iam::123456789012:role/cfn"));
        assert!(FQDN.is_match("k8s.example.com"));
        assert!(REGION.is_match("us-gov-west-1"));
        assert!(INSTANCE_TYPE.is_match("m6i.xlarge"));
        assert!(INSTANCE_TYPE.is_match("u-6tb1.metal"));
        assert!(PAUSE_TIME.is_match("PT1H30M"));
        assert!(LABEL_NAME.is_match("a.b-c_d"));
        assert!(DNS_SUBDOMAIN.is_match("example.com"));
        assert!(S3_BUCKET.is_match("my.bucket-1"));
        assert!(S3_PREFIX.is_match("a/b-c"));
        assert!(HOSTED_ZONE.is_match("Z1D633PJN98FT9"));
        assert!(super::super::ami::is_ami_id("ami-0123456789abcdef0"));
        assert!(VPC_ID.is_match("vpc-0123abcd"));
        assert!(SUBNET_ID.is_match("subnet-0123abcd"));
        assert!(K8S_VERSION.is_match("v1.34.2"));
        assert!(DNS_LABEL.is_match("a"));
    }

    #[test]
    fn zones_must_belong_to_the_region() {
        let mut k = Checker::default();
        az_in_region(&mut k, "x", "us-west-2a", "us-west-2");
        az_in_region(&mut k, "x", "us-west-2-lax-1a", "us-west-2");
        assert!(k.diags.is_empty());
        az_in_region(&mut k, "x", "us-east-1a", "us-west-2");
        az_in_region(&mut k, "x", "us-west-2", "us-west-2");
        az_in_region(&mut k, "x", "us-west-22a", "us-west-2");
        assert_eq!(k.diags.len(), 3);
    }
}
