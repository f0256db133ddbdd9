#!/usr/bin/env bash
# Benchmark: `promote put DIR` (durability each and batch) versus `cp -r` + `sync -f` versus
# `rclone copy`, alternating in one run, fresh destination each round; medians of per-round
# ratios to `cp -r` + `sync -f`, and promote's peak RSS.
#
#   bash bench/small-files.sh [ROUNDS] [COUNT] [SIZE_KIB] [DIR]
#
# Defaults: 5 rounds of 2000 files of 64 KiB under target/bench-small. Installs Debian's
# rclone if missing (this script only; CI never needs it). DIR must be on the filesystem you
# care about. rclone copy does not fsync: it is shown for speed, not as an equal.
#
# BENCH_IMAGE=1 runs on a fresh ext4 filesystem (with its journal, mkfs.ext4's default) in a
# 6 GiB image file loop-mounted at DIR (root needed). Use it on a machine whose own filesystem
# is ext4 without a journal: there the kernel's inode allocator skips every recently deleted
# inode one by one (`recently_deleted`, found with perf), so each round's `rm -rf` makes every
# tool slower in the next round, and what is measured is mostly that scan.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
count=${2:-2000}
kib=${3:-64}
dir=${4:-target/bench-small}
jobs=${BENCH_JOBS:-4}
command -v rclone >/dev/null || apt-get install -y -q rclone >/dev/null
if [ "${BENCH_IMAGE:-0}" = 1 ]; then
  mkdir -p "$dir"
  mountpoint -q "$dir" && umount "$dir"
  rm -f "$dir.img"; truncate -s 6G "$dir.img"; mkfs.ext4 -q -F "$dir.img"
  mount -o loop "$dir.img" "$dir"
  trap 'umount "$dir"; rm -f "$dir.img"' EXIT
fi
cargo build --release -q -p promote-cli
bin=$PWD/target/release/promote
src=$dir/src-$count-$kib
if [ ! -d "$src" ] || [ "$(find "$src" -type f | wc -l)" != "$count" ]; then
  rm -rf "$src"; mkdir -p "$src"
  for i in $(seq "$count"); do
    d=$src/d$((i % 20)); mkdir -p "$d"
    head -c $((kib * 1024)) /dev/urandom > "$d/f$i"
  done
fi
timed() { /usr/bin/time -f '%e %M' "$@" 2>&1 >/dev/null | tail -n 1; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
tools="cp each batch rclone"
for t in $tools; do : > "$dir/$t.times"; : > "$dir/$t.rss"; done
: > "$dir/ratios"
fresh() { rm -rf "$dir/dest"; sync; }
for i in $(seq "$rounds"); do
  fresh; out=$(timed sh -c "cp -r '$src' '$dir/dest' && sync -f '$dir/dest'")
  echo "$out" | awk '{print $1}' >> "$dir/cp.times"
  for d in each batch; do
    fresh; out=$(timed "$bin" --root "$dir/dest" put --durability "$d" "$src" x/ --jobs "$jobs" --quiet)
    echo "$out" | awk '{print $1}' >> "$dir/$d.times"; echo "$out" | awk '{print $2}' >> "$dir/$d.rss"
  done
  fresh; mkdir -p "$dir/dest"
  out=$(timed rclone copy "$src" "$dir/dest/x")
  echo "$out" | awk '{print $1}' >> "$dir/rclone.times"
  cp_s=$(tail -n 1 "$dir/cp.times")
  echo "$cp_s $(tail -n 1 "$dir/each.times") $(tail -n 1 "$dir/batch.times") $(tail -n 1 "$dir/rclone.times")" >> "$dir/ratios"
done
fresh
echo "$count files of $kib KiB, $rounds rounds, promote --jobs $jobs; speed ratio = cp time / tool time (per round, then median)"
for t in $tools; do
  col=$(( $(echo $tools | tr ' ' '\n' | grep -n "^$t$" | cut -d: -f1) ))
  ratio=$(awk -v c="$col" '{print $1 / $c}' "$dir/ratios" | median)
  all=$(awk -v c="$col" '{printf "%.2f ", $1 / $c}' "$dir/ratios")
  rss=$( [ -s "$dir/$t.rss" ] && sort -n "$dir/$t.rss" | tail -n 1 | awk '{printf ", peak RSS %.1f MiB", $1/1024}' || true)
  printf "%-7s median %6.2f s  ratio to cp+sync %.2f (rounds: %s)%s\n" "$t" "$(median < "$dir/$t.times")" "$ratio" "$all" "$rss"
done
