#!/usr/bin/env bash
# Evidence for the page-cache slow mode: /proc/vmstat counters around each 1 GiB write,
# alternating `promote put --sha256` and `dd bs=1M conv=fsync`, one line per run.
#
#   bash bench/vmstat-put.sh [ROUNDS] [DIR]
#
# Columns: seconds, then the increase of each counter during the run (allocation stalls, direct
# reclaim and compaction, pages scanned/stolen by kswapd, dirty throttling is not a counter, so
# `nr_dirtied`/`nr_written` show writeback volume). Compare slow runs with fast ones.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-4}
dir=${2:-target/bench-put}
size_mib=${BENCH_SIZE_MIB:-1024}
mkdir -p "$dir"
cargo build --release -q -p promote-cli
bin=$PWD/target/release/promote
src=$dir/src.bin
if [ ! -f "$src" ] || [ "$(stat -c %s "$src")" != $((size_mib << 20)) ]; then
  head -c $((size_mib << 20)) /dev/urandom > "$src"
fi
sha=$(sha256sum "$src" | cut -d' ' -f1)
counters="allocstall_normal allocstall_movable compact_stall compact_fail pgscan_kswapd pgscan_direct pgsteal_kswapd pgsteal_direct thp_fault_alloc nr_dirtied nr_written pgfault"
snap() { awk -v want=" $counters " 'index(want, " " $1 " ") {print $1, $2}' /proc/vmstat | sort; }
measure() { # NAME CMD...
  local name=$1; shift
  rm -rf "$dir/root" "$dir/dd.out"; sync
  local before; before=$(snap); local t0; t0=$(date +%s.%N)
  "$@" >/dev/null
  local t1; t1=$(date +%s.%N)
  join <(echo "$before") <(snap) | awk -v n="$name" -v s="$(echo "$t1 - $t0" | bc)" \
    'BEGIN {printf "%-8s %6.2fs", n, s} {printf "  %s=%d", $1, $3 - $2} END {print ""}'
}
for i in $(seq "$rounds"); do
  measure promote "$bin" --root "$dir/root" put "$src" big.bin --sha256 "$sha"
  measure dd dd if="$src" of="$dir/dd.out" bs=1M conv=fsync status=none
done
rm -rf "$dir/root" "$dir/dd.out"
