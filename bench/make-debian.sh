#!/usr/bin/env bash
# Builds (once) a Debian bookworm minbase image with mmdebstrap and umoci, cached outside the
# repository: the "Debian fixture" of the layer benchmarks and of the unpack comparison test.
# Recipe adapted from the team's shared fixtures (a); reproducible for a given archive state.
# Prints the layout path. Needs root, mmdebstrap, umoci and the Debian mirror of apt's sources.
source "$(dirname "$0")/lib.sh"
export SOURCE_DATE_EPOCH=1700000000
DEBIAN=$CACHE/debian
if [ -f "$DEBIAN/.complete" ]; then echo "$DEBIAN"; exit 0; fi
for tool in mmdebstrap umoci; do command -v $tool >/dev/null || { echo "needs $tool (apt-get install $tool)" >&2; exit 1; }; done
MIRROR=${MIRROR:-$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)}
mkdir -p "$CACHE"
work=$(mktemp -d "$CACHE/.debian.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "== building the Debian minbase image in $DEBIAN (once; a minute or two)" >&2
mmdebstrap --mode=root --format=tar --skip=output/dev --variant=minbase \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  bookworm "$work/rootfs.tar" "$MIRROR" 2>"$work/mmdebstrap.log" || { cat "$work/mmdebstrap.log" >&2; exit 1; }
umoci init --layout "$work/debian"
umoci new --image "$work/debian:bookworm"
umoci raw add-layer --image "$work/debian:bookworm" --history.created 2023-11-14T22:13:20Z "$work/rootfs.tar"
umoci config --image "$work/debian:bookworm" --no-history --created 2023-11-14T22:13:20Z \
  --architecture amd64 --os linux --config.cmd /bin/bash
umoci gc --layout "$work/debian"
chmod -R a+rX "$work/debian"
rm -rf "$DEBIAN"
mv "$work/debian" "$DEBIAN"
touch "$DEBIAN/.complete"
echo "$DEBIAN"
