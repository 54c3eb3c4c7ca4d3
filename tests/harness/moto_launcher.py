"""Starts the moto server with the test bed's emulator bridges applied.

EMULATOR BRIDGE, test harness only: product templates follow real AWS and are never
bent to fit moto. Each patch here is listed in tests/README.md.

Bridge 1 (moto 5.2.5): `Fn::GetAtt Child.Outputs.KEY` on an AWS::CloudFormation::Stack
crashes moto, because its nested-stack model class has no get_cfn_attribute. Real
CloudFormation resolves it to the child stack's output KEY; so does this patch.

Bridge 2 (moto 5.2.5): moto knows only a few public SSM parameters (Amazon Linux, ECS),
not Canonical's `/aws/service/canonical/ubuntu/...`, so a template parameter of type
AWS::SSM::Parameter::Value<AWS::EC2::Image::Id> with that default crashes stack creation.
This patch seeds those names, on first use, with one of moto's own AMIs, as AWS would
resolve them to the current Ubuntu AMI.

Bridge 3 (moto 5.2.5): an AWS::EC2::Instance that takes its image and type from a
LaunchTemplate (no ImageId property) crashes moto, which reads only ImageId. EC2 uses the
launch template's values; so does this patch.

Bridge 4 (moto 5.2.5): moto creates every AWS::ElasticLoadBalancingV2::LoadBalancer as an
application load balancer, ignoring `Type: network`, so the TCP listener of a network
load balancer is rejected. This patch passes the Type through.

Bridge 5 (moto 5.2.5): ValidateTemplate runs cfn-lint and answers ValidationError for
any finding, warnings included (e.g. W3010 on an availability zone), with a garbled
message. Real ValidateTemplate rejects only invalid templates; this patch keeps only
cfn-lint errors (rule ids starting with E).

Bridge 6 (moto 5.2.5): CloudFormation SignalResource and Auto Scaling
CompleteLifecycleAction are not implemented (moto answers "not yet implemented"). Real
AWS accepts them; this patch accepts them too and appends each call's parameters as one
JSON line to target/testbed/logs/calls-PORT.jsonl, so the boot rehearsal can assert
which signal a node sent and when a lifecycle action completed.

Bridge 7 (moto 5.2.5): moto has no CloudFormation model for AWS::SecretsManager::Secret
(the resource is skipped, its Ref is empty). Real CloudFormation creates the secret
(SecretString, or GenerateSecretString through GetRandomPassword), Ref is its ARN, and
deleting the stack deletes it without a recovery window. This patch registers a model
that does the same against moto's Secrets Manager backend, so the broker's binding
stacks keep access keys in Secrets Manager on the emulator as on AWS.

Bridge 8 (moto 5.2.5): moto's AWS::EMR::Cluster answers only `Fn::GetAtt Cluster.Id`, and a
template asking for MasterPublicDNS fails validation. Real CloudFormation returns the
primary node's DNS name (AWS::EMR::Cluster return values); this patch returns moto's.
"""

import sys
from collections import defaultdict

import moto
from moto.cloudformation import models as cfn_models
from moto.server import main


def _stack_get_cfn_attribute(self, attribute_name):
    if attribute_name.startswith("Outputs."):
        key = attribute_name[len("Outputs."):]
        for output in self.output_map.values():
            if output and output.key == key:
                return output.value
    from moto.cloudformation.exceptions import UnformattedGetAttTemplateException

    raise UnformattedGetAttTemplateException()


if not hasattr(cfn_models.Stack, "get_cfn_attribute"):
    cfn_models.Stack.get_cfn_attribute = _stack_get_cfn_attribute

from moto.core.utils import utcnow
from moto.ec2.models.amis import AMIS
from moto.ssm import models as ssm_models

_original_check_loading_status = ssm_models.ParameterDict._check_loading_status


def _check_loading_status(self, key):
    _original_check_loading_status(self, key)
    key = str(key or "")
    if key.startswith("/aws/service/canonical/") and not dict.__contains__(self, key):
        ami = AMIS[0]["ami_id"]
        defaultdict.__getitem__(self, key).append(
            ssm_models.Parameter(
                account_id=self.account_id,
                name=key,
                value=ami,
                parameter_type="String",
                description="Seeded by tests/harness/moto_launcher.py (bridge 2)",
                allowed_pattern=None,
                keyid=None,
                last_modified_date=utcnow(),
                version=1,
                data_type="aws:ec2:image",
            )
        )


ssm_models.ParameterDict._check_loading_status = _check_loading_status

from moto.ec2 import ec2_backends
from moto.ec2.models import instances as ec2_instances

_original_instance_create = ec2_instances.Instance.create_from_cloudformation_json.__func__


def _instance_create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
    props = cloudformation_json.get("Properties", {})
    lt = props.get("LaunchTemplate")
    if "ImageId" not in props and lt and lt.get("LaunchTemplateId"):
        template = ec2_backends[account_id][region_name].get_launch_template(lt["LaunchTemplateId"])
        data = template.latest_version().data
        props.setdefault("ImageId", data.get("ImageId"))
        if data.get("InstanceType"):
            props.setdefault("InstanceType", data.get("InstanceType"))
    return _original_instance_create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)


ec2_instances.Instance.create_from_cloudformation_json = classmethod(_instance_create)

from moto.elbv2 import models as elbv2_models


def _lb_create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
    props = cloudformation_json["Properties"]
    return elbv2_models.elbv2_backends[account_id][region_name].create_load_balancer(
        resource_name,
        props.get("SecurityGroups"),
        props.get("Subnets"),
        scheme=props.get("Scheme", "internet-facing"),
        loadbalancer_type=props.get("Type"),
    )


