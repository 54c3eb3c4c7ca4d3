"""Checks that a JSON Schema is itself valid, then validates YAML files against it.

Usage: check_schema.py SCHEMA.json FILE.yaml...
Prints one line per file and exits 1 if any file (or the schema) is invalid.
"""

import json
import sys

import jsonschema
import yaml


def main(argv):
    with open(argv[1]) as fh:
        schema = json.load(fh)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema)
    bad = 0
    for path in argv[2:]:
        with open(path) as fh:
            doc = yaml.safe_load(fh)
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
        if errors:
            bad += 1
            for e in errors:
                print(f"{path}: {'/'.join(map(str, e.path))}: {e.message}")
        else:
            print(f"{path}: valid against {cls.__name__}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
