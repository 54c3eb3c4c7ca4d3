//! The cluster's own objects, written by kube-aws from upstream facts (never copied
//! manifests): the AWS cloud-controller-manager, the EBS CSI driver with a default
//! encrypted gp3 StorageClass, and the drainer's RBAC. The controllers apply them
//! server-side after the CNI. Pure: cluster facts in, Kubernetes JSON out.
//!
//! Nodes require IMDSv2 with a hop limit of 1, so only host-network pods reach the
//! instance role. The CCM and the EBS CSI controller therefore run on the controllers
//! with `hostNetwork: true`, under the controller role, which carries their IAM
//! permissions (stack-templates/control-plane.yaml).

use serde_json::{Value, json};

/// The CCM's minor must match the cluster's: "compatibility is ONLY guaranteed" with the
/// same minor (kubernetes/cloud-provider-aws docs/README.md). Each tag is the newest of
/// its minor that was promoted to registry.k8s.io (kubernetes/k8s.io
/// registry.k8s.io/images/k8s-staging-provider-aws/images.yaml).
pub const CCM_IMAGES: &[(&str, &str)] = &[
    (
        "1.31",
        "registry.k8s.io/provider-aws/cloud-controller-manager:v1.31.9",
    ),
    (
        "1.32",
        "registry.k8s.io/provider-aws/cloud-controller-manager:v1.32.8",
    ),
    (
        "1.33",
        "registry.k8s.io/provider-aws/cloud-controller-manager:v1.33.4",
    ),
    (
        "1.34",
        "registry.k8s.io/provider-aws/cloud-controller-manager:v1.34.3",
    ),
];

/// The EBS CSI driver and its sidecars, as deploy/kubernetes/base of
/// kubernetes-sigs/aws-ebs-csi-driver tag v1.64.0 pins them.
pub const EBS_DRIVER_IMAGE: &str = "public.ecr.aws/ebs-csi-driver/aws-ebs-csi-driver:v1.63.1";
pub const EBS_PROVISIONER_IMAGE: &str =
    "public.ecr.aws/csi-components/csi-provisioner:v6.3.0-eksbuild.4";
pub const EBS_ATTACHER_IMAGE: &str =
    "public.ecr.aws/csi-components/csi-attacher:v4.12.0-eksbuild.5";
pub const EBS_RESIZER_IMAGE: &str = "public.ecr.aws/csi-components/csi-resizer:v2.2.1-eksbuild.3";
pub const EBS_LIVENESS_IMAGE: &str =
    "public.ecr.aws/csi-components/livenessprobe:v2.19.0-eksbuild.5";
pub const EBS_REGISTRAR_IMAGE: &str =
    "public.ecr.aws/csi-components/csi-node-driver-registrar:v2.17.0-eksbuild.5";

pub fn ccm_image(minor: &str) -> Option<&'static str> {
    CCM_IMAGES
        .iter()
        .find(|(m, _)| *m == minor)
        .map(|(_, i)| *i)
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn cluster_role(name: &str, rules: Vec<Value>) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name}, "rules": rules})
}

fn binding(kind: &str, name: &str, role_kind: &str, role: &str, sa: &str) -> Value {
    let mut meta = json!({"name": name});
    if kind == "RoleBinding" {
        meta["namespace"] = json!("kube-system");
    }
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": "kube-system"}]})
}

fn service_account(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": "kube-system"}})
}

