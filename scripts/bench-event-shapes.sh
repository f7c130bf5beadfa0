#!/usr/bin/env bash
# What a platform's own event shape costs on the path users run (docs/benchmarks.md, "Event
# field mapping"): the same events in three shapes (canonical; the seed's `timestamp` in epoch
# seconds; nested and renamed), each replayed by the release binary pinned to one core, medians
# of three alternated runs, printed as a table. RTSCORE_BENCH_EVENTS sets the count (1,000,000).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
prepare_build_env release
cargo build --release -q -p rtscore
bin="$CARGO_TARGET_DIR/release/rtscore"
events="${RTSCORE_BENCH_EVENTS:-1000000}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 - "$work" "$events" <<'EOF'
import random, sys
work, n = sys.argv[1], int(sys.argv[2])
random.seed(7)
t0 = 1767225600000
actions = ["view", "click", "like", "purchase", "impression"]
scenarios = [("shop", "home"), ("video", "feed"), ("shop", "search"), ("news", "trending")]
with open(f"{work}/canonical.jsonl", "w") as a, open(f"{work}/seed.jsonl", "w") as b, open(f"{work}/nested.jsonl", "w") as c:
    for i in range(n):
        t, s = scenarios[i % 4]
        u, it, ac, ts = f"u{random.randrange(50000)}", f"i{random.randrange(100000)}", random.choice(actions), t0 + i * 7
        a.write(f'{{"tenant_id":"{t}","scenario_id":"{s}","user_id":"{u}","item_id":"{it}","action":"{ac}","ts":{ts}}}\n')
        b.write(f'{{"tenant_id":"{t}","scenario_id":"{s}","user_id":"{u}","item_id":"{it}","action":"{ac}","timestamp":{ts / 1000:.3f}}}\n')
        c.write(f'{{"tenant_id":"{t}","scenario_id":"{s}","user":{{"id":"{u}"}},"content_id":"{it}","action":"{ac}","meta":{{"time":{ts / 1000:.3f}}}}}\n')
EOF
# events/s of one replay: the release binary as users run it, on core 0.
rate() {
  local file="$1"; shift
  local start end
  start=$(date +%s.%N)
  env -u MONGODB_URL -u REDIS_URL -u KAFKA_SERVERS taskset -c 0 "$bin" run --events-file "$file" \
    --scenarios-dir examples/scenarios --jsonl-out /dev/null --view off "$@" 2>/dev/null
  end=$(date +%s.%N)
  python3 -c "print(int($events / ($end - $start)))"
}
declare -A runs
for _ in 1 2 3; do
  runs[canonical]+="$(rate "$work/canonical.jsonl") "
  runs[seed]+="$(rate "$work/seed.jsonl" --event-field ts=timestamp --event-ts-unit s) "
  runs[nested]+="$(rate "$work/nested.jsonl" --event-field ts=meta.time --event-ts-unit s \
    --event-field user_id=user.id --event-field item_id=content_id) "
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | sed -n 2p; }
base=$(median "${runs[canonical]}")
printf '%-10s %12s %8s\n' shape events/s ratio
for shape in canonical seed nested; do
  m=$(median "${runs[$shape]}")
  printf '%-10s %12s %8s\n' "$shape" "$m" "$(python3 -c "print(f'{$m / $base:.2f}')")"
done
