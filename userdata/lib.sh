#!/bin/bash
# kube-aws node library: IMDSv2, the instance role's credentials, and the few AWS calls
# a node makes (S3 GET/PUT, KMS Decrypt, CloudFormation SignalResource, Auto Scaling
# CompleteLifecycleAction), signed with SigV4 by curl (>= 7.75) so no AWS CLI is needed.
# Sourced by the bootstrap scripts; every function fails loudly.

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

# s3_get BUCKET KEY OUT
s3_get() {
  aws_curl s3 "$(s3_url "$1" "$2")" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -o "$3"
}

# s3_put BUCKET KEY FILE
s3_put() {
  aws_curl s3 "$(s3_url "$1" "$2")" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
    -H "x-amz-server-side-encryption: AES256" --upload-file "$3" -o /dev/null
}

# kms_decrypt ENC_FILE OUT CLUSTER FILE_NAME: the context must match the one used to encrypt.
kms_decrypt() {
  local enc=$1 out=$2 cluster=$3 name=$4 body
  body=$(python3 - "$enc" "$cluster" "$name" <<'PY'
import base64, json, sys
blob = base64.b64encode(open(sys.argv[1], "rb").read()).decode()
print(json.dumps({"CiphertextBlob": blob, "EncryptionContext": {"cluster": sys.argv[2], "file": sys.argv[3]}}))
PY
)
  (umask 077 && aws_curl kms "https://kms.$AWS_REGION.amazonaws.com/" \
    -H "Content-Type: application/x-amz-json-1.1" -H "X-Amz-Target: TrentService.Decrypt" \
    --data "$body" | python3 -c 'import base64,json,sys; sys.stdout.buffer.write(base64.b64decode(json.load(sys.stdin)["Plaintext"]))' > "$out")
}

# fetch_secret BUCKET KEY DEST CLUSTER NAME: download a .enc and decrypt it to DEST (0600).
fetch_secret() {
  local tmp
  tmp=$(mktemp)
  s3_get "$1" "$2" "$tmp"
  kms_decrypt "$tmp" "$3" "$4" "$5"
  rm -f "$tmp"
  chmod 0600 "$3"
}

# instance_tag KEY: a tag of this instance (InstanceMetadataTags is enabled).
instance_tag() {
  imds "meta-data/tags/instance/$1"
}

# cfn_signal STATUS: tells CloudFormation this instance is (SUCCESS) or is not (FAILURE) ready.
cfn_signal() {
  local stack resource instance
  stack=$(instance_tag kube-aws:signal-stack)
  resource=$(instance_tag kube-aws:signal-resource)
  instance=$(imds meta-data/instance-id)
  aws_curl cloudformation "https://cloudformation.$AWS_REGION.amazonaws.com/" -o /dev/null \
    --data-urlencode "Action=SignalResource" --data-urlencode "Version=2010-05-15" \
    --data-urlencode "StackName=$stack" --data-urlencode "LogicalResourceId=$resource" \
    --data-urlencode "UniqueId=$instance" --data-urlencode "Status=$1"
}

# complete_lifecycle GROUP HOOK RESULT: lets a terminating instance go.
complete_lifecycle() {
  local instance
  instance=$(imds meta-data/instance-id)
  aws_curl autoscaling "https://autoscaling.$AWS_REGION.amazonaws.com/" -o /dev/null \
    --data-urlencode "Action=CompleteLifecycleAction" --data-urlencode "Version=2011-01-01" \
    --data-urlencode "AutoScalingGroupName=$1" --data-urlencode "LifecycleHookName=$2" \
    --data-urlencode "InstanceId=$instance" --data-urlencode "LifecycleActionResult=$3"
}