fn control_plane_tolerations() -> Value {
    json!([
        {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"},
        // The CCM itself removes this taint; it must run before any node is initialised.
        {"key": "node.cloudprovider.kubernetes.io/uninitialized", "operator": "Exists", "effect": "NoSchedule"},
        // Runs before the pod network is Ready (host network needs none).
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"}
    ])
}

/// The AWS cloud-controller-manager: a DaemonSet on the controllers
/// (examples/existing-cluster/base of kubernetes/cloud-provider-aws), with the
/// "superset-role" choice of that repository (`--use-service-account-credentials=false`
/// and one ClusterRole), so no per-controller service account needs RBAC of its own.
/// `--configure-cloud-routes=false`: the CNI routes pods, not VPC route tables.
pub fn cloud_controller_manager(image: &str) -> Vec<Value> {
    let name = "system:cloud-controller-manager";
    vec![
        service_account("cloud-controller-manager"),
        cluster_role(
            name,
            vec![
                rule(&[""], &["events"], &["create", "patch", "update"]),
                rule(
                    &[""],
                    &["nodes"],
                    &["get", "list", "patch", "update", "watch"],
                ),
                rule(&[""], &["nodes/status"], &["patch"]),
                rule(&[""], &["services"], &["list", "patch", "update", "watch"]),
                rule(&[""], &["services/status"], &["patch", "update"]),
                rule(&[""], &["serviceaccounts"], &["create"]),
                rule(
                    &[""],
                    &["endpoints"],
                    &["create", "get", "list", "update", "watch"],
                ),
                rule(
                    &["coordination.k8s.io"],
                    &["leases"],
                    &["create", "get", "list", "update", "watch"],
                ),
            ],
        ),
        binding(
            "ClusterRoleBinding",
            name,
            "ClusterRole",
            name,
            "cloud-controller-manager",
        ),
        binding(
            "RoleBinding",
            "cloud-controller-manager:apiserver-authentication-reader",
            "Role",
            "extension-apiserver-authentication-reader",
            "cloud-controller-manager",
        ),
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "aws-cloud-controller-manager", "namespace": "kube-system",
                "labels": {"k8s-app": "aws-cloud-controller-manager"}},
            "spec": {
                "selector": {"matchLabels": {"k8s-app": "aws-cloud-controller-manager"}},
                "updateStrategy": {"type": "RollingUpdate"},
                "template": {
                    "metadata": {"labels": {"k8s-app": "aws-cloud-controller-manager"}},
                    "spec": {
                        "nodeSelector": {"node-role.kubernetes.io/control-plane": ""},
                        "tolerations": control_plane_tolerations(),
                        "serviceAccountName": "cloud-controller-manager",
                        // It reads its instance id from IMDS and uses the instance role.
                        "hostNetwork": true,
                        "dnsPolicy": "Default",
                        "priorityClassName": "system-node-critical",
                        "containers": [{
                            "name": "aws-cloud-controller-manager",
                            "image": image,
                            "args": ["--v=2", "--cloud-provider=aws",
                                "--use-service-account-credentials=false",
                                "--configure-cloud-routes=false"],
                            "resources": {"requests": {"cpu": "200m"}}
                        }]
                    }
                }
            }
        }),
    ]
}

const EBS: &str = "ebs.csi.aws.com";

