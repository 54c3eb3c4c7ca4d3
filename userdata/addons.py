"""kube-aws add-ons on a controller: splits the bundle into what kubectl applies.

Run by /opt/kube-aws/bin/addons (the kube-aws-addons timer); the bundle is rendered by
`kube-aws render stack` (src/addons) and holds no plaintext secret.

  addons.py split BUNDLE DIR    writes DIR/first.json (namespaces and CRDs), DIR/crds.txt
                                (the CRDs to wait for), DIR/manifests.json (the rest, in
                                order) and DIR/fills.list ("FILE S3KEY" per ciphertext)
  addons.py secrets BUNDLE DIR  prints the Secrets as a List, completed with the
                                plaintext the caller decrypted into DIR/plain/FILE
"""

import base64
import json
import os
import sys


def as_list(items):
    return {"apiVersion": "v1", "kind": "List", "items": items}


def write(path, doc):
    with open(path, "w") as fh:
        json.dump(doc, fh, sort_keys=True)


def split(bundle, out):
    write(os.path.join(out, "first.json"), as_list(bundle["first"]))
    write(os.path.join(out, "manifests.json"), as_list(bundle["manifests"]))
    with open(os.path.join(out, "crds.txt"), "w") as fh:
        for doc in bundle["first"]:
            if doc["kind"] == "CustomResourceDefinition":
                fh.write("customresourcedefinition/" + doc["metadata"]["name"] + "\n")
    seen = set()
    with open(os.path.join(out, "fills.list"), "w") as fh:
        for secret in bundle["secrets"]:
            for fill in secret["fill"].values():
                if fill["file"] not in seen:
                    seen.add(fill["file"])
                    fh.write(fill["file"] + " " + fill["key"] + "\n")


def secrets(bundle, out):
    items = []
    for secret in bundle["secrets"]:
        obj = secret["object"]
        for data_key, fill in sorted(secret["fill"].items()):
            with open(os.path.join(out, "plain", fill["file"]), "rb") as fh:
                value = fh.read()
            if fill.get("trim"):
                value = value.rstrip()
            obj.setdefault("data", dict())[data_key] = base64.b64encode(value).decode()
        items.append(obj)
    json.dump(as_list(items), sys.stdout, sort_keys=True)


def main(argv):
    if len(argv) != 4 or argv[1] not in ("split", "secrets"):
        sys.exit(__doc__)
    with open(argv[2]) as fh:
        bundle = json.load(fh)
    (split if argv[1] == "split" else secrets)(bundle, argv[3])


if __name__ == "__main__":
    main(sys.argv)
