#!/usr/bin/env bash
# Planner and state store alone: 10,000 source contacts x 1,000 target users,
# pinned to one core. Prints wall times and peak resident memory.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build >/dev/null
exec taskset -c 0 build/bench/planner_bench "$@"