/// The EBS CSI driver (deploy/kubernetes/base of kubernetes-sigs/aws-ebs-csi-driver
/// v1.64.0), changed where IMDSv2 hop limit 1 requires it: the controller runs on the
/// controllers with the host network (the instance role) and required anti-affinity (its
/// healthz port is then a host port). The node plugin, without the host network, reads
/// its instance facts from its Node object (`--metadata-sources` falls back to
/// `kubernetes`: providerID and the labels the CCM sets). `--k8s-tag-cluster-id` tags
/// every volume `ebs.csi.aws.com/cluster-name=<cluster>`, which the controller role's
/// IAM conditions require. No snapshotter: the VolumeSnapshot CRDs are not installed.
pub fn ebs_csi(cluster: &str, region: &str, controllers: u32) -> Vec<Value> {
    let socket = "/var/lib/csi/sockets/pluginproxy/";
    let address = json!([{"name": "ADDRESS", "value": format!("{socket}csi.sock")}]);
    let sidecar = |name: &str, image: &str, args: &[&str]| {
        json!({"name": name, "image": image, "args": args, "env": address,
            "volumeMounts": [{"name": "socket-dir", "mountPath": socket}]})
    };
    let replicas = controllers.clamp(1, 2);
    let labels =
        json!({"app": "ebs-csi-controller", "app.kubernetes.io/name": "aws-ebs-csi-driver"});
    let node_labels =
        json!({"app": "ebs-csi-node", "app.kubernetes.io/name": "aws-ebs-csi-driver"});
    vec![
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": {"name": EBS},
            "spec": {"attachRequired": true, "podInfoOnMount": false, "fsGroupPolicy": "File"}}),
        service_account("ebs-csi-controller-sa"),
        service_account("ebs-csi-node-sa"),
        cluster_role(
            "kube-aws:ebs-external-attacher",
            vec![
                rule(
                    &[""],
                    &["persistentvolumes"],
                    &["get", "list", "watch", "patch"],
                ),
                rule(
                    &["storage.k8s.io"],
                    &["csinodes"],
                    &["get", "list", "watch"],
                ),
                rule(
                    &["storage.k8s.io"],
                    &["volumeattachments"],
                    &["get", "list", "watch", "patch"],
                ),
                rule(
                    &["storage.k8s.io"],
                    &["volumeattachments/status"],
                    &["patch"],
                ),
            ],
        ),
        cluster_role(
            "kube-aws:ebs-external-provisioner",
            vec![
                rule(
                    &[""],
                    &["persistentvolumes"],
                    &["get", "list", "watch", "create", "patch", "delete"],
                ),
                rule(
                    &[""],
                    &["persistentvolumeclaims"],
                    &["get", "list", "watch", "update"],
                ),
                rule(
                    &["storage.k8s.io"],
                    &["storageclasses"],
                    &["get", "list", "watch"],
                ),
                rule(
                    &[""],
                    &["events"],
                    &["list", "watch", "create", "update", "patch"],
                ),
                rule(
                    &["storage.k8s.io"],
                    &["csinodes"],
                    &["get", "list", "watch"],
                ),
                rule(&[""], &["nodes"], &["get", "list", "watch"]),
                rule(
                    &["storage.k8s.io"],
                    &["volumeattachments"],
                    &["get", "list", "watch"],
                ),
                rule(&["storage.k8s.io"], &["volumeattributesclasses"], &["get"]),
            ],
        ),
        cluster_role(
            "kube-aws:ebs-external-resizer",
            vec![
                rule(
                    &[""],
                    &["persistentvolumes"],
                    &["get", "list", "watch", "patch"],
                ),
                rule(
                    &[""],
                    &["persistentvolumeclaims"],
                    &["get", "list", "watch"],
                ),
                rule(&[""], &["pods"], &["get", "list", "watch"]),
                rule(&[""], &["persistentvolumeclaims/status"], &["patch"]),
                rule(
                    &[""],
                    &["events"],
                    &["list", "watch", "create", "update", "patch"],
                ),
                rule(
                    &["storage.k8s.io"],
                    &["volumeattributesclasses"],
                    &["get", "list", "watch"],
                ),
            ],
        ),
        cluster_role(
            "kube-aws:ebs-csi-node",
            vec![
                rule(
                    &["storage.k8s.io"],
                    &["volumeattachments"],
                    &["get", "list", "watch"],
                ),
                // patch: the node plugin removes the ebs.csi.aws.com/agent-not-ready taint.
                rule(&[""], &["nodes"], &["get", "patch", "list", "watch"]),
                rule(&["storage.k8s.io"], &["csinodes"], &["get"]),
            ],
        ),
        binding(
            "ClusterRoleBinding",
            "kube-aws:ebs-external-attacher",
            "ClusterRole",
            "kube-aws:ebs-external-attacher",
            "ebs-csi-controller-sa",
        ),
        binding(
            "ClusterRoleBinding",
            "kube-aws:ebs-external-provisioner",
            "ClusterRole",
            "kube-aws:ebs-external-provisioner",
            "ebs-csi-controller-sa",
        ),
        binding(
            "ClusterRoleBinding",
            "kube-aws:ebs-external-resizer",
            "ClusterRole",
            "kube-aws:ebs-external-resizer",
            "ebs-csi-controller-sa",
        ),
        binding(
            "ClusterRoleBinding",
            "kube-aws:ebs-csi-node",
            "ClusterRole",
            "kube-aws:ebs-csi-node",
            "ebs-csi-node-sa",
        ),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "kube-aws:ebs-csi-leases", "namespace": "kube-system"},
            "rules": [rule(&["coordination.k8s.io"], &["leases"], &["get", "watch", "list", "delete", "update", "create"])]}),
        binding(
            "RoleBinding",
            "kube-aws:ebs-csi-leases",
            "Role",
            "kube-aws:ebs-csi-leases",
            "ebs-csi-controller-sa",
        ),
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "ebs-csi-controller", "namespace": "kube-system"},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}}}),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "ebs-csi-controller", "namespace": "kube-system"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "nodeSelector": {"node-role.kubernetes.io/control-plane": ""},
                        "tolerations": control_plane_tolerations(),
                        "hostNetwork": true,
                        "dnsPolicy": "ClusterFirstWithHostNet",
                        "priorityClassName": "system-cluster-critical",
                        "serviceAccountName": "ebs-csi-controller-sa",
                        "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                            {"labelSelector": {"matchLabels": labels}, "topologyKey": "kubernetes.io/hostname"}]}},
                        "containers": [
                            {
                                "name": "ebs-plugin",
                                "image": EBS_DRIVER_IMAGE,
                                "args": ["controller", "--endpoint=$(CSI_ENDPOINT)", "--batching=true",
                                    "--logging-format=text", format!("--k8s-tag-cluster-id={cluster}"), "--v=2"],
                                "env": [
                                    {"name": "CSI_ENDPOINT", "value": format!("unix://{socket}csi.sock")},
                                    {"name": "CSI_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                                    {"name": "AWS_REGION", "value": region}
                                ],
                                "ports": [{"name": "healthz", "containerPort": 9808, "protocol": "TCP"}],
                                "livenessProbe": {"httpGet": {"path": "/healthz", "port": "healthz"},
                                    "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 3, "failureThreshold": 5},
                                "volumeMounts": [{"name": "socket-dir", "mountPath": socket}]
                            },
                            sidecar("csi-provisioner", EBS_PROVISIONER_IMAGE, &["--timeout=60s", "--csi-address=$(ADDRESS)", "--v=2",
                                "--feature-gates=Topology=true", "--extra-create-metadata", "--leader-election=true", "--default-fstype=ext4"]),
                            sidecar("csi-attacher", EBS_ATTACHER_IMAGE, &["--timeout=6m", "--csi-address=$(ADDRESS)", "--v=2", "--leader-election=true"]),
                            sidecar("csi-resizer", EBS_RESIZER_IMAGE, &["--timeout=60s", "--csi-address=$(ADDRESS)", "--v=2",
                                "--handle-volume-inuse-error=false", "--leader-election=true"]),
                            {"name": "liveness-probe", "image": EBS_LIVENESS_IMAGE,
                                "args": ["--csi-address=/csi/csi.sock", "--probe-timeout=60s"],
                                "volumeMounts": [{"name": "socket-dir", "mountPath": "/csi"}]}
                        ],
                        "volumes": [{"name": "socket-dir", "emptyDir": {}}]
                    }
                }
            }
        }),
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "ebs-csi-node", "namespace": "kube-system"},
            "spec": {
                "selector": {"matchLabels": node_labels},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
                "template": {
                    "metadata": {"labels": node_labels},
                    "spec": {
                        "nodeSelector": {"kubernetes.io/os": "linux"},
                        "tolerations": [{"operator": "Exists"}],
                        "priorityClassName": "system-node-critical",
                        "serviceAccountName": "ebs-csi-node-sa",
                        "terminationGracePeriodSeconds": 30,
                        "containers": [
                            {
                                "name": "ebs-plugin",
                                "image": EBS_DRIVER_IMAGE,
                                "args": ["node", "--endpoint=$(CSI_ENDPOINT)",
                                    "--csi-mount-point-prefix=/var/lib/kubelet/plugins/kubernetes.io/csi/ebs.csi.aws.com/",
                                    "--logging-format=text", "--v=2"],
                                "env": [
                                    {"name": "CSI_ENDPOINT", "value": "unix:/csi/csi.sock"},
                                    {"name": "CSI_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
                                ],
                                "securityContext": {"privileged": true},
                                "ports": [{"name": "healthz", "containerPort": 9808, "protocol": "TCP"}],
                                "volumeMounts": [
                                    {"name": "kubelet-dir", "mountPath": "/var/lib/kubelet", "mountPropagation": "Bidirectional"},
                                    {"name": "plugin-dir", "mountPath": "/csi"},
                                    {"name": "device-dir", "mountPath": "/dev"}
                                ]
                            },
                            {
                                "name": "node-driver-registrar",
                                "image": EBS_REGISTRAR_IMAGE,
                                "args": ["--csi-address=$(ADDRESS)", "--kubelet-registration-path=$(DRIVER_REG_SOCK_PATH)", "--v=2"],
                                "env": [
                                    {"name": "ADDRESS", "value": "/csi/csi.sock"},
                                    {"name": "DRIVER_REG_SOCK_PATH", "value": "/var/lib/kubelet/plugins/ebs.csi.aws.com/csi.sock"}
                                ],
                                "volumeMounts": [
                                    {"name": "plugin-dir", "mountPath": "/csi"},
                                    {"name": "registration-dir", "mountPath": "/registration"}
                                ]
                            },
                            {"name": "liveness-probe", "image": EBS_LIVENESS_IMAGE,
                                "args": ["--csi-address=/csi/csi.sock"],
                                "volumeMounts": [{"name": "plugin-dir", "mountPath": "/csi"}]}
                        ],
                        "volumes": [
                            {"name": "kubelet-dir", "hostPath": {"path": "/var/lib/kubelet", "type": "Directory"}},
                            {"name": "plugin-dir", "hostPath": {"path": "/var/lib/kubelet/plugins/ebs.csi.aws.com/", "type": "DirectoryOrCreate"}},
                            {"name": "registration-dir", "hostPath": {"path": "/var/lib/kubelet/plugins_registry/", "type": "Directory"}},
                            {"name": "device-dir", "hostPath": {"path": "/dev", "type": "Directory"}}
                        ]
                    }
                }
            }
        }),
        // The default class: gp3, encrypted (docs/parameters.md), bound when a pod is
        // scheduled so the volume is created in the pod's zone.
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "gp3-encrypted",
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": EBS,
            "parameters": {"type": "gp3", "encrypted": "true", "csi.storage.k8s.io/fstype": "ext4"},
            "volumeBindingMode": "WaitForFirstConsumer",
            "allowVolumeExpansion": true,
            "reclaimPolicy": "Delete"}),
    ]
}

