#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine. Idempotent, and quiet
# when nothing is missing.
#   - pinned Python tools (moto server, boto3, cfn-lint, kubernetes-validate, jsonschema)
#     into a venv under the build directory (target/testbed/venv by default);
#   - Debian packages, with apt-get, when missing: etcd-server etcd-client cloud-init shellcheck
#     (and python3 python3-venv openssl curl git, which the tests and the quickstart call).
# Environment: KUBE_AWS_TESTBED overrides the test-bed directory.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
testbed=${KUBE_AWS_TESTBED:-$root/target/testbed}
venv=$testbed/venv
req=$root/scripts/testbed-requirements.txt
stamp=$venv/.requirements.sha256

missing=()
# python3 and python3-venv first: the venv below needs them, and the controllers'
# add-on script (tests/addons.rs) runs with the system python3 as on a node.
for pkg in python3 python3-venv etcd-server etcd-client cloud-init shellcheck openssl curl git; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "testbed: apt-get install ${missing[*]}" >&2
  sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  # policy-rc.d keeps packaged daemons (etcd) from starting: tests start their own on loopback.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

want=$(sha256sum "$req" | cut -d' ' -f1)
if [[ ! -x $venv/bin/python || ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  echo "testbed: installing Python tools into $venv" >&2
  mkdir -p "$testbed"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
fi
