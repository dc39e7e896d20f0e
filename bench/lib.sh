# Shared by the benchmarks: where generated inputs are cached, and how commands are timed.
# Benchmarks print numbers; they never assert them (tests never time anything).
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
CACHE=${ROCI_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/roci-bench}
ROCI=(node "$REPO/dist/cli/main.js")
RUNS=${RUNS:-3}

ensure_built() {
  [ -f "$REPO/dist/cli/main.js" ] || (cd "$REPO" && npm ci --no-audit --no-fund --loglevel=error && npx tsc -p .)
}

# measure LABEL CMD... — runs CMD once to warm the page cache, then RUNS times; sets
# MEASURED_S (median wall seconds) and MEASURED_MB (peak RSS in MB, largest run). stdout discarded.
# With BEFORE set (a shell command), it runs untimed before every run, e.g. to remove an output.
measure() {
  local label=$1; shift
  [ -z "${BEFORE:-}" ] || bash -c "$BEFORE"
  "$@" >/dev/null 2>&1 || true
  local times=() rss=0 i start end kb
  for ((i = 0; i < RUNS; i++)); do
    [ -z "${BEFORE:-}" ] || bash -c "$BEFORE"
    start=$(date +%s%N)
    /usr/bin/time -f '%M' -o "$CACHE/.rss" "$@" >/dev/null 2>"$CACHE/.stderr" || {
      echo "$label failed:" >&2; cat "$CACHE/.stderr" >&2; return 1; }
    end=$(date +%s%N)
    times+=("$(( (end - start) / 1000000 ))")
    kb=$(tail -n1 "$CACHE/.rss"); (( kb > rss )) && rss=$kb
  done
  MEASURED_S=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.3f", a[int((NR+1)/2)]/1000}')
  MEASURED_MB=$(awk -v k="$rss" 'BEGIN {printf "%.0f", k/1024}')
  printf '  %-44s %8.3f s  %6s MB peak RSS\n' "$label" "$MEASURED_S" "$MEASURED_MB"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
