//! The broker's catalog: CloudFormation templates whose `Metadata.KubeAwsBroker` section
//! declares the service, its plans, the parameters users may set, the outputs that become
//! credentials and a binding's least-privilege policy. Built in (`broker-catalog/`) and
//! extended or overridden by `--catalog DIR`. Pure: no I/O besides `load_dir`.

use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// Template parameters named so are the broker's to fill (`KubeAwsBrokerPrincipal`: the
/// IAM principal it runs as), never a user's.
pub const SYSTEM_PREFIX: &str = "KubeAwsBroker";

/// The templates shipped in the binary.
pub const BUILTIN: &[(&str, &str)] = &[
    ("s3.yaml", include_str!("../broker-catalog/s3.yaml")),
    ("sqs.yaml", include_str!("../broker-catalog/sqs.yaml")),
    ("sns.yaml", include_str!("../broker-catalog/sns.yaml")),
    (
        "dynamodb.yaml",
        include_str!("../broker-catalog/dynamodb.yaml"),
    ),
    ("kms.yaml", include_str!("../broker-catalog/kms.yaml")),
    (
        "kinesis.yaml",
        include_str!("../broker-catalog/kinesis.yaml"),
    ),
    (
        "rdspostgresql.yaml",
        include_str!("../broker-catalog/rdspostgresql.yaml"),
    ),
    (
        "rdsmysql.yaml",
        include_str!("../broker-catalog/rdsmysql.yaml"),
    ),
    (
        "rdsmariadb.yaml",
        include_str!("../broker-catalog/rdsmariadb.yaml"),
    ),
    (
        "elasticache.yaml",
        include_str!("../broker-catalog/elasticache.yaml"),
    ),
    (
        "route53.yaml",
        include_str!("../broker-catalog/route53.yaml"),
    ),
    ("athena.yaml", include_str!("../broker-catalog/athena.yaml")),
    ("polly.yaml", include_str!("../broker-catalog/polly.yaml")),
    (
        "rekognition.yaml",
        include_str!("../broker-catalog/rekognition.yaml"),
    ),
    (
        "translate.yaml",
        include_str!("../broker-catalog/translate.yaml"),
    ),
    ("lex.yaml", include_str!("../broker-catalog/lex.yaml")),
    ("emr.yaml", include_str!("../broker-catalog/emr.yaml")),
    (
        "redshift.yaml",
        include_str!("../broker-catalog/redshift.yaml"),
    ),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlanSpec {
    pub name: String,
    pub id: String,
    pub description: String,
    /// Parameter values the plan sets; users may not override them.
    #[serde(default)]
    pub fixed: BTreeMap<String, String>,
    /// Parameter values the plan suggests; users may override them.
    #[serde(default)]
    pub defaults: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Meta {
    name: String,
    id: String,
    description: String,
    #[serde(default)]
    tags: Vec<String>,
    bindable: bool,
    plan_updateable: bool,
    #[serde(default)]
    update_parameters: Vec<String>,
    plans: Vec<PlanSpec>,
    credentials: BTreeMap<String, String>,
    bind_prefix: String,
    #[serde(default)]
    bind_policy: Vec<Value>,
    /// What the broker itself needs to provision the service through CloudFormation;
    /// `${BrokerId}`, `${Partition}`, `${Region}`, `${AccountId}` are filled in.
    #[serde(default)]
    broker_policy: Vec<Value>,
    /// The most a binding's IAM user of this service may ever be allowed (same
    /// substitutions as `brokerPolicy`): the add-on's permissions boundary is the union
    /// over the offered services.
    #[serde(default)]
    bind_boundary: Vec<Value>,
    /// Credentials read at bind time from a Secrets Manager secret that an instance
    /// output names (a generated database password): never an output themselves.
    #[serde(default)]
    secret_credentials: BTreeMap<String, SecretRef>,
}

/// A JSON field of the SecretString of the secret whose ARN is output `output`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    pub output: String,
    pub key: String,
}

/// One service of the catalog.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub id: String,
    pub description: String,
    pub tags: Vec<String>,
    pub bindable: bool,
    pub plan_updateable: bool,
    pub plans: Vec<PlanSpec>,
    /// The template as JSON, Metadata included.
    pub template: Value,
    /// The template serialised once: the TemplateBody of every stack of this service.
    pub body: String,
    /// The template's Parameters section.
    pub parameters: Map<String, Value>,
    pub update_parameters: Vec<String>,
    /// Credential key → output name.
    pub credentials: BTreeMap<String, String>,
    pub bind_prefix: String,
    /// IAM statements for a binding's user; `${Output}` is an output of the instance stack.
    pub bind_policy: Vec<Value>,
    pub broker_policy: Vec<Value>,
    pub bind_boundary: Vec<Value>,
    pub secret_credentials: BTreeMap<String, SecretRef>,
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub services: Vec<Service>,
}

