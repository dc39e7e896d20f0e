#!/usr/bin/env bash
# The whole test suite from a clean clone: installs what the tests need (Debian packages when
# missing, npm packages), then type-checks, lints and runs every test. .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# Peer tools the tests use as real producers and consumers of layouts, and the read-only proofs'
# tools (mount, setpriv from util-linux; strace).
declare -A debian_package=(
  [skopeo]=skopeo [umoci]=umoci [docker-registry]=docker-registry [strace]=strace
  [openssl]=openssl [zstd]=zstd [setpriv]=util-linux [mount]=mount [python3]=python3
  [mmdebstrap]=mmdebstrap
)
missing=()
for tool in "${!debian_package[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${debian_package[$tool]}")
done
# libzstd's headers let `npm ci` build the zstd encoder addon (native/zstd.c).
if ! { command -v pkg-config >/dev/null && pkg-config --exists libzstd; }; then missing+=(pkg-config libzstd-dev); fi
if ((${#missing[@]} > 0)); then
  echo "== installing Debian packages: ${missing[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "== npm ci" >&2
npm ci --no-audit --no-fund --loglevel=error

echo "== type check and build (tsc)" >&2
npx tsc -p tsconfig.json

echo "== lint and format check (biome)" >&2
npx biome ci --colors=off .

# The Debian minbase image (mmdebstrap + umoci, built once into ~/.cache/roci-bench) is part of the
# unpack comparison against umoci; set ROCI_TEST_DEBIAN=0 to skip it where no Debian mirror is reachable.
export ROCI_TEST_DEBIAN=${ROCI_TEST_DEBIAN:-1}

echo "== tests (node:test)" >&2
mapfile -t tests < <(find dist -name '*.test.js' | sort)
node --test --test-concurrency=2 "${tests[@]}"
