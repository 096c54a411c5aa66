#!/usr/bin/env bash
# awscli-check.sh — drive a running tollgate's admin API with the stock AWS CLI
# (Debian's awscli package), as operators' scripts would:
#   aws ecr put-registry-scanning-configuration / get-registry-scanning-configuration
#   aws ecr describe-repositories / describe-images / list-images
#   aws ecr update-image-storage-class (ARCHIVE, then STANDARD)
#   aws inspector2 list-findings / list-coverage / list-coverage-statistics
# and checks that a wrong secret key is refused.
#
# The AWS CLI signs with SigV4, so tollgate must hold the key pair:
#   TOLLGATE_ADMIN_ACCESS_KEY_ID=… TOLLGATE_ADMIN_SECRET_ACCESS_KEY=… tollgate serve
# and this script gets the same two variables.
#
# Environment:
#   TOLLGATE_ADMIN_URL   admin API (default http://127.0.0.1:5001)
#   TOLLGATE_REGISTRY    registry API, to push a tiny test image (default http://127.0.0.1:5000)
#   TOLLGATE_ADMIN_ACCESS_KEY_ID, TOLLGATE_ADMIN_SECRET_ACCESS_KEY (required)
#   CHECK_REPO           repository to push to (default awscli-check/tiny)
set -euo pipefail

ADMIN="${TOLLGATE_ADMIN_URL:-http://127.0.0.1:5001}"
REGISTRY="${TOLLGATE_REGISTRY:-http://127.0.0.1:5000}"
REPO="${CHECK_REPO:-awscli-check/tiny}"
: "${TOLLGATE_ADMIN_ACCESS_KEY_ID:?set TOLLGATE_ADMIN_ACCESS_KEY_ID (and tollgate must be started with it)}"
: "${TOLLGATE_ADMIN_SECRET_ACCESS_KEY:?set TOLLGATE_ADMIN_SECRET_ACCESS_KEY}"

if ! command -v aws >/dev/null 2>&1; then
  echo "== installing awscli (Debian package)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && $SUDO DEBIAN_FRONTEND=noninteractive apt-get install -y -qq awscli >/dev/null
fi
for tool in curl jq sha256sum; do command -v "$tool" >/dev/null || { echo "missing $tool"; exit 2; }; done
aws --version

export AWS_ACCESS_KEY_ID="$TOLLGATE_ADMIN_ACCESS_KEY_ID"
export AWS_SECRET_ACCESS_KEY="$TOLLGATE_ADMIN_SECRET_ACCESS_KEY"
export AWS_DEFAULT_REGION=us-east-1 AWS_PAGER="" AWS_MAX_ATTEMPTS=1
unset AWS_SESSION_TOKEN AWS_PROFILE
awsc() { aws --endpoint-url "$ADMIN" --output json "$@"; }

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok   $*"; }

