#!/usr/bin/env bash
# Quickstart, no AWS account needed: build kube-aws, start the local AWS emulator (moto,
# loopback only), create a bucket and a KMS key in it, then run the whole workflow:
#   init → render credentials → render stack → validate → up → status
# in target/quickstart/demo, and print what was created. The emulator is stopped on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
scripts/testbed-setup.sh
# A cold build takes several minutes: cargo's own lines show its progress.
echo "building kube-aws (a cold build compiles the AWS SDK crates: several minutes)" >&2
cargo build --locked
bin=${CARGO_TARGET_DIR:-$root/target}/debug/kube-aws
py=$root/target/testbed/venv/bin/python
demo=$root/target/quickstart/demo
rm -rf "$demo"
mkdir -p "$demo" "$root/target/testbed/logs"

port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$py" tests/harness/moto_launcher.py -H 127.0.0.1 -p "$port" > "$root/target/testbed/logs/quickstart-moto.log" 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null || true' EXIT
export AWS_ENDPOINT_URL=http://localhost:$port AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
  AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
for _ in $(seq 100); do curl -fs -o /dev/null "$AWS_ENDPOINT_URL/moto-api/" && break; sleep 0.1; done
started=$(date +%s)

key_arn=$("$py" - <<'PY'
import boto3
boto3.client("s3").create_bucket(Bucket="kube-aws-quickstart")
print(boto3.client("kms").create_key(Description="kube-aws quickstart")["KeyMetadata"]["Arn"])
PY
)
printf 'Local AWS emulator on %s: bucket kube-aws-quickstart, KMS key %s\n' "$AWS_ENDPOINT_URL" "$key_arn"

step() { printf '\n\033[1m$ %s\033[0m\n' "${*/#$bin/kube-aws}"; "$@"; }

step "$bin" --dir "$demo" init \
  --cluster-name demo --region us-east-1 \
  --availability-zone us-east-1a,us-east-1b \
  --external-dns-name k8s.demo.example.com --no-record-set \
  --kms-key-arn "$key_arn" --s3-uri s3://kube-aws-quickstart/clusters
step "$bin" --dir "$demo" render credentials --generate-ca
step "$bin" --dir "$demo" render stack
step "$bin" --dir "$demo" validate
step "$bin" --dir "$demo" up
step "$bin" --dir "$demo" status

printf '\nQuickstart done in %ss after the build; the cluster directory is %s.\n' "$(( $(date +%s) - started ))" "$demo"