/// Parses one catalog template; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Service, String> {
    let template: Value =
        serde_yaml_ng::from_str(text).map_err(|e| format!("{file}: not a YAML template: {e}"))?;
    let meta = template
        .pointer("/Metadata/KubeAwsBroker")
        .cloned()
        .ok_or_else(|| format!("{file}: no Metadata.KubeAwsBroker section"))?;
    let meta: Meta = serde_path_to_error::deserialize(meta)
        .map_err(|e| format!("{file}: Metadata.KubeAwsBroker.{}: {}", e.path(), e.inner()))?;
    let parameters = template
        .get("Parameters")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for p in &meta.plans {
        for k in p.fixed.keys().chain(p.defaults.keys()) {
            if !parameters.contains_key(k) {
                return Err(format!(
                    "{file}: plan {} sets `{k}`, which is not a template parameter",
                    p.name
                ));
            }
        }
    }
    for k in &meta.update_parameters {
        if !parameters.contains_key(k) {
            return Err(format!("{file}: updateParameters names unknown `{k}`"));
        }
    }
    // Stack names are `<broker>-<service>-i-<instance>`: a hyphen-free service name keeps
    // them unambiguous (broker::state).
    if meta.name.is_empty()
        || meta.name.len() > 20
        || !meta
            .name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        return Err(format!(
            "{file}: Metadata.KubeAwsBroker.name `{}`: use 1–20 lower-case letters or digits (no hyphen)",
            meta.name
        ));
    }
    if meta.plans.is_empty() {
        return Err(format!("{file}: a service needs at least one plan"));
    }
    let body = serde_json::to_string(&template).map_err(|e| format!("{file}: {e}"))?;
    Ok(Service {
        body,
        name: meta.name,
        id: meta.id,
        description: meta.description,
        tags: meta.tags,
        bindable: meta.bindable,
        plan_updateable: meta.plan_updateable,
        plans: meta.plans,
        template,
        parameters,
        update_parameters: meta.update_parameters,
        credentials: meta.credentials,
        bind_prefix: meta.bind_prefix,
        bind_policy: meta.bind_policy,
        broker_policy: meta.broker_policy,
        bind_boundary: meta.bind_boundary,
        secret_credentials: meta.secret_credentials,
    })
}

impl Catalog {
    /// The built-in services, then those of `dir` (a file with a built-in service's name
    /// replaces it).
    pub fn load(dir: Option<&Path>) -> Result<Catalog, String> {
        let mut c = Catalog::default();
        for (f, t) in BUILTIN {
            c.add(parse(f, t)?);
        }
        if let Some(d) = dir {
            let mut files: Vec<_> = std::fs::read_dir(d)
                .map_err(|e| format!("--catalog {}: {e}", d.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            files.sort();
            for p in files {
                let text =
                    std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                c.add(parse(&p.display().to_string(), &text)?);
            }
        }
        let mut ids = std::collections::BTreeSet::new();
        for s in &c.services {
            for id in std::iter::once(&s.id).chain(s.plans.iter().map(|p| &p.id)) {
                if !ids.insert(id.clone()) {
                    return Err(format!(
                        "catalog: id {id} is used twice (service {})",
                        s.name
                    ));
                }
            }
        }
        Ok(c)
    }

    fn add(&mut self, s: Service) {
        self.services.retain(|x| x.name != s.name);
        self.services.push(s);
    }

    pub fn service(&self, id: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.id == id)
    }

    /// Keeps only the named services (the add-on's `services` list).
    pub fn only(&mut self, names: &[String]) {
        if !names.is_empty() {
            self.services.retain(|s| names.contains(&s.name));
        }
    }

    /// `GET /v2/catalog`.
    pub fn osb(&self) -> Value {
        json!({"services": self.services.iter().map(Service::osb).collect::<Vec<_>>()})
    }
}

impl Service {
    pub fn plan(&self, id: &str) -> Option<&PlanSpec> {
        self.plans.iter().find(|p| p.id == id)
    }

