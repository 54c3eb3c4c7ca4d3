#!/bin/bash
# kube-aws shell library of the etcd snapshot script (run by SSM Run Command): IMDSv2,
# the instance role's credentials and S3 calls signed with SigV4 by curl (>= 7.75), so no
# AWS CLI is needed. Everything else a node does is `kube-aws node` (src/node).
# Every function fails loudly.

IMDS=http://169.254.169.254/latest

imds_token() {
  curl -fsS -X PUT "$IMDS/api/token" -H "X-aws-ec2-metadata-token-ttl-seconds: 300"
}

# imds PATH: one metadata value, e.g. `imds meta-data/instance-id`.
imds() {
  local token
  token=$(imds_token)
  curl -fsS -H "X-aws-ec2-metadata-token: $token" "$IMDS/$1"
}

# Exports AWS_REGION, AK, SK and ST from the instance role.
aws_credentials() {
  local role creds
  AWS_REGION=$(imds meta-data/placement/region)
  role=$(imds meta-data/iam/security-credentials/)
  creds=$(imds "meta-data/iam/security-credentials/$role")
  AK=$(printf '%s' "$creds" | python3 -c 'import json,sys; print(json.load(sys.stdin)["AccessKeyId"])')
  SK=$(printf '%s' "$creds" | python3 -c 'import json,sys; print(json.load(sys.stdin)["SecretAccessKey"])')
  ST=$(printf '%s' "$creds" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Token"])')
  export AWS_REGION AK SK ST
}

# aws_curl SERVICE URL [curl args...]: a SigV4-signed request with the role's credentials.
aws_curl() {
  local service=$1 url=$2
  shift 2
  curl -fsS --retry 5 --retry-all-errors --retry-delay 2 \
    --aws-sigv4 "aws:amz:$AWS_REGION:$service" --user "$AK:$SK" \
    -H "x-amz-security-token: $ST" "$@" "$url"
}

s3_url() {
  local bucket=$1 key=$2
  if [[ $bucket == *.* ]]; then
    printf 'https://s3.%s.amazonaws.com/%s/%s' "$AWS_REGION" "$bucket" "$key"
  else
    printf 'https://%s.s3.%s.amazonaws.com/%s' "$bucket" "$AWS_REGION" "$key"
  fi
}

# s3_put BUCKET KEY FILE
s3_put() {
  aws_curl s3 "$(s3_url "$1" "$2")" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
    -H "x-amz-server-side-encryption: AES256" --upload-file "$3" -o /dev/null
}
