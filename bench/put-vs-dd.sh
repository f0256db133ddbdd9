#!/usr/bin/env bash
# Benchmark: `promote put` of a 1 GiB file with --sha256 (verified, durable, create-only)
# versus `dd conv=fsync` of the same file, alternating in one run; medians, ratio, peak RSS.
#
#   bash bench/put-vs-dd.sh [ROUNDS] [DIR]
#
# DIR (default: a fresh directory under target/) must be on the filesystem you care about.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
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
timed() { /usr/bin/time -f '%e %M' "$@" 2>&1 >/dev/null | tail -n 1; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
: > "$dir/dd.times"; : > "$dir/dd1m.times"; : > "$dir/dd512.times"; : > "$dir/promote.times"; : > "$dir/promote.rss"
for i in $(seq "$rounds"); do
  rm -rf "$dir/dd.out" "$dir/root"; sync
  out=$(timed "$bin" --root "$dir/root" put "$src" big.bin --sha256 "$sha")
  echo "$out" | awk '{print $1}' >> "$dir/promote.times"
  echo "$out" | awk '{print $2}' >> "$dir/promote.rss"
  rm -rf "$dir/root"; sync
  timed dd if="$src" of="$dir/dd.out" bs=4M conv=fsync status=none | awk '{print $1}' >> "$dir/dd.times"
  rm -f "$dir/dd.out"; sync
  timed dd if="$src" of="$dir/dd.out" bs=1M conv=fsync status=none | awk '{print $1}' >> "$dir/dd1m.times"
  rm -f "$dir/dd.out"; sync
  timed dd if="$src" of="$dir/dd.out" conv=fsync status=none | awk '{print $1}' >> "$dir/dd512.times"
  rm -f "$dir/dd.out"; sync
done
dd_s=$(median < "$dir/dd.times"); dd1m_s=$(median < "$dir/dd1m.times"); dd512_s=$(median < "$dir/dd512.times")
p_s=$(median < "$dir/promote.times")
best() { sort -n "$1" | head -n 1; }
dd_b=$(best "$dir/dd.times"); dd1m_b=$(best "$dir/dd1m.times"); p_b=$(best "$dir/promote.times")
rss_kib=$(sort -n "$dir/promote.rss" | tail -n 1)
awk -v mib="$size_mib" -v dd="$dd_s" -v dd1="$dd1m_s" -v dd0="$dd512_s" -v p="$p_s" -v rss="$rss_kib" -v n="$rounds" -v db="$dd_b" -v d1b="$dd1m_b" -v pb="$p_b" 'BEGIN {
  printf "size %d MiB, %d rounds, medians\n", mib, n
  printf "dd bs=4M conv=fsync      %6.2f s  %7.0f MiB/s\n", dd, mib/dd
  printf "dd bs=1M conv=fsync      %6.2f s  %7.0f MiB/s\n", dd1, mib/dd1
  printf "dd conv=fsync (bs=512)   %6.2f s  %7.0f MiB/s\n", dd0, mib/dd0
  printf "promote put --sha256     %6.2f s  %7.0f MiB/s\n", p, mib/p
  printf "throughput ratio promote / dd: bs=4M %.2f, bs=1M %.2f, bs=512 %.2f\n", dd/p, dd1/p, dd0/p
  printf "best of %d: dd bs=4M %.2f s, dd bs=1M %.2f s, promote %.2f s; ratio promote / dd: bs=4M %.2f, bs=1M %.2f\n", n, db, d1b, pb, db/pb, d1b/pb
  printf "promote peak RSS (max over rounds): %.1f MiB\n", rss/1024
}'
rm -rf "$dir/dd.out" "$dir/root"