/// What `kube-aws node drain` needs, as the group every node's kubelet credentials are
/// in (system:nodes): cordon its node, list and evict its pods. The Node authorizer and
/// NodeRestriction still limit what a kubelet may do to other nodes' objects.
pub fn drainer_rbac() -> Vec<Value> {
    let name = "kube-aws:node-drainer";
    vec![
        cluster_role(
            name,
            vec![
                rule(&[""], &["pods"], &["get", "list"]),
                rule(&[""], &["pods/eviction"], &["create"]),
                rule(&[""], &["nodes"], &["get", "patch"]),
            ],
        ),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}]}),
    ]
}

/// Every object the controllers apply after the CNI, in apply order.
pub fn cluster_objects(cluster: &str, region: &str, minor: &str, controllers: u32) -> Vec<Value> {
    let mut v = drainer_rbac();
    if let Some(image) = ccm_image(minor) {
        v.extend(cloud_controller_manager(image));
    }
    v.extend(ebs_csi(cluster, region, controllers));
    v
}

/// Calico v3.30.7: the release line whose documentation lists Kubernetes 1.31–1.34 as
/// tested (tigera/docs, calico_versioned_docs/version-3.30, system requirements). Its
/// manifest enforces NetworkPolicy (CNI policy type k8s), encapsulates pod traffic in
/// IP-in-IP between nodes and peers over BGP (TCP 179, IP protocol 4: the node security
/// groups allow all traffic between controllers and workers), and takes its IP pool from
/// kubeadm's `podSubnet` (calico-node reads the kubeadm-config ConfigMap when
/// CALICO_IPV4POOL_CIDR is unset: node/pkg/lifecycle/startup/startup.go). The sha256 is
/// of `manifests/calico.yaml` at tag v3.30.7 (541,790 bytes).
pub const CALICO_VERSION: &str = "v3.30.7";
pub const CALICO_URL: &str =
    "https://raw.githubusercontent.com/projectcalico/calico/v3.30.7/manifests/calico.yaml";
