#!/usr/bin/env bash
# The README's first command: inspect and verify the bundled example layout, opened read-only.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f dist/cli/main.js ] || npx tsc -p tsconfig.json
roci() { printf '\n$ roci %s\n' "$*"; node dist/cli/main.js "$@"; }
layout=examples/hello-layout
roci --read-only ls "$layout"
roci --read-only inspect "oci-layout://$layout"
roci --read-only inspect --platform linux/arm64/v8 "oci-layout://$layout:latest"
roci --read-only digest "$layout:v1"
roci --read-only verify "$layout"