    fn osb(&self) -> Value {
        json!({
            "name": self.name,
            "id": self.id,
            "description": self.description,
            "tags": self.tags,
            "bindable": self.bindable,
            "plan_updateable": self.plan_updateable,
            "instances_retrievable": true,
            "bindings_retrievable": true,
            "allow_context_updates": false,
            "metadata": {"displayName": self.description, "providerDisplayName": "kube-aws"},
            "plans": self.plans.iter().map(|p| json!({
                "id": p.id,
                "name": p.name,
                "description": p.description,
                "free": false,
                "bindable": self.bindable,
                "schemas": {
                    "service_instance": {
                        "create": {"parameters": self.schema(p, false)},
                        "update": {"parameters": self.schema(p, true)},
                    },
                    "service_binding": {"create": {"parameters": {
                        "$schema": "http://json-schema.org/draft-04/schema#",
                        "type": "object", "additionalProperties": false}}},
                },
            })).collect::<Vec<_>>(),
        })
    }

    /// Parameters a user may set for `plan`: every template parameter the plan does not
    /// fix (for update: only the updatable ones).
    pub fn settable(&self, plan: &PlanSpec, update: bool) -> Vec<String> {
        self.parameters
            .keys()
            .filter(|k| !k.starts_with(SYSTEM_PREFIX))
            .filter(|k| !plan.fixed.contains_key(*k))
            .filter(|k| !update || self.update_parameters.contains(k))
            .cloned()
            .collect()
    }

    /// The JSON Schema (draft-04, as OSB specifies) of the parameters for `plan`.
    pub fn schema(&self, plan: &PlanSpec, update: bool) -> Value {
        let mut props = Map::new();
        let mut required = Vec::new();
        for k in self.settable(plan, update) {
            let p = &self.parameters[&k];
            let ty = p.get("Type").and_then(Value::as_str).unwrap_or("String");
            let mut s = Map::new();
            // CloudFormation parameters are strings on the wire; numbers may come as either.
            if ty == "Number" {
                s.insert("type".into(), json!(["number", "string"]));
                if let Some(m) = p.get("MinValue") {
                    s.insert("minimum".into(), m.clone());
                }
                if let Some(m) = p.get("MaxValue") {
                    s.insert("maximum".into(), m.clone());
                }
            } else {
                s.insert("type".into(), json!("string"));
                if let Some(a) = p.get("AllowedValues") {
                    s.insert("enum".into(), a.clone());
                }
                if let Some(a) = p.get("AllowedPattern").and_then(Value::as_str) {
                    s.insert("pattern".into(), json!(format!("^(?:{a})$")));
                }
                if let Some(m) = p.get("MinLength") {
                    s.insert("minLength".into(), m.clone());
                }
                if let Some(m) = p.get("MaxLength") {
                    s.insert("maxLength".into(), m.clone());
                }
            }
            if let Some(d) = p.get("Description") {
                s.insert("description".into(), d.clone());
            }
            let default = plan
                .defaults
                .get(&k)
                .map(|v| json!(v))
                .or_else(|| p.get("Default").cloned());
            match default {
                Some(d) => {
                    s.insert("default".into(), d);
                }
                None if !update => required.push(k.clone()),
                None => {}
            }
            props.insert(k, Value::Object(s));
        }
        let mut schema = json!({
            "$schema": "http://json-schema.org/draft-04/schema#",
            "type": "object",
            "additionalProperties": false,
            "properties": props,
        });
        // Draft 4 wants at least one entry in `required` when it is present.
        if !required.is_empty() {
            schema["required"] = json!(required);
        }
        schema
    }

