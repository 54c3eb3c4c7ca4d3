//! Classification of changes: which property changes replace a resource, which groups
//! of instances roll and how, and in which order the stacks roll.

use super::{Action, NestedRef, Replacement, ResourceChange, Roll, UserdataPlan, role_of_stack};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Properties whose change makes CloudFormation replace the resource ("Update requires:
/// Replacement" in the resource reference), for the types kube-aws templates use.
const REPLACING: &[(&str, &[&str])] = &[
    ("AWS::EC2::VPC", &["CidrBlock", "Ipv4IpamPoolId"]),
    (
        "AWS::EC2::Subnet",
        &[
            "AvailabilityZone",
            "AvailabilityZoneId",
            "CidrBlock",
            "VpcId",
        ],
    ),
    (
        "AWS::EC2::SecurityGroup",
        &["GroupDescription", "GroupName", "VpcId"],
    ),
    (
        "AWS::EC2::SecurityGroupIngress",
        &[
            "GroupId",
            "IpProtocol",
            "FromPort",
            "ToPort",
            "CidrIp",
            "SourceSecurityGroupId",
        ],
    ),
    ("AWS::EC2::Route", &["DestinationCidrBlock", "RouteTableId"]),
    ("AWS::EC2::RouteTable", &["VpcId"]),
    ("AWS::EC2::SubnetRouteTableAssociation", &["SubnetId"]),
    (
        "AWS::EC2::NatGateway",
        &["AllocationId", "SubnetId", "ConnectivityType"],
    ),
    ("AWS::EC2::EIP", &["Domain"]),
    ("AWS::EC2::LaunchTemplate", &["LaunchTemplateName"]),
    (
        "AWS::EC2::Instance",
        &[
            "LaunchTemplate",
            "ImageId",
            "AvailabilityZone",
            "SubnetId",
            "NetworkInterfaces",
            "KeyName",
            "PrivateIpAddress",
        ],
    ),
    (
        "AWS::EC2::Volume",
        &["AvailabilityZone", "SnapshotId", "Encrypted", "KmsKeyId"],
    ),
    (
        "AWS::EC2::NetworkInterface",
        &["SubnetId", "PrivateIpAddress"],
    ),
    (
        "AWS::AutoScaling::AutoScalingGroup",
        &["AutoScalingGroupName"],
    ),
    (
        "AWS::AutoScaling::LifecycleHook",
        &["AutoScalingGroupName", "LifecycleHookName"],
    ),
    ("AWS::IAM::Role", &["RoleName", "Path"]),
    // The add-ons stack (create-only properties from the CloudFormation resource schemas).
    ("AWS::IAM::Policy", &[]),
    ("AWS::SSM::Parameter", &["Name"]),
    (
        "AWS::DynamoDB::Table",
        &["TableName", "ImportSourceSpecification"],
    ),
    (
        "AWS::IAM::InstanceProfile",
        &["InstanceProfileName", "Path"],
    ),
    (
        "AWS::ElasticLoadBalancingV2::LoadBalancer",
        &["Name", "Scheme", "Type"],
    ),
    (
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        &["Name", "Port", "Protocol", "VpcId", "TargetType"],
    ),
    ("AWS::ElasticLoadBalancingV2::Listener", &[]),
    (
        "AWS::Route53::RecordSet",
        &["Name", "HostedZoneId", "HostedZoneName", "SetIdentifier"],
    ),
    ("AWS::Route53::HostedZone", &["Name"]),
    ("AWS::Events::Rule", &["Name"]),
    ("AWS::CloudFormation::Stack", &[]),
    ("AWS::EC2::InternetGateway", &[]),
    ("AWS::EC2::VPCGatewayAttachment", &[]),
];

/// Properties of an auto scaling group whose change starts its UpdatePolicy: a rolling
/// update, or with `WillReplace` a replacement of the whole group.
pub const ROLLING_TRIGGERS: &[&str] = &[
    "Properties.LaunchTemplate",
    "Properties.MixedInstancesPolicy",
    "Properties.VPCZoneIdentifier",
    "Properties.LaunchConfigurationName",
    "Properties.PlacementGroup",
];

/// The replacement verdict for a modified resource of `ty` whose `changed` paths differ.
pub fn replacement(ty: &str, changed: &[String], new: &Value) -> Replacement {
    let Some((_, props)) = REPLACING.iter().find(|(t, _)| *t == ty) else {
        return Replacement::Conditional;
    };
    let hits = changed.iter().any(|c| {
        c.strip_prefix("Properties.")
            .is_some_and(|p| props.contains(&p))
    });
    let will_replace = ty == "AWS::AutoScaling::AutoScalingGroup"
        && new
            .pointer("/UpdatePolicy/AutoScalingReplacingUpdate/WillReplace")
            .and_then(Value::as_bool)
            == Some(true)
        && changed
            .iter()
            .any(|c| ROLLING_TRIGGERS.contains(&c.as_str()));
    if hits || will_replace {
        Replacement::True
    } else {
        Replacement::False
    }
}

fn resource<'a>(t: &'a Value, id: &str) -> Option<&'a Value> {
    t.get("Resources")?.get(id)
}

