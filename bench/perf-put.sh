#!/usr/bin/env bash
# Where the time of a 1 GiB write goes, for the page-cache slow mode: alternating
# `promote put --sha256`, `dd bs=1M conv=fsync` to the same disk, and `dd bs=1M` into tmpfs
# (/dev/shm: the same copy into page-cache pages, no disk at all), each under `perf record`
# (Debian's linux-perf, installed if missing; software clock, kernel stacks).
#
#   bash bench/perf-put.sh [ROUNDS] [DIR]
#
# One line per run: seconds, then CPU seconds sampled in the kernel's copy into the page cache
# (`copy_folio_from_iter_atomic` and the copy routines under it), in dirty-page throttling
# (`balance_dirty_pages`), waiting on pages under writeback (`folio_wait_writeback`,
# `folio_wait_stable`), and in clearing new pages (`clear_page*`). If the copy's seconds swing
# between runs while throttling and waits stay near zero, and the tmpfs writes swing alike, the
# slow mode is the cost of touching page-cache memory, not writeback and not promote's pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-4}
dir=${2:-target/bench-put}
size_mib=${BENCH_SIZE_MIB:-1024}
command -v perf >/dev/null || apt-get install -y -q linux-perf >/dev/null
mkdir -p "$dir"
cargo build --release -q -p promote-cli
bin=$PWD/target/release/promote
# The source lives in tmpfs, another filesystem than DIR, so promote streams it (read, hash,
# write: the path whose page-cache copies are in question) instead of copying in the kernel.
src=/dev/shm/promote-bench-src.bin
if [ ! -f "$src" ] || [ "$(stat -c %s "$src")" != $((size_mib << 20)) ]; then
  head -c $((size_mib << 20)) /dev/urandom > "$src"
fi
sha=$(sha256sum "$src" | cut -d' ' -f1)
cat "$src" > /dev/null
hz=1000
seconds_in() { # PERF_DATA PATTERN: CPU seconds of samples whose stack has a frame matching PATTERN
  perf script -i "$1" -F ip,sym 2>/dev/null | awk -v pat="$2" -v hz="$hz" '
    NF == 0 { if (hit) n++; hit = 0; next }
    $2 ~ pat { hit = 1 }
    END { if (hit) n++; printf "%.2f", n / hz }'
}
measure() { # NAME CMD...
  local name=$1; shift
  rm -rf "$dir/root" "$dir/dd.out" /dev/shm/promote-bench.out; sync
  local t0 t1; t0=$(date +%s.%N)
  perf record -q -e cpu-clock -F "$hz" -g -o "$dir/perf.data" -- "$@" >/dev/null 2>&1
  t1=$(date +%s.%N)
  printf "%-8s %6.2fs  copy %5ss  throttle %5ss  writeback-wait %5ss  clear %5ss  all %5ss\n" "$name" \
    "$(echo "$t1 - $t0" | bc)" \
    "$(seconds_in "$dir/perf.data" '^copy_folio_from_iter_atomic$')" \
    "$(seconds_in "$dir/perf.data" '^balance_dirty_pages')" \
    "$(seconds_in "$dir/perf.data" '^(folio_wait_writeback|folio_wait_stable)$')" \
    "$(seconds_in "$dir/perf.data" '^clear_page')" \
    "$(seconds_in "$dir/perf.data" '.')"
}
for i in $(seq "$rounds"); do
  measure promote "$bin" --root "$dir/root" put "$src" big.bin --sha256 "$sha"
  measure dd dd if="$src" of="$dir/dd.out" bs=1M conv=fsync status=none
  measure tmpfs dd if="$src" of=/dev/shm/promote-bench.out bs=1M status=none
done
rm -rf "$dir/root" "$dir/dd.out" /dev/shm/promote-bench.out "$dir/perf.data" "$src"