    /// The CloudFormation parameter values for a provision (`update` false) or the values
    /// a user changes in an update. Validates `given` against the plan's schema first.
    pub fn resolve(
        &self,
        plan: &PlanSpec,
        given: &Map<String, Value>,
        update: bool,
    ) -> Result<BTreeMap<String, String>, String> {
        let schema = self.schema(plan, update);
        let validator = jsonschema::draft4::new(&schema)
            .map_err(|e| format!("the catalog's schema for {} is invalid: {e}", self.name))?;
        let instance = Value::Object(given.clone());
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| {
                let path = e.instance_path.to_string();
                if path.is_empty() {
                    e.to_string()
                } else {
                    format!("{}: {e}", path.trim_start_matches('/'))
                }
            })
            .collect();
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        let mut out = BTreeMap::new();
        if !update {
            // Every parameter is sent explicitly: the stack records the value it was made
            // with, and a later change of a template default never reaches it silently.
            for (k, p) in &self.parameters {
                if let Some(d) = p.get("Default") {
                    let d = d
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| d.to_string());
                    out.insert(k.clone(), d);
                }
            }
            for (k, v) in &plan.defaults {
                out.insert(k.clone(), v.clone());
            }
            for (k, v) in &plan.fixed {
                out.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in given {
            let s = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.insert(k.clone(), s);
        }
        Ok(out)
    }
}

/// Replaces `${Name}` with the instance stack's output `Name` in every string of `v`.
/// Fails on an output the stack does not have.
pub fn substitute(v: &Value, outputs: &BTreeMap<String, String>) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => {
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(i) = rest.find("${") {
                out.push_str(&rest[..i]);
                let after = &rest[i + 2..];
                let end = after
                    .find('}')
                    .ok_or_else(|| format!("unterminated ${{ in `{s}`"))?;
                let name = &after[..end];
                out.push_str(
                    outputs
                        .get(name)
                        .ok_or_else(|| format!("the instance has no output `{name}`"))?,
                );
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            Value::String(out)
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| substitute(x, outputs))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), substitute(x, outputs)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// The IAM statements the broker's role needs for `services` (their `brokerPolicy`), as
/// CloudFormation JSON: every resource ARN becomes an `Fn::Sub` over the pseudo
/// parameters, `${BrokerId}` is the broker id.
/// `boundary_arn` (CloudFormation JSON, e.g. a `Ref`) replaces `${BoundaryArn}`.
pub fn broker_policy(
    catalog: &Catalog,
    services: &[String],
    broker_id: &str,
    boundary_arn: &Value,
) -> Vec<Value> {
    statements(catalog, services, broker_id, |s| &s.broker_policy)
        .into_iter()
        .map(|v| boundary(v, boundary_arn))
        .collect()
}

fn boundary(v: Value, arn: &Value) -> Value {
    match v {
        Value::String(s) if s == "${BoundaryArn}" => arn.clone(),
        Value::Array(a) => Value::Array(a.into_iter().map(|x| boundary(x, arn)).collect()),
        Value::Object(m) => {
            Value::Object(m.into_iter().map(|(k, x)| (k, boundary(x, arn))).collect())
        }
        other => other,
    }
}

/// The permissions boundary of every binding user: the offered services' `bindBoundary`,
/// as CloudFormation JSON like `broker_policy`.
pub fn bind_boundary(catalog: &Catalog, services: &[String], broker_id: &str) -> Vec<Value> {
    statements(catalog, services, broker_id, |s| &s.bind_boundary)
}

fn statements(
    catalog: &Catalog,
    services: &[String],
    broker_id: &str,
    pick: impl Fn(&Service) -> &Vec<Value>,
) -> Vec<Value> {
    fn sub(v: &Value, broker_id: &str) -> Value {
        match v {
            Value::String(s) => {
                let t = s
                    .replace("${BrokerId}", broker_id)
                    .replace("${Partition}", "${AWS::Partition}")
                    .replace("${Region}", "${AWS::Region}")
                    .replace("${AccountId}", "${AWS::AccountId}");
                if t.contains("${AWS::") {
                    json!({"Fn::Sub": t})
                } else {
                    Value::String(t)
                }
            }
            Value::Array(a) => Value::Array(a.iter().map(|x| sub(x, broker_id)).collect()),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, x)| (k.clone(), sub(x, broker_id)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    catalog
        .services
        .iter()
        .filter(|s| services.contains(&s.name))
        .flat_map(|s| pick(s).iter().map(|p| sub(p, broker_id)))
        .collect()
}

/// The stack of one binding: an IAM user under the path `/<brokerId>/` (the only users the
/// broker may manage), bounded by `boundary` (the add-on's permissions boundary: IAM
/// lets the broker create users only with it) and allowed exactly `statements`; its
/// access key, kept in a Secrets Manager secret named after the stack. The only output
/// is the secret's ARN, so `DescribeStacks` (ReadOnlyAccess) never shows a key.
/// AWS::IAM::User PermissionsBoundary:
/// https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-iam-user.html
/// AWS::SecretsManager::Secret (Ref is the ARN):
/// https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-secretsmanager-secret.html
pub fn binding_template(
    service: &str,
    broker_id: &str,
    statements: &[Value],
    boundary: Option<&str>,
) -> Value {
    let mut user = json!({
        "Path": format!("/{broker_id}/"),
        "Policies": [{
            "PolicyName": "binding",
            "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
        }],
    });
    if let Some(b) = boundary {
        user["PermissionsBoundary"] = json!(b);
    }
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("kube-aws service broker binding of a {service} instance"),
        "Resources": {
            "User": {"Type": "AWS::IAM::User", "Properties": user},
            "AccessKey": {
                "Type": "AWS::IAM::AccessKey",
                "Properties": {"UserName": {"Ref": "User"}},
            },
            "Credentials": {
                "Type": "AWS::SecretsManager::Secret",
                "Properties": {
                    "Name": {"Fn::Sub": "${AWS::StackName}-credentials"},
                    "Description": "The access key of a kube-aws service broker binding",
                    "SecretString": {"Fn::Sub":
                        "{\"AccessKeyId\":\"${AccessKey}\",\"SecretAccessKey\":\"${AccessKey.SecretAccessKey}\"}"},
                },
            },
        },
        "Outputs": {
            "CredentialsSecretArn": {"Value": {"Ref": "Credentials"}},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_loads_with_unique_ids() {
        let c = Catalog::load(None).unwrap();
        assert_eq!(c.services.len(), 18, "the seeds' 18 classes");
        let osb = c.osb();
        assert_eq!(osb["services"].as_array().unwrap().len(), c.services.len());
        // OSB 2.17 Input Parameters Schema: each schema declares `$schema`, has no
        // external reference, and stays under 64 kB.
        for s in osb["services"].as_array().unwrap() {
            for p in s["plans"].as_array().unwrap() {
                for path in [
                    "/schemas/service_instance/create/parameters",
                    "/schemas/service_instance/update/parameters",
                    "/schemas/service_binding/create/parameters",
                ] {
                    let schema = p.pointer(path).unwrap();
                    let text = schema.to_string();
                    assert!(schema["$schema"].is_string(), "{} {path}", s["name"]);
                    assert!(!text.contains("$ref") && text.len() < 64 * 1024);
                }
            }
        }
    }

    #[test]
    fn resolves_and_validates_parameters() {
        let c = Catalog::load(None).unwrap();
        let s3 = c.services.iter().find(|s| s.name == "s3").unwrap();
        let prod = s3.plans.iter().find(|p| p.name == "production").unwrap();
        let v = s3.resolve(prod, &Map::new(), false).unwrap();
        assert_eq!(v["EnableVersioning"], "true");
        assert_eq!(v["LogRetentionDays"], "365");
        let mut given = Map::new();
        given.insert("EnableVersioning".into(), json!("false"));
        let e = s3.resolve(prod, &given, false).unwrap_err();
        assert!(e.contains("EnableVersioning"), "{e}");
        let mut given = Map::new();
        given.insert("LogRetentionDays".into(), json!(0));
        assert!(s3.resolve(prod, &given, false).is_err());
        given.insert("LogRetentionDays".into(), json!(30));
        assert_eq!(
            s3.resolve(prod, &given, false).unwrap()["LogRetentionDays"],
            "30"
        );
        let rds = c
            .services
            .iter()
            .find(|s| s.name == "rdspostgresql")
            .unwrap();
        let e = rds.resolve(&rds.plans[0], &Map::new(), false).unwrap_err();
        assert!(e.contains("DBSubnetGroupName"), "{e}");
    }

    #[test]
    fn every_service_says_what_the_broker_needs() {
        let c = Catalog::load(None).unwrap();
        let names: Vec<String> = c.services.iter().map(|s| s.name.clone()).collect();
        for s in &c.services {
            assert!(
                !s.broker_policy.is_empty(),
                "{} has no brokerPolicy",
                s.name
            );
        }
        let p = broker_policy(&c, &["sqs".to_string()], "awsbroker", &json!("b"));
        assert_eq!(
            p[0]["Resource"][0],
            json!({"Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:awsbroker-*"})
        );
        let statements: usize = c.services.iter().map(|s| s.broker_policy.len()).sum();
        assert_eq!(
            broker_policy(&c, &names, "b", &json!("x")).len(),
            statements
        );
        let emr = serde_json::to_string(&broker_policy(
            &c,
            &["emr".to_string()],
            "b",
            &json!({"Ref": "Boundary"}),
        ))
        .unwrap();
        assert!(
            emr.contains(r#""iam:PermissionsBoundary":{"Ref":"Boundary"}"#),
            "{emr}"
        );
        for s in c.services.iter().filter(|s| !s.bind_policy.is_empty()) {
            assert!(
                !s.bind_boundary.is_empty(),
                "{} binds an IAM user but declares no bindBoundary",
                s.name
            );
        }
        // The boundary is one managed policy: IAM allows 6,144 characters.
        // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html
        let boundary =
            serde_json::to_string(&bind_boundary(&c, &names, "kube-aws-broker-0001")).unwrap();
        assert!(boundary.len() < 6144, "{} characters", boundary.len());
        let mut sorted = names.clone();
        sorted.sort();
        let mut known: Vec<String> = crate::config::validate::BROKER_SERVICES
            .iter()
            .map(|s| s.to_string())
            .collect();
        known.sort();
        assert_eq!(
            sorted, known,
            "cluster.yaml accepts exactly the built-in services"
        );
    }

    #[test]
    fn binding_policies_name_only_outputs_and_no_fixed_partition() {
        let c = Catalog::load(None).unwrap();
        for s in &c.services {
            let outputs: BTreeMap<String, String> = s
                .template
                .get("Outputs")
                .and_then(Value::as_object)
                .map(|o| o.keys().map(|k| (k.clone(), "x".to_string())).collect())
                .unwrap_or_default();
            for st in &s.bind_policy {
                assert!(
                    substitute(st, &outputs).is_ok(),
                    "{}: bindPolicy names a missing output: {st}",
                    s.name
                );
                assert!(
                    !st.to_string().contains("arn:aws:"),
                    "{}: a partition written out in {st}",
                    s.name
                );
            }
        }
    }

    #[test]
    fn substitutes_outputs() {
        let o: BTreeMap<String, String> = [("BucketArn".to_string(), "arn:b".to_string())].into();
        assert_eq!(
            substitute(&json!(["${BucketArn}/*"]), &o).unwrap(),
            json!(["arn:b/*"])
        );
        assert!(substitute(&json!("${Nope}"), &o).is_err());
    }
}