elbv2_models.FakeLoadBalancer.create_from_cloudformation_json = classmethod(_lb_create)

from moto.cloudformation import models as cfn_models_for_validate

_original_validate = cfn_models_for_validate.validate_template_cfn_lint


def _validate_errors_only(template):
    return [m for m in _original_validate(template) if str(getattr(m.rule, "id", "E")).startswith("E")]


cfn_models_for_validate.validate_template_cfn_lint = _validate_errors_only

import json
import os
import time

from moto.autoscaling.responses import AutoScalingResponse
from moto.cloudformation.responses import CloudFormationResponse


def _record(action, params):
    port = sys.argv[sys.argv.index("-p") + 1] if "-p" in sys.argv else "0"
    logs = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "target", "testbed", "logs")
    logs = os.environ.get("KUBE_AWS_TESTBED_LOGS", logs)
    os.makedirs(logs, exist_ok=True)
    with open(os.path.join(logs, f"calls-{port}.jsonl"), "a") as f:
        f.write(json.dumps({"action": action, "time": time.time(), **params}) + "\n")


def _signal_resource(self):
    _record("SignalResource", {k: self._get_param(k) for k in ("StackName", "LogicalResourceId", "UniqueId", "Status")})
    return ('<SignalResourceResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">'
            "<ResponseMetadata><RequestId>kube-aws-bridge-6</RequestId></ResponseMetadata></SignalResourceResponse>")


def _complete_lifecycle_action(self):
    _record("CompleteLifecycleAction", {k: self._get_param(k) for k in (
        "AutoScalingGroupName", "LifecycleHookName", "InstanceId", "LifecycleActionResult")})
    return ('<CompleteLifecycleActionResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">'
            "<CompleteLifecycleActionResult/><ResponseMetadata><RequestId>kube-aws-bridge-6</RequestId>"
            "</ResponseMetadata></CompleteLifecycleActionResponse>")


CloudFormationResponse.signal_resource = _signal_resource
AutoScalingResponse.complete_lifecycle_action = _complete_lifecycle_action

import json as _json

from moto.core.common_models import CloudFormationModel
from moto.secretsmanager.models import secretsmanager_backends


class _CfnSecret(CloudFormationModel):
    # moto's model metaclass takes the service from the module path.
    __module__ = "moto.secretsmanager.kube_aws_bridge"

    def __init__(self, arn, name):
        self.arn = arn
        self.name = name

    @property
    def physical_resource_id(self):
        return self.arn

    @staticmethod
    def cloudformation_name_type():
        return "Name"

    @staticmethod
    def cloudformation_type():
        return "AWS::SecretsManager::Secret"

    @classmethod
    def has_cfn_attr(cls, attr):
        return attr in ("Id",)

    def get_cfn_attribute(self, attribute_name):
        if attribute_name == "Id":
            return self.arn
        raise NotImplementedError(attribute_name)

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        props = cloudformation_json.get("Properties", {})
        backend = secretsmanager_backends[account_id][region_name]
        name = props.get("Name") or resource_name
        value = props.get("SecretString")
        gen = props.get("GenerateSecretString")
        if value is None and gen is not None:
            password = _json.loads(backend.get_random_password(
                password_length=int(gen.get("PasswordLength", 32)),
                exclude_characters=gen.get("ExcludeCharacters", ""),
                exclude_numbers=bool(gen.get("ExcludeNumbers", False)),
                exclude_punctuation=bool(gen.get("ExcludePunctuation", False)),
                exclude_uppercase=bool(gen.get("ExcludeUppercase", False)),
                exclude_lowercase=bool(gen.get("ExcludeLowercase", False)),
                include_space=bool(gen.get("IncludeSpace", False)),
                require_each_included_type=bool(gen.get("RequireEachIncludedType", True)),
            ))["RandomPassword"]
            if gen.get("SecretStringTemplate"):
                doc = _json.loads(gen["SecretStringTemplate"])
                doc[gen.get("GenerateStringKey", "password")] = password
                value = _json.dumps(doc)
            else:
                value = password
        backend.create_secret(
            name=name, secret_string=value, secret_binary=None,
            description=props.get("Description"), tags=props.get("Tags"),
            kms_key_id=props.get("KmsKeyId"), client_request_token=None,
            replica_regions=[], force_overwrite=False)
        return cls(backend.secrets[name].arn, name)

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name):
        backend = secretsmanager_backends[account_id][region_name]
        try:
            backend.delete_secret(resource_name, None, True)
        except Exception:  # already gone: deletion is idempotent, as in CloudFormation
            pass

    def delete(self, account_id, region_name):
        self.delete_from_cloudformation_json(self.arn, {}, account_id, region_name)


from moto.emr import models as emr_models

_emr_cluster = emr_models.Cluster
_emr_has_attr = _emr_cluster.has_cfn_attr.__func__
_emr_get_attr = _emr_cluster.get_cfn_attribute


@classmethod
def _emr_has_cfn_attr(cls, attr):
    return attr == "MasterPublicDNS" or _emr_has_attr(cls, attr)


def _emr_get_cfn_attribute(self, attribute_name):
    if attribute_name == "MasterPublicDNS":
        return self.master_public_dns_name
    return _emr_get_attr(self, attribute_name)


_emr_cluster.has_cfn_attr = _emr_has_cfn_attr
_emr_cluster.get_cfn_attribute = _emr_get_cfn_attribute


if __name__ == "__main__":
    if moto.__version__ != "5.2.5":
        print(f"moto_launcher: bridges were written for moto 5.2.5, found {moto.__version__}", file=sys.stderr)
    main(sys.argv[1:])
