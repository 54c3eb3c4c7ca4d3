"""Extracts the shell scripts of rendered cloud-configs so shellcheck can check them.

Usage: extract_scripts.py OUT_DIR CLOUD_CONFIG...
Writes every write_files entry whose content starts with "#!" and every bootcmd/runcmd
`bash -c SCRIPT` body to OUT_DIR, and prints the paths written.
"""

import os
import sys

import yaml


def main(argv):
    out = argv[1]
    os.makedirs(out, exist_ok=True)
    for path in argv[2:]:
        with open(path) as fh:
            doc = yaml.safe_load(fh)
        base = os.path.basename(path).rsplit(".", 1)[0]
        for i, f in enumerate(doc.get("write_files") or []):
            content = f.get("content", "")
            if content.startswith("#!"):
                name = f"{base}--{os.path.basename(f['path'])}.sh"
                with open(os.path.join(out, name), "w") as fh:
                    fh.write(content)
                print(os.path.join(out, name))
        for stage in ("bootcmd", "runcmd"):
            for i, cmd in enumerate(doc.get(stage) or []):
                if isinstance(cmd, list) and len(cmd) >= 3 and cmd[0] == "bash" and cmd[1] == "-c":
                    name = f"{base}--{stage}-{i}.sh"
                    with open(os.path.join(out, name), "w") as fh:
                        fh.write("#!/bin/bash\n" + cmd[2])
                    print(os.path.join(out, name))


if __name__ == "__main__":
    main(sys.argv)
