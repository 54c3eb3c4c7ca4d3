"""Checks rendered add-on manifests without an API server.

1. Every CustomResourceDefinition schema is structural, as apiextensions.k8s.io/v1
   requires: each node has a type (or preserves unknown fields), no node mixes
   additionalProperties with properties, metadata is not constrained beyond name.
2. Each custom resource given (from the manifests and from extra files) validates
   against the schema of its CRD's served version, with a real JSON Schema validator.

Usage: check_crds.py MANIFESTS.yaml [EXTRA_CR.yaml ...] [--expect-invalid BAD.yaml ...]
Prints one line per checked object; exits 1 on any problem.
"""
import sys

import jsonschema
import yaml


def structural(node, path, problems):
    if not isinstance(node, dict):
        return
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    if "type" not in node and not preserve and "x-kubernetes-int-or-string" not in node:
        problems.append(f"{path}: no type")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{path}: properties and additionalProperties together")
    for k, v in node.get("properties", {}).items():
        structural(v, f"{path}.{k}", problems)
    if isinstance(node.get("items"), dict):
        structural(node["items"], f"{path}[]", problems)


def main(argv):
    invalid_mode = False
    files, bad = [], []
    for a in argv[1:]:
        if a == "--expect-invalid":
            invalid_mode = True
        elif invalid_mode:
            bad.append(a)
        else:
            files.append(a)
    docs = [d for f in files for d in yaml.safe_load_all(open(f)) if d]
    schemas, problems = {}, []
    for d in docs:
        if d.get("kind") != "CustomResourceDefinition":
            continue
        spec = d["spec"]
        for v in spec["versions"]:
            s = v["schema"]["openAPIV3Schema"]
            structural(s, f"{d['metadata']['name']}/{v['name']}", problems)
            meta = s.get("properties", {}).get("metadata", {})
            if set(meta) - {"type"}:
                problems.append(f"{d['metadata']['name']}: metadata constrained: {meta}")
            if v.get("served"):
                schemas[(f"{spec['group']}/{v['name']}", spec["names"]["kind"])] = s
    print(f"{len(schemas)} CRD schemas, structural")
    checked = 0
    for d in docs:
        key = (d.get("apiVersion"), d.get("kind"))
        if key in schemas:
            try:
                jsonschema.validate(d, schemas[key])
                checked += 1
                print(f"valid: {d['kind']}/{d['metadata']['name']}")
            except jsonschema.ValidationError as e:
                problems.append(f"{d['kind']}/{d['metadata'].get('name')}: {e.message}")
    for f in bad:
        for d in yaml.safe_load_all(open(f)):
            key = (d.get("apiVersion"), d.get("kind"))
            try:
                jsonschema.validate(d, schemas[key])
                problems.append(f"{f}: {d['kind']} should be invalid")
            except (jsonschema.ValidationError, KeyError) as e:
                print(f"rejected as expected: {d['kind']}: {getattr(e, 'message', e)}")
    print(f"{checked} custom resources valid")
    for p in problems:
        print("PROBLEM", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
