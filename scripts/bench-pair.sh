#!/usr/bin/env bash
# Two builds of rtscore side by side on the path users run (docs/benchmarks.md, "`--job all`:
# shared buffers and the allocator"): both replay the same file at once, one per core (cores
# swapped every round), so a noisy neighbour slows both alike; prints each run's CPU seconds
# (user + sys) and the ratio NEW/OLD per round, then the median ratio and the median over
# pairs of rounds (each pair runs NEW once on either core, so a slower core cancels out).
#
#   scripts/bench-pair.sh OLD_BIN NEW_BIN
#
# The workload is the parse_path bench's, kept in RTSCORE_BENCH_WORKLOAD_DIR (events.jsonl and
# scenarios/): `RTSCORE_BENCH_WORKLOAD_DIR=DIR cargo bench -p rtscore --bench parse_path` writes
# it. RTSCORE_BENCH_ROUNDS sets the rounds (6), RTSCORE_BENCH_JOB the job (`all`).
# RTSCORE_BENCH_NEW_SCENARIOS=DIR gives NEW other scenario documents (OLD keeps the workload's):
# with one binary twice, the cost of a config, say declared features.
set -euo pipefail
if [ $# -ne 2 ]; then
  sed -n '2,14s/^# \{0,1\}//p' "$0" >&2
  exit 2
fi
old="$1" new="$2"
dir="${RTSCORE_BENCH_WORKLOAD_DIR:?set RTSCORE_BENCH_WORKLOAD_DIR to the parse_path workload (see --help)}"
rounds="${RTSCORE_BENCH_ROUNDS:-6}" job="${RTSCORE_BENCH_JOB:-all}"
old_scenarios="$dir/scenarios" new_scenarios="${RTSCORE_BENCH_NEW_SCENARIOS:-$dir/scenarios}"
for f in "$dir/events.jsonl" "$old_scenarios" "$new_scenarios" "$old" "$new"; do
  [ -e "$f" ] || { echo "bench-pair: $f does not exist" >&2; exit 2; }
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# CPU seconds of one replay by binary $1 of scenarios $4 on core $2, into file $3.
replay() {
  local TIMEFORMAT='%U %S'
  { time env -u MONGODB_URL -u REDIS_URL -u KAFKA_SERVERS taskset -c "$2" "$1" run --job "$job" \
      --events-file "$dir/events.jsonl" --scenarios-dir "$4" --jsonl-out /dev/null --view off \
      >/dev/null 2>&1; } 2> "$3"
}
printf '%-6s %10s %10s %8s\n' round old_cpu_s new_cpu_s new/old
for r in $(seq "$rounds"); do
  a=$(( r % 2 )) b=$(( (r + 1) % 2 ))
  replay "$old" "$a" "$work/old" "$old_scenarios" & replay "$new" "$b" "$work/new" "$new_scenarios" & wait
  o=$(awk '{print $1 + $2}' "$work/old") n=$(awk '{print $1 + $2}' "$work/new")
  echo "$o $n" >> "$work/rows"
  printf '%-6s %10s %10s %8s\n' "$r" "$o" "$n" "$(python3 -c "print(f'{$n / $o:.3f}')")"
done
python3 - "$work/rows" <<'PY'
import statistics, sys
rows = [tuple(map(float, l.split())) for l in open(sys.argv[1])]
ratios = [n / o for o, n in rows]
print(f"median new/old: {statistics.median(ratios):.3f} over {len(rows)} rounds")
# Odd rounds run NEW on core 0, even ones on core 1: a pair's geometric mean cancels a core
# that is slower than the other for the whole set.
pairs = [(ratios[i] * ratios[i + 1]) ** 0.5 for i in range(0, len(ratios) - 1, 2)]
if pairs:
    print(f"median of round pairs (cores swapped within each): {statistics.median(pairs):.3f} over {len(pairs)} pairs")
PY
