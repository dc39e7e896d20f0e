#!/usr/bin/env bash
# Builds (once) the benchmark image, cached outside the repository: an OCI layout made by umoci
# with a 1 GiB pseudo-random layer and a layer of 50,000 small files, tag "large", its blobs read-only
# as Bazel leaves its outputs; and a second
# layout sharing its blobs whose index.json has 10,000 tagged entries. Recipe adapted from the
# team's shared fixtures (deterministic: fixed seeds and SOURCE_DATE_EPOCH).
source "$(dirname "$0")/lib.sh"
export SOURCE_DATE_EPOCH=1700000000
LARGE=$CACHE/large
MANY=$CACHE/many-tags
if [ -f "$LARGE/.complete" ] && [ -f "$MANY/.complete" ]; then
  chmod a-w "$LARGE"/blobs/sha256/*   # blobs read-only, as Bazel leaves its outputs (idempotent)
  exit 0
fi
for tool in umoci openssl python3 tar; do command -v $tool >/dev/null || { echo "bench needs $tool" >&2; exit 1; }; done
mkdir -p "$CACHE"
work=$(mktemp -d "$CACHE/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "== generating the benchmark image in $CACHE (once; about a minute)" >&2
mkdir -p "$work/rnd/data"
( set +o pipefail
  openssl enc -aes-256-ctr -pbkdf2 -iter 1 -nosalt -pass pass:roci-bench -in /dev/zero 2>/dev/null \
    | head -c 1073741824 > "$work/rnd/data/random-1g.bin" )
python3 - "$work/small/smallfiles" <<'PY'
import os, sys, random
root = sys.argv[1]; rng = random.Random(20231114)
for d in range(100):
    dp = os.path.join(root, 'd%03d' % d); os.makedirs(dp)
    for f in range(500):
        with open(os.path.join(dp, 'f%05d.bin' % (d * 500 + f)), 'wb') as fh:
            fh.write(rng.randbytes(rng.randint(1, 4096)))
PY
flags=(--sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner --format=pax
  --pax-option=delete=atime,delete=ctime)
tar "${flags[@]}" -C "$work/rnd" -cf "$work/random.tar" data
tar "${flags[@]}" -C "$work/small" -cf "$work/smallfiles.tar" smallfiles
rm -rf "$LARGE" "$MANY"
umoci init --layout "$work/large"
umoci new --image "$work/large:large"
umoci raw add-layer --image "$work/large:large" --history.created 2023-11-14T22:13:20Z "$work/random.tar"
umoci raw add-layer --image "$work/large:large" --history.created 2023-11-14T22:13:20Z "$work/smallfiles.tar"
umoci config --image "$work/large:large" --no-history --created 2023-11-14T22:13:20Z --architecture amd64 --os linux
umoci gc --layout "$work/large"
chmod -R a+rX "$work/large"
chmod a-w "$work/large"/blobs/sha256/*
mv "$work/large" "$LARGE"
touch "$LARGE/.complete"
# many-tags: the same blobs, 10,000 index.json entries (tag-00000 … tag-09999) naming one manifest.
mkdir -p "$MANY"
cp "$LARGE/oci-layout" "$MANY/"
ln -s "$LARGE/blobs" "$MANY/blobs"
python3 - "$LARGE/index.json" "$MANY/index.json" <<'PY'
import json, sys
index = json.load(open(sys.argv[1]))
entry = index["manifests"][0]
entries = []
for n in range(10000):
    e = dict(entry); e["annotations"] = {"org.opencontainers.image.ref.name": "tag-%05d" % n}
    entries.append(e)
index["manifests"] = entries
json.dump(index, open(sys.argv[2], "w"))
PY
touch "$MANY/.complete"