pub const CALICO_SHA256: &str = "ed105288f27c7ba4cae143bcaa3f6425f02d84fa94a4786cc8e3d371412c1a36";

/// The AWS VPC CNI v1.23.0: `config/master/aws-k8s-cni.yaml` at that tag of
/// aws/amazon-vpc-cni-k8s (12,160 bytes). Its images are in Amazon's private ECR
/// (602401143452.dkr.ecr.us-west-2.amazonaws.com), so kubelets need ECR credentials (the
/// credential provider below). Network policy is off in it
/// (`enable-network-policy-controller: "false"`; docs/network-policy-faq.md).
pub const VPC_CNI_VERSION: &str = "v1.23.0";
pub const VPC_CNI_URL: &str = "https://raw.githubusercontent.com/aws/amazon-vpc-cni-k8s/v1.23.0/config/master/aws-k8s-cni.yaml";
pub const VPC_CNI_SHA256: &str = "3a932385c0db788d8b080b8a9ea262681ed2b564bcc764f95e5b886bdf8494ab";

/// kubelet's ECR credential provider (kubernetes/cloud-provider-aws), v1.31.7, the
/// version and sha256 kubernetes/kops pins in pkg/assets/assetdata/ecr.yaml.
pub const ECR_PROVIDER_VERSION: &str = "v1.31.7";
pub const ECR_PROVIDER: &[(&str, &str)] = &[
    (
        "amd64",
        "7644623e4ec9ad443ab352a8a5800a5180ee28741288be805286ba72bb8e7164",
    ),
    (
        "arm64",
        "1980e3a038cb16da48a137743b31fb81de6c0b59fa06c206c2bc20ce0a52f849",
    ),
];

