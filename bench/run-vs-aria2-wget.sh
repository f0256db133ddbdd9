#!/usr/bin/env bash
# Benchmark: `promote run` versus `aria2c -i` and `wget -i`, all fetching from one nginx on
# 127.0.0.1 at the same concurrency, in one run: 2,000 files of 64 KiB, and one file of 1 GiB
# (also versus `curl -o FILE && sync -f FILE`, and with the bytes each wrote: `write_bytes`).
# promote verifies every item's SHA-256 (given in the manifest) and promotes it create-only and
# durably (local backend, default durability); aria2c and wget just write the files.
# Alternating rounds, a fresh destination each round; medians of per-round ratios, peak RSS.
#
#   bash bench/run-vs-aria2-wget.sh [ROUNDS] [CONCURRENCY] [DIR]
#
# DIR (default: a fresh directory under target/) must be on the filesystem you care about.
# Installs nginx, aria2 and wget with apt-get when they are missing. BENCH_SKIP_PROMOTE=1 runs
# aria2c and wget only; BENCH_SMALL_FILES and BENCH_BIG_MIB shrink the data for a quick check.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/nginx.sh
rounds=${1:-3}
jobs=${2:-8}
dir=${3:-target/bench-run}
small_files=${BENCH_SMALL_FILES:-2000}
big_mib=${BENCH_BIG_MIB:-1024}
skip_promote=${BENCH_SKIP_PROMOTE:-0}

missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v aria2c >/dev/null || missing+=(aria2)
command -v wget >/dev/null || missing+=(wget)
command -v curl >/dev/null || missing+=(curl)
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ "$skip_promote" != 1 ]; then
  cargo build --release -q -p promote-cli
fi
bin=$PWD/target/release/promote

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
www=$dir/www
cleanup() {
  stop_nginx
  rm -rf "$dir/dest" "$dir/nginx"
}
trap cleanup EXIT

# The data, made once and kept between invocations.
mkdir -p "$www/small"
if [ "$(find "$www/small" -name '*.bin' | wc -l)" != "$small_files" ]; then
  rm -rf "$www/small"; mkdir -p "$www/small"
  for i in $(seq -w 1 "$small_files"); do head -c 65536 /dev/urandom > "$www/small/f$i.bin"; done
fi
if [ ! -f "$www/big.bin" ] || [ "$(stat -c %s "$www/big.bin")" != $((big_mib << 20)) ]; then
  head -c $((big_mib << 20)) /dev/urandom > "$www/big.bin"
fi
chmod -R a+rX "$www"

