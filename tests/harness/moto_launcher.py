"""Starts the moto server with the test bed's emulator bridges applied.

EMULATOR BRIDGE, test harness only: product templates follow real AWS and are never
bent to fit moto. Each patch here is listed in tests/README.md.

Bridge 1 (moto 5.2.5): `Fn::GetAtt Child.Outputs.KEY` on an AWS::CloudFormation::Stack
crashes moto, because its nested-stack model class has no get_cfn_attribute. Real
CloudFormation resolves it to the child stack's output KEY; so does this patch.
"""

import sys

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

if __name__ == "__main__":
    if moto.__version__ != "5.2.5":
        print(f"moto_launcher: bridges were written for moto 5.2.5, found {moto.__version__}", file=sys.stderr)
    main(sys.argv[1:])