pub fn ecr_provider_url(arch: &str) -> String {
    format!(
        "https://artifacts.k8s.io/binaries/cloud-provider-aws/{ECR_PROVIDER_VERSION}/linux/{arch}/ecr-credential-provider-linux-{arch}"
    )
}

/// The kubelet's CredentialProviderConfig for ECR (kubelet.config.k8s.io/v1; the ECR
/// host patterns kops writes, nodeup/pkg/model/kubelet.go).
pub fn ecr_provider_config(region: &str) -> String {
    serde_yaml_ng::to_string(&json!({
        "apiVersion": "kubelet.config.k8s.io/v1",
        "kind": "CredentialProviderConfig",
        "providers": [{
            "name": "ecr-credential-provider",
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            "matchImages": ["*.dkr.ecr.*.amazonaws.com", "*.dkr.ecr.*.amazonaws.com.cn",
                "*.dkr.ecr-fips.*.amazonaws.com"],
            "defaultCacheDuration": "12h",
            "args": ["get-credentials"],
            "env": [{"name": "AWS_REGION", "value": region}]
        }]
    }))
    .unwrap_or_default()
}

/// `--max-pods` with the VPC CNI: every pod takes a secondary address of an ENI, so a
/// node holds at most ENIs × (addresses per ENI − 1) + 2 pods (the amazon-vpc-cni-k8s
/// README's formula, capped at the kubelet's default 110 as kops does).
pub fn vpc_cni_max_pods(enis: u32, ips_per_eni: u32) -> u32 {
    (enis * ips_per_eni.saturating_sub(1) + 2).min(110)
}

#[cfg(test)]
mod tests {
    #[test]
    fn max_pods_follow_the_eni_limits() {
        // t3.medium: 3 ENIs × 6 addresses; m5.large: 3 × 10; c5.18xlarge: 15 × 50.
        assert_eq!(super::vpc_cni_max_pods(3, 6), 17);
        assert_eq!(super::vpc_cni_max_pods(3, 10), 29);
        assert_eq!(super::vpc_cni_max_pods(15, 50), 110);
    }
}