# --- push a tiny image (one empty-ish layer) with the OCI distribution API ---
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
push_blob() { # file → digest
  local f=$1 d loc
  d="sha256:$(sha256sum "$f" | cut -d' ' -f1)"
  loc=$(curl -fsS -D - -o /dev/null -X POST "$REGISTRY/v2/$REPO/blobs/uploads/" | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
  [ -n "$loc" ] || fail "no upload location for $REPO"
  case "$loc" in http*) ;; *) loc="$REGISTRY$loc" ;; esac
  case "$loc" in *\?*) loc="$loc&digest=$d" ;; *) loc="$loc?digest=$d" ;; esac
  curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' --data-binary @"$f" "$loc"
  echo "$d"
}
mkdir -p "$work/root/etc"
printf 'ID=alpine\nVERSION_ID=3.19.0\n' > "$work/root/etc/os-release"
tar -C "$work/root" -czf "$work/layer.tgz" etc
layer=$(push_blob "$work/layer.tgz")
diffid="sha256:$(gzip -dc "$work/layer.tgz" | sha256sum | cut -d' ' -f1)"
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["%s"]},"config":{}}' "$diffid" > "$work/config.json"
config=$(push_blob "$work/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%d}]}' \
  "$config" "$(stat -c %s "$work/config.json")" "$layer" "$(stat -c %s "$work/layer.tgz")" > "$work/manifest.json"
curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary @"$work/manifest.json" "$REGISTRY/v2/$REPO/manifests/v1"
mdigest="sha256:$(sha256sum "$work/manifest.json" | cut -d' ' -f1)"
pass "pushed $REPO:v1 ($mdigest)"

# --- ECR ---
awsc ecr put-registry-scanning-configuration --scan-type ENHANCED \
  --rules '[{"scanFrequency":"CONTINUOUS_SCAN","repositoryFilters":[{"filter":"*","filterType":"WILDCARD"}]}]' > "$work/put.json"
[ "$(jq -r '.registryScanningConfiguration.scanType' "$work/put.json")" = ENHANCED ] || fail "put-registry-scanning-configuration: $(cat "$work/put.json")"
pass "ecr put-registry-scanning-configuration"
awsc ecr get-registry-scanning-configuration > "$work/get.json"
[ "$(jq -r '.scanningConfiguration.rules[0].scanFrequency' "$work/get.json")" = CONTINUOUS_SCAN ] || fail "get-registry-scanning-configuration: $(cat "$work/get.json")"
pass "ecr get-registry-scanning-configuration"

awsc ecr describe-repositories > "$work/repos.json"
jq -e --arg r "$REPO" '.repositories[] | select(.repositoryName == $r)' "$work/repos.json" >/dev/null || fail "describe-repositories lacks $REPO"
pass "ecr describe-repositories"

awsc ecr describe-images --repository-name "$REPO" --image-ids imageTag=v1 > "$work/images.json"
got=$(jq -r '.imageDetails[0].imageDigest' "$work/images.json")
[ "$got" = "$mdigest" ] || fail "describe-images digest $got, want $mdigest"
jq -e '.imageDetails[0].imagePushedAt and .imageDetails[0].imageScanStatus.status and .imageDetails[0].imageStatus == "ACTIVE"' "$work/images.json" >/dev/null \
  || fail "describe-images fields: $(cat "$work/images.json")"
pass "ecr describe-images (pushed at $(jq -r '.imageDetails[0].imagePushedAt' "$work/images.json"), scan $(jq -r '.imageDetails[0].imageScanStatus.status' "$work/images.json"))"

awsc ecr list-images --repository-name "$REPO" > "$work/list.json"
jq -e --arg d "$mdigest" '.imageIds[] | select(.imageDigest == $d and .imageTag == "v1")' "$work/list.json" >/dev/null || fail "list-images: $(cat "$work/list.json")"
pass "ecr list-images"

awsc ecr update-image-storage-class --repository-name "$REPO" --image-id imageTag=v1 --target-storage-class ARCHIVE > "$work/arch.json"
[ "$(jq -r .imageStatus "$work/arch.json")" = ARCHIVED ] || fail "archive: $(cat "$work/arch.json")"
awsc ecr describe-images --repository-name "$REPO" --filter imageStatus=ARCHIVED > "$work/archived.json"
[ "$(jq -r '.imageDetails[0].imageStatus' "$work/archived.json")" = ARCHIVED ] || fail "archived listing: $(cat "$work/archived.json")"
awsc ecr update-image-storage-class --repository-name "$REPO" --image-id imageDigest="$mdigest" --target-storage-class STANDARD > "$work/restore.json"
[ "$(jq -r .imageStatus "$work/restore.json")" = ACTIVE ] || fail "restore: $(cat "$work/restore.json")"
pass "ecr update-image-storage-class ARCHIVE → STANDARD"

# --- Inspector ---
awsc inspector2 list-findings --max-results 10 > "$work/findings.json"
jq -e '.findings | type == "array"' "$work/findings.json" >/dev/null || fail "list-findings: $(cat "$work/findings.json")"
pass "inspector2 list-findings ($(jq '.findings | length' "$work/findings.json") on the first page)"
awsc inspector2 list-findings --filter-criteria '{"ecrImageRepositoryName":[{"comparison":"EQUALS","value":"'"$REPO"'"}],"severity":[{"comparison":"EQUALS","value":"CRITICAL"},{"comparison":"EQUALS","value":"HIGH"}]}' \
  --sort-criteria field=SEVERITY,sortOrder=DESC > /dev/null || fail "list-findings with filter criteria"
pass "inspector2 list-findings --filter-criteria --sort-criteria"

awsc inspector2 list-coverage --filter-criteria '{"ecrRepositoryName":[{"comparison":"EQUALS","value":"'"$REPO"'"}]}' > "$work/cov.json"
jq -e --arg d "$mdigest" '.coveredResources[] | select(.resourceType == "AWS_ECR_CONTAINER_IMAGE" and (.resourceId | endswith($d)))' "$work/cov.json" >/dev/null \
  || fail "list-coverage lacks the image: $(cat "$work/cov.json")"
pass "inspector2 list-coverage"
awsc inspector2 list-coverage-statistics --group-by SCAN_STATUS_REASON > "$work/stats.json"
jq -e '.totalCounts >= 1' "$work/stats.json" >/dev/null || fail "list-coverage-statistics: $(cat "$work/stats.json")"
pass "inspector2 list-coverage-statistics"

# --- a wrong secret is refused ---
if AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY}x" aws --endpoint-url "$ADMIN" inspector2 list-findings >/dev/null 2>"$work/err"; then
  fail "a wrong secret key was accepted"
fi
pass "wrong secret refused ($(head -c 120 "$work/err" | tr '\n' ' '))"
echo "awscli-check: all checks passed"
