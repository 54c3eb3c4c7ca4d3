//! The AWS service broker add-on: its namespace, service account, AWS config (the role it
//! assumes), Deployment and Service, and the ClusterServiceBroker naming it.

use super::crds::GROUP;
use super::{hardened_container, labels};
use crate::config::Config;
use serde_json::{Value, json};

pub(super) fn aws_service_broker(c: &Config, ca_b64: &str) -> Vec<Value> {
    let b = &c.addons.aws_service_broker;
    let ns = &b.namespace;
    let name = "aws-service-broker";
    let (table, role) = crate::model::names::broker_names(&c.cluster_name, &b.broker_id);
    let auth = match b.auth {
        crate::config::types::BrokerAuth::Bearer => {
            json!({"bearer": {"secretRef": {"name": "aws-service-broker-auth", "namespace": ns}}})
        }
        crate::config::types::BrokerAuth::Basic => {
            json!({"basic": {"secretRef": {"name": "aws-service-broker-auth", "namespace": ns}}})
        }
    };
    let auth_mode = match b.auth {
        crate::config::types::BrokerAuth::Bearer => "bearer",
        crate::config::types::BrokerAuth::Basic => "basic",
    };
    let env_secret = match b.auth {
        crate::config::types::BrokerAuth::Bearer => ("KUBE_AWS_BROKER_TOKEN", "token"),
        crate::config::types::BrokerAuth::Basic => ("KUBE_AWS_BROKER_PASSWORD", "password"),
    };
    let mut container = hardened_container(
        "broker",
        &b.image,
        json!([
            "broker",
            "serve",
            "--listen",
            "0.0.0.0:8443",
            "--tls-cert",
            "/etc/aws-service-broker/tls/tls.crt",
            "--tls-key",
            "/etc/aws-service-broker/tls/tls.key",
            "--auth",
            auth_mode,
            "--broker-id",
            b.broker_id,
            "--services",
            b.services.join(","),
            "--state",
            format!("dynamodb:{table}"),
            "--region",
            c.region
        ]),
        8443,
    );
    container["env"] = json!([
        {"name": env_secret.0, "valueFrom": {"secretKeyRef": {"name": "aws-service-broker-auth", "key": env_secret.1}}},
        {"name": "AWS_CONFIG_FILE", "value": "/etc/aws-service-broker/aws/config"},
        {"name": "AWS_PROFILE", "value": "broker"},
    ]);
    container["volumeMounts"] = json!([
        {"name": "tls", "mountPath": "/etc/aws-service-broker/tls", "readOnly": true},
        {"name": "aws", "mountPath": "/etc/aws-service-broker/aws", "readOnly": true},
    ]);
    container["readinessProbe"] = json!({"httpGet": {"path": "/healthz", "port": 8443, "scheme": "HTTPS"}, "periodSeconds": 10});
    // The account and partition of the cluster's KMS key are the cluster's.
    let arn: Vec<&str> = c.kms_key_arn.split(':').collect();
    let (partition, account) = (
        arn.get(1).copied().unwrap_or("aws"),
        arn.get(4).copied().unwrap_or_default(),
    );
    let boundary = format!(
        "arn:{partition}:iam::{account}:policy/{}",
        crate::model::names::boundary_name(&c.cluster_name, &b.broker_id)
    );
    if let Some(env) = container["env"].as_array_mut() {
        env.push(json!({"name": "KUBE_AWS_BROKER_PERMISSIONS_BOUNDARY", "value": boundary}));
        env.push(json!({"name": "KUBE_AWS_BROKER_PRINCIPAL", "value": format!("arn:{partition}:iam::{account}:role/{role}")}));
    }
    let aws_config = format!(
        "[profile broker]\nrole_arn = arn:{partition}:iam::{account}:role/{role}\ncredential_source = Ec2InstanceMetadata\nregion = {}\n",
        c.region
    );
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels(name)}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns, "labels": labels(name)}, "automountServiceAccountToken": false}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "aws-service-broker-aws", "namespace": ns, "labels": labels(name)},
            "data": {"config": aws_config}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": labels(name)},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {"metadata": {"labels": labels(name)}, "spec": {
                "serviceAccountName": name,
                // The controllers' instance role may assume the broker's role; the
                // instance metadata service answers only one hop away.
                "hostNetwork": true,
                "dnsPolicy": "ClusterFirstWithHostNet",
                "nodeSelector": {"node-role.kubernetes.io/control-plane": ""},
                "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app.kubernetes.io/name": name}}, "topologyKey": "kubernetes.io/hostname"}]}},
                "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [container],
                "volumes": [
                    {"name": "tls", "secret": {"secretName": "aws-service-broker-tls"}},
                    {"name": "aws", "configMap": {"name": "aws-service-broker-aws"}},
                ],
            }}}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns, "labels": labels(name)},
            "spec": {"selector": {"app.kubernetes.io/name": name}, "ports": [{"name": "https", "port": 443, "targetPort": 8443}]}}),
        json!({"apiVersion": format!("{GROUP}/v1beta1"), "kind": "ClusterServiceBroker",
            "metadata": {"name": name, "labels": labels(name)},
            "spec": {"url": format!("https://{name}.{ns}.svc"), "caBundle": ca_b64,
                "authInfo": auth, "relistBehavior": "Duration", "relistDuration": "15m0s"}}),
    ]
}
