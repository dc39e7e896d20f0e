#!/usr/bin/env bash
# Rebuilds examples/hello-layout, the small OCI layout the README's first command inspects:
# tag "latest" is a linux/amd64 + linux/arm64/v8 image index and tag "v1" a single image, both made
# by umoci and skopeo through the test fixture recipe (deterministic: SOURCE_DATE_EPOCH is pinned).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bash "$here/../test/fixtures/make-fixtures.sh" "$work/fixtures" >/dev/null
rm -rf "$here/hello-layout"
skopeo copy -q --all "oci:$work/fixtures/multi:multi" "oci:$here/hello-layout:latest"
skopeo copy -q "oci:$work/fixtures/single:v1" "oci:$here/hello-layout:v1"
chmod -R a+rX,go-w "$here/hello-layout"
