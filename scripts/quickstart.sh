#!/usr/bin/env bash
# Quickstart, no AWS account needed: build kube-aws, write a cluster with `init` into
# target/quickstart/demo, and `validate` it. Later stages of the workflow (render, up on
# the local emulator) join this script as they land.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
cargo build --locked --quiet
bin=$root/target/debug/kube-aws
demo=$root/target/quickstart/demo
rm -rf "$demo"
mkdir -p "$demo"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step "$bin" --dir "$demo" init \
  --cluster-name demo --region us-east-1 \
  --availability-zone us-east-1a,us-east-1b \
  --external-dns-name k8s.demo.example.com --no-record-set \
  --kms-key-arn arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000 \
  --s3-uri s3://kube-aws-quickstart/clusters
step "$bin" --dir "$demo" validate

printf '\nCreated in %s:\n' "$demo"
ls -A "$demo" | sed 's/^/  /'