/// Logical ids a value refers to with `Ref` or `Fn::GetAtt`.
pub fn refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("Ref", Value::String(s)) => {
                        out.insert(s.clone());
                    }
                    ("Fn::GetAtt", Value::Array(a)) => {
                        if let Some(s) = a.first().and_then(Value::as_str) {
                            out.insert(s.to_string());
                        }
                    }
                    _ => refs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

/// DependsOn of a resource as a list.
pub fn depends_on(r: &Value) -> Vec<String> {
    match r.get("DependsOn") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// Why the launch template `lt` changed, in words.
fn launch_template_reasons(
    old_t: &Value,
    new_t: &Value,
    lt: &str,
    stack: &str,
    userdata: &[UserdataPlan],
) -> Vec<String> {
    let mut out = Vec::new();
    let data = |t: &Value| {
        resource(t, lt)
            .and_then(|r| r.pointer("/Properties/LaunchTemplateData"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let (a, b) = (data(old_t), data(new_t));
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        if a.get(k) == b.get(k) {
            continue;
        }
        if k == "UserData" {
            let role = role_of_stack(stack);
            let node_config = format!("{role}{}", super::NODE_CONFIG);
            let before = out.len();
            if userdata.iter().any(|u| u.role == role) {
                out.push(format!("cloud-config {role} changed"));
            }
            if userdata.iter().any(|u| u.role == node_config) {
                out.push(format!("node config {role} changed"));
            }
            if let Some(agent) = userdata.iter().find(|u| u.role == super::NODE_AGENT) {
                out.push(format!(
                    "node agent changed ({} → {})",
                    agent.deployed_key.as_deref().unwrap_or("none"),
                    agent.rendered_key.as_deref().unwrap_or("none")
                ));
            }
            if out.len() == before {
                out.push("user data stub changed".into());
            }
        } else {
            out.push(format!("launch template: {k}"));
        }
    }
    // The AMI comes in as a parameter the launch template refers to.
    let mut used = BTreeSet::new();
    refs(&Value::Object(b.clone()), &mut used);
    for p in used {
        let pa = old_t.get("Parameters").and_then(|x| x.get(&p));
        let pb = new_t.get("Parameters").and_then(|x| x.get(&p));
        if pb.is_some() && pa != pb {
            if p == "AmiId" {
                out.push(format!("AMI: {} → {}", ami_of(pa), ami_of(pb)));
            } else {
                out.push(format!("launch template parameter {p}"));
            }
        }
    }
    out
}

/// How a template's AmiId parameter names its image: the pinned id, or the SSM parameter
/// CloudFormation resolves on each update (config::ami).
fn ami_of(p: Option<&Value>) -> String {
    let default = p
        .and_then(|p| p.get("Default"))
        .and_then(Value::as_str)
        .unwrap_or("none");
    let ssm = p
        .and_then(|p| p.get("Type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t.starts_with("AWS::SSM"));
    if ssm {
        format!(
            "SSM parameter {default} (not pinned; rolls only if CloudFormation last resolved another image)"
        )
    } else {
        default.to_string()
    }
}

fn launch_template_of(r: &Value) -> Option<String> {
    let p = r.get("Properties")?;
    let spec = p.get("LaunchTemplate").or_else(|| {
        p.pointer("/MixedInstancesPolicy/LaunchTemplate/LaunchTemplateSpecification")
    })?;
    let mut ids = BTreeSet::new();
    refs(spec.get("LaunchTemplateId")?, &mut ids);
    ids.into_iter().next()
}

/// Orders ids so that each comes after those it DependsOn (stable otherwise).
fn dependency_order(t: &Value, ids: &[String]) -> Vec<String> {
    let mut depth: BTreeMap<String, usize> = BTreeMap::new();
    fn d(t: &Value, id: &str, memo: &mut BTreeMap<String, usize>, guard: usize) -> usize {
        if let Some(x) = memo.get(id) {
            return *x;
        }
        let deps = resource(t, id).map(depends_on).unwrap_or_default();
        let v = if guard > 1000 {
            0
        } else {
            deps.iter()
                .map(|x| d(t, x, memo, guard + 1) + 1)
                .max()
                .unwrap_or(0)
        };
        memo.insert(id.to_string(), v);
        v
    }
    let mut v: Vec<(usize, String)> = ids
        .iter()
        .map(|i| (d(t, i, &mut depth, 0), i.clone()))
        .collect();
    v.sort();
    v.into_iter().map(|(_, i)| i).collect()
}

/// The roll a modified stack causes, if any.
pub fn roll(
    stack: &str,
    pool: Option<String>,
    old_t: &Value,
    new_t: &Value,
    changes: &[ResourceChange],
    userdata: &[UserdataPlan],
) -> Option<Roll> {
    let changed: BTreeMap<&str, &ResourceChange> = changes
        .iter()
        .filter(|c| c.action == Action::Modify)
        .map(|c| (c.logical_id.as_str(), c))
        .collect();
    let mut reasons: Vec<String> = Vec::new();
    let mut groups = Vec::new();
    let mut how = String::new();
    let res = new_t.get("Resources").and_then(Value::as_object)?;
    for (id, r) in res {
        let ty = r.get("Type").and_then(Value::as_str).unwrap_or_default();
        if resource(old_t, id).is_none() {
            continue;
        }
        let mut why = Vec::new();
        if let Some(c) = changed.get(id.as_str()) {
            for t in ROLLING_TRIGGERS {
                if c.changed.iter().any(|x| x == t) && ty != "AWS::EC2::Instance" {
                    why.push(format!("group: {}", t.trim_start_matches("Properties.")));
                }
            }
            if ty == "AWS::EC2::Instance" && c.replacement == Some(Replacement::True) {
                let props: Vec<&str> = c
                    .changed
                    .iter()
                    .filter_map(|x| x.strip_prefix("Properties."))
                    .filter(|x| *x != "LaunchTemplate")
                    .collect();
                if !props.is_empty() {
                    why.push(format!("instance: {}", props.join(", ")));
                }
            }
        }
        let lt_based = matches!(
            ty,
            "AWS::AutoScaling::AutoScalingGroup" | "AWS::EC2::Instance"
        );
        if !lt_based {
            continue;
        }
        if let Some(lt) = launch_template_of(r)
            && (changed.contains_key(lt.as_str())
                || new_t.get("Parameters") != old_t.get("Parameters"))
        {
            why.extend(launch_template_reasons(old_t, new_t, &lt, stack, userdata));
        }
        if why.is_empty() {
            continue;
        }
        for w in why {
            if !reasons.contains(&w) {
                reasons.push(w);
            }
        }
        groups.push(id.clone());
        how = if ty == "AWS::EC2::Instance" {
            "replaced: a new instance per member, keeping its volume and network interface".into()
        } else if r
            .pointer("/UpdatePolicy/AutoScalingReplacingUpdate/WillReplace")
            .and_then(Value::as_bool)
            == Some(true)
        {
            "replacing (surge): a new group comes up and signals ready before the old one goes"
                .into()
        } else if let Some(u) = r.pointer("/UpdatePolicy/AutoScalingRollingUpdate") {
            format!(
                "rolling: batch {}, at least {} in service per group, pause {}, waiting on signals",
                u.get("MaxBatchSize")
                    .map(plain)
                    .unwrap_or_else(|| "1".into()),
                u.get("MinInstancesInService")
                    .map(plain)
                    .unwrap_or_else(|| "0".into()),
                u.get("PauseTime")
                    .map(plain)
                    .unwrap_or_else(|| "PT0S".into()),
            )
        } else {
            "replaced by CloudFormation's default (no UpdatePolicy)".into()
        };
    }
    if groups.is_empty() {
        return None;
    }
    Some(Roll {
        stack: stack.to_string(),
        pool,
        reasons,
        groups: dependency_order(new_t, &groups),
        how,
    })
}

fn plain(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

/// Rolling stacks in waves by the root's dependencies: CloudFormation updates a nested
/// stack only after those it depends on (DependsOn, Ref, GetAtt) have finished.
pub fn waves(root: &Value, refs_: &[NestedRef], rolling: &[&str]) -> Vec<Vec<String>> {
    let ids: BTreeSet<String> = refs_.iter().map(|r| r.logical_id.clone()).collect();
    let mut memo: BTreeMap<String, usize> = BTreeMap::new();
    fn level(
        root: &Value,
        ids: &BTreeSet<String>,
        id: &str,
        memo: &mut BTreeMap<String, usize>,
        guard: usize,
    ) -> usize {
        if let Some(x) = memo.get(id) {
            return *x;
        }
        let Some(r) = resource(root, id) else {
            return 0;
        };
        let mut deps: BTreeSet<String> = depends_on(r).into_iter().collect();
        refs(r, &mut deps);
        let v = if guard > 1000 {
            0
        } else {
            deps.iter()
                .filter(|d| ids.contains(*d) && d.as_str() != id)
                .map(|d| level(root, ids, d, memo, guard + 1) + 1)
                .max()
                .unwrap_or(0)
        };
        memo.insert(id.to_string(), v);
        v
    }
    let mut by_level: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for r in refs_.iter().filter(|r| rolling.contains(&r.name.as_str())) {
        let l = level(root, &ids, &r.logical_id, &mut memo, 0);
        by_level.entry(l).or_default().push(r.name.clone());
    }
    by_level
        .into_values()
        .map(|mut v| {
            v.sort();
            v
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replacement_table() {
        let n = json!({});
        assert_eq!(
            replacement("AWS::EC2::Subnet", &["Properties.CidrBlock".into()], &n),
            Replacement::True
        );
        assert_eq!(
            replacement("AWS::EC2::Subnet", &["Properties.Tags".into()], &n),
            Replacement::False
        );
        assert_eq!(
            replacement(
                "AWS::EC2::LaunchTemplate",
                &["Properties.LaunchTemplateData".into()],
                &n
            ),
            Replacement::False
        );
        assert_eq!(
            replacement("AWS::Foo::Bar", &["Properties.X".into()], &n),
            Replacement::Conditional
        );
        let surge = json!({"UpdatePolicy": {"AutoScalingReplacingUpdate": {"WillReplace": true}}});
        assert_eq!(
            replacement(
                "AWS::AutoScaling::AutoScalingGroup",
                &["Properties.LaunchTemplate".into()],
                &surge
            ),
            Replacement::True
        );
        assert_eq!(
            replacement(
                "AWS::AutoScaling::AutoScalingGroup",
                &["Properties.MinSize".into()],
                &surge
            ),
            Replacement::False
        );
    }

    fn pool(instance_type: &str, min: &str, ami: &str) -> Value {
        json!({
            "Parameters": {"AmiId": {"Type": "AWS::EC2::Image::Id", "Default": ami}},
            "Resources": {
                "LT": {"Type": "AWS::EC2::LaunchTemplate", "Properties": {"LaunchTemplateData": {
                    "ImageId": {"Ref": "AmiId"}, "InstanceType": instance_type}}},
                "GroupA": {"Type": "AWS::AutoScaling::AutoScalingGroup",
                    "UpdatePolicy": {"AutoScalingRollingUpdate": {"MaxBatchSize": 1, "MinInstancesInService": 2, "PauseTime": "PT15M"}},
                    "Properties": {"MinSize": min, "LaunchTemplate": {"LaunchTemplateId": {"Ref": "LT"},
                        "Version": {"Fn::GetAtt": ["LT", "LatestVersionNumber"]}}}},
                "GroupB": {"Type": "AWS::AutoScaling::AutoScalingGroup", "DependsOn": "GroupA",
                    "UpdatePolicy": {"AutoScalingRollingUpdate": {"MaxBatchSize": 1, "MinInstancesInService": 2, "PauseTime": "PT15M"}},
                    "Properties": {"MinSize": min, "LaunchTemplate": {"LaunchTemplateId": {"Ref": "LT"},
                        "Version": {"Fn::GetAtt": ["LT", "LatestVersionNumber"]}}}}
            }
        })
    }

    fn changes(old: &Value, new: &Value) -> Vec<ResourceChange> {
        super::super::compare_templates(old, new).0
    }

    #[test]
    fn instance_type_rolls_every_group_in_order() {
        let (o, n) = (
            pool("m5.large", "1", "ami-1"),
            pool("m5.xlarge", "1", "ami-1"),
        );
        let r = roll(
            "node-pool/a",
            Some("a".into()),
            &o,
            &n,
            &changes(&o, &n),
            &[],
        )
        .unwrap();
        assert_eq!(r.groups, vec!["GroupA", "GroupB"]);
        assert_eq!(r.reasons, vec!["launch template: InstanceType"]);
        assert!(r.how.starts_with("rolling: batch 1, at least 2 in service"));
    }

    #[test]
    fn size_does_not_roll_but_ami_does() {
        let (o, n) = (
            pool("m5.large", "1", "ami-1"),
            pool("m5.large", "3", "ami-1"),
        );
        assert!(roll("node-pool/a", None, &o, &n, &changes(&o, &n), &[]).is_none());
        let n = pool("m5.large", "1", "ami-2");
        let r = roll("node-pool/a", None, &o, &n, &changes(&o, &n), &[]).unwrap();
        assert_eq!(r.reasons, vec!["AMI: ami-1 → ami-2"]);
        // Pinning an unpinned pool names both forms.
        let mut o = o;
        o["Parameters"]["AmiId"] = json!({"Type": "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>", "Default": "/aws/service/x"});
        let r = roll("node-pool/a", None, &o, &n, &changes(&o, &n), &[]).unwrap();
        assert_eq!(
            r.reasons,
            vec![
                "AMI: SSM parameter /aws/service/x (not pinned; rolls only if CloudFormation last resolved another image) → ami-2"
            ]
        );
    }

    #[test]
    fn waves_follow_depends_on() {
        let root = json!({"Resources": {
            "Network": {"Type": "AWS::CloudFormation::Stack"},
            "ControlPlane": {"Type": "AWS::CloudFormation::Stack", "Properties": {"P": {"Fn::GetAtt": ["Network", "Outputs.X"]}}},
            "NodePoolA": {"Type": "AWS::CloudFormation::Stack", "DependsOn": "ControlPlane"},
            "NodePoolB": {"Type": "AWS::CloudFormation::Stack", "DependsOn": ["ControlPlane", "NodePoolA"]},
            "NodePoolC": {"Type": "AWS::CloudFormation::Stack", "DependsOn": "ControlPlane"}}});
        let r = |id: &str, name: &str| NestedRef {
            logical_id: id.into(),
            name: name.into(),
            rel_key: String::new(),
        };
        let refs_ = vec![
            r("Network", "network"),
            r("ControlPlane", "control-plane"),
            r("NodePoolA", "node-pool/a"),
            r("NodePoolB", "node-pool/b"),
            r("NodePoolC", "node-pool/c"),
        ];
        assert_eq!(
            waves(
                &root,
                &refs_,
                &["node-pool/b", "node-pool/a", "node-pool/c", "control-plane"]
            ),
            vec![
                vec!["control-plane".to_string()],
                vec!["node-pool/a".into(), "node-pool/c".into()],
                vec!["node-pool/b".into()]
            ]
        );
    }
}
