#!/usr/bin/env bash
# What sealing the state costs the planner (issue 10: under 10% on the
# 10,000 x 1,000 plan, nothing changed and 1% changed). Builds
# bench/planner_bench at the last commit before the sealed state and at the
# working tree, then runs them in turn, pinned to one core, ROUNDS times
# each (default 3), and prints each case's median and the ratio.
# The sealed store also fixed a query plan (adoption's lookup of a book's
# unmanaged items walked the whole book without INDEXED BY); the baseline
# gets the same one-line fix, so that the ratio is the cost of sealing alone.
#   bench/sealing_overhead.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
base_commit=6bac6fb  # the state in the clear (schema 4)
base=/tmp/roster-bench-unsealed
if [ ! -x "$base/build/bench/planner_bench" ] || ! cmp -s <(sed -e 's|OpenSqliteStateStore(db, key)|OpenSqliteStateStore(db)|' -e '/const crypto::Key key = crypto::GenerateKey();/d' bench/planner_bench.cc) "$base/bench/planner_bench.cc"; then
  rm -rf "$base"
  git worktree prune
  git worktree add --detach "$base" "$base_commit" >/dev/null
  sed -i 's|"WHERE collection_id = ? AND key IS NULL AND match|"INDEXED BY items_unmanaged WHERE collection_id = ? AND key IS NULL AND match|' \
    "$base/src/state/sqlite_state.cc"
  grep -q "INDEXED BY items_unmanaged" "$base/src/state/sqlite_state.cc"
  # The same benchmark code as today's, on the old store's API.
  sed -e 's|OpenSqliteStateStore(db, key)|OpenSqliteStateStore(db)|' \
      -e '/const crypto::Key key = crypto::GenerateKey();/d' \
      bench/planner_bench.cc >"$base/bench/planner_bench.cc"
  ! grep -q "crypto::" "$base/bench/planner_bench.cc"
  cmake -S "$base" -B "$base/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  ninja -C "$base/build" planner_bench >/dev/null
fi
scripts/build >/dev/null
# The same allocator for both: today's build links tcmalloc (docs/dependencies.md),
# the baseline predates it and gets it preloaded, so the ratio is sealing alone.
preload=$(ldd build/bench/planner_bench | awk '/libtcmalloc/ {print $3}')
out=$(mktemp -d)
for r in $(seq 1 "$rounds"); do
  for which in unsealed sealed; do
    bin=build/bench/planner_bench
    [ "$which" = unsealed ] && bin=$base/build/bench/planner_bench
    if [ "$which" = unsealed ] && [ -n "$preload" ]; then
      LD_PRELOAD=$preload taskset -c 0 "$bin" --db "/tmp/roster-bench-$which.db" >"$out/$which.$r"
    else
      taskset -c 0 "$bin" --db "/tmp/roster-bench-$which.db" >"$out/$which.$r"
    fi
    echo "round $r, $which:"
    sed 's/^/  /' "$out/$which.$r"
  done
done
python3 - "$out" "$rounds" <<'PY'
import re, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
cases = ["setup", "plan, nothing changed:", "plan, 1% of the source changed:",
         "plan, 1% changed, full comparison:"]
def times(which):
    found = {c: [] for c in cases}
    for r in range(1, rounds + 1):
        for line in open(f"{out}/{which}.{r}"):
            for c in cases:
                if line.startswith(c):
                    m = re.search(r"([0-9.]+) s", line[len(c):])
                    found[c].append(float(m.group(1)))
    return {c: statistics.median(v) for c, v in found.items() if v}
u, s = times("unsealed"), times("sealed")
print(f"\nmedian of {rounds} rounds (seconds):")
print(f"{'case':<40} {'in the clear':>12} {'sealed':>8} {'ratio':>7}")
for c in cases:
    if c in u and c in s:
        print(f"{c:<40} {u[c]:>12.2f} {s[c]:>8.2f} {s[c] / u[c]:>7.3f}")
PY
rm -rf "$out"