start_nginx "$dir" "$www"
wait_url "$base/big.bin"
wait_url "$base/small/f$(printf "%0${#small_files}d" 1).bin"

# URL lists for aria2c and wget (wget: one list per process), manifests for promote.
(cd "$www" && sha256sum small/*.bin big.bin) > "$dir/sums"
grep ' small/' "$dir/sums" | awk -v b="$base" '{print b "/" $2}' > "$dir/small.list"
echo "$base/big.bin" > "$dir/big.list"
grep ' small/' "$dir/sums" | awk -v b="$base" '{printf "{\"source\":\"%s/%s\",\"key\":\"%s\",\"sha256\":\"%s\",\"size\":65536}\n", b, $2, $2, $1}' > "$dir/small.jsonl"
big_sha=$(awk '$2 == "big.bin" {print $1}' "$dir/sums")
printf '{"source":"%s/big.bin","key":"big.bin","sha256":"%s","size":%d}\n' "$base" "$big_sha" $((big_mib << 20)) > "$dir/big.jsonl"
rm -f "$dir"/small.list.part.*
split -n "r/$jobs" -d "$dir/small.list" "$dir/small.list.part."

# Prints "seconds peak-KiB"; fails the benchmark if the command failed.
timed() {
  local out; out=$(/usr/bin/time -f '%x %e %M' "$@" 2>&1 >/dev/null | tail -n 1)
  [ "${out%% *}" = 0 ] || { echo "failed: $* ($out)" >&2; exit 1; }
  echo "${out#* }"
}
fresh() { rm -rf "$dir/dest"; mkdir -p "$dir/dest"; sync; }
run_promote() { # LIST-NAME
  fresh
  timed "$bin" --root "$dir/dest/root" run "$dir/$1.jsonl" --out "$dir/dest/run" \
    --concurrency "$jobs" --per-host "$jobs" --quiet
}
run_aria2() { # LIST-NAME
  fresh
  timed aria2c -q -i "$dir/$1.list" -j "$jobs" -d "$dir/dest" --file-allocation=none \
    --console-log-level=error --summary-interval=0
}
run_wget_small() {
  fresh
  # N sequential wget processes over N parts of the list; timed as a whole.
  timed bash -c 'for p in "$1"/small.list.part.*; do wget -q -nd -P "$1/dest" -i "$p" & done; s=0; for j in $(jobs -p); do wait "$j" || s=1; done; exit $s' _ "$dir"
}
run_wget_big() {
  fresh
  timed wget -q -nd -P "$dir/dest" -i "$dir/big.list"
}
run_curl_big() {
  fresh
  timed sh -c 'curl -sf -o "$1/dest/big.bin" "$(cat "$1/big.list")" && sync -f "$1/dest/big.bin"' _ "$dir"
}
# Bytes the command's process tree wrote to the block layer (`write_bytes`, counted through a
# shell, whose /proc/self/io includes its reaped children's).
written() {
  fresh
  bash -c '"$@" >/dev/null 2>&1 || exit 9; awk "/^write_bytes/ {print \$2}" /proc/$$/io' _ "$@"
}
check_small() { # WHERE
  [ "$(find "$1" -name 'f*.bin' -size 64k | wc -l)" = "$small_files" ] || { echo "incomplete small set in $1" >&2; exit 1; }
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for f in ps pb as ab ws wb cb; do : > "$dir/$f.t"; : > "$dir/$f.m"; done
record() { echo "$2" | awk '{print $1}' >> "$dir/$1.t"; echo "$2" | awk '{print $2}' >> "$dir/$1.m"; }
for r in $(seq "$rounds"); do
  if [ "$skip_promote" != 1 ]; then
    record ps "$(run_promote small)"
    if [ "$r" = 1 ]; then check_small "$dir/dest/root/small"; fi
  fi
  record as "$(run_aria2 small)"
  if [ "$r" = 1 ]; then check_small "$dir/dest"; fi
  record ws "$(run_wget_small)"
  if [ "$r" = 1 ]; then check_small "$dir/dest"; fi
  if [ "$skip_promote" != 1 ]; then
    record pb "$(run_promote big)"
    if [ "$r" = 1 ]; then [ "$(sha256sum < "$dir/dest/root/big.bin" | cut -d' ' -f1)" = "$big_sha" ]; fi
  fi
  record ab "$(run_aria2 big)"
  record wb "$(run_wget_big)"
  record cb "$(run_curl_big)"
  if [ "$r" = 1 ]; then [ "$(stat -c %s "$dir/dest/big.bin")" = $((big_mib << 20)) ]; fi
  echo "round $r done" >&2
done
rm -rf "$dir/dest"

# Per-round ratios: other tool's time / promote's time (above 1: promote is faster).
ratio() { paste "$dir/$1.t" "$dir/$2.t" | awk '{print $1 / $2}' | median; }
mib_small=$(awk -v n="$small_files" 'BEGIN {print n * 64 / 1024}')
report() { # LABEL TIMES MIB
  awk -v l="$1" -v t="$(median < "$dir/$2.t")" -v mib="$3" -v m="$(sort -n "$dir/$2.m" | tail -1)" \
    'BEGIN {printf "  %-34s %7.2f s %8.1f MiB/s   peak RSS %6.1f MiB\n", l, t, mib / t, m / 1024}'
}
echo "$small_files x 64 KiB and 1 x $big_mib MiB from nginx on 127.0.0.1, concurrency $jobs, $rounds rounds (medians)"
echo "small files:"
[ "$skip_promote" = 1 ] || report "promote run (verified, durable)" ps "$mib_small"
report "aria2c -i -j $jobs" as "$mib_small"
report "wget -i ($jobs processes)" ws "$mib_small"
echo "big file:"
[ "$skip_promote" = 1 ] || report "promote run (verified, durable)" pb "$big_mib"
report "aria2c -i" ab "$big_mib"
report "wget -i" wb "$big_mib"
report "curl -o + sync -f" cb "$big_mib"
if [ "$skip_promote" != 1 ]; then
  echo "median of per-round ratios (their time / promote's time; above 1: promote is faster):"
  echo "  small: aria2c $(ratio as ps), wget $(ratio ws ps)   big: aria2c $(ratio ab pb), wget $(ratio wb pb), curl+sync $(ratio cb pb)"
  big_bytes=$((big_mib << 20))
  promote_w=$(written "$bin" --root "$dir/dest/root" run "$dir/big.jsonl" --out "$dir/dest/run" --quiet)
  curl_w=$(written sh -c 'curl -sf -o "$1/dest/big.bin" "$(cat "$1/big.list")" && sync -f "$1/dest/big.bin"' _ "$dir")
  echo "bytes written for the big file (write_bytes / its size): promote $(awk -v w="$promote_w" -v b="$big_bytes" 'BEGIN {printf "%.2f", w / b}'), curl+sync $(awk -v w="$curl_w" -v b="$big_bytes" 'BEGIN {printf "%.2f", w / b}')"
  echo "promote peak RSS (max over all rounds): $(cat "$dir/ps.m" "$dir/pb.m" | sort -n | tail -1 | awk '{printf "%.1f MiB", $1 / 1024}')"
fi
