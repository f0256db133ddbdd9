#!/usr/bin/env bash
# Benchmark: `promote put` of a 1 GiB file (verified, durable, create-only) by its two paths,
# versus `cp` + `sync FILE` and `dd bs=1M conv=fsync`, alternating in one run.
#
#   bash bench/large-file.sh [ROUNDS] [DIR] [OTHER_FS_DIR]      (BENCH_SIZE_MIB=1024 by default)
#
# - kernel:  the source is on DIR's filesystem, the store's root too, so promote copies inside
#            the kernel (a reflink on XFS/btrfs, else copy_file_range) and hashes the staged
#            bytes behind the copy;
# - rhw:     the same bytes from OTHER_FS_DIR (default /dev/shm, a tmpfs: another filesystem),
#            so the kernel copy is declined (EXDEV) and promote reads, hashes and writes, exactly
#            today's `Store::promote_file` pipeline. The source is read from the page cache in
#            both rows. (Not stdin: `put -` goes through the generic reader path, which has no
#            read-ahead thread and copies each chunk once more, so it would not be the baseline.)
# - cp:      `cp SRC OUT && sync OUT` (GNU cp also uses copy_file_range, or a reflink);
# - dd:      `dd if=SRC of=OUT bs=1M conv=fsync`.
# Before the rounds, one `-vv` put of each promote row checks that it takes the path it is
# named for (the script stops otherwise). Prints medians, the median and spread (min..max) of the
# per-round ratios, and peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
dir=${2:-target/bench-large}
other=${3:-/dev/shm/promote-bench-large}
size_mib=${BENCH_SIZE_MIB:-1024}
mkdir -p "$dir" "$other"
cargo build --release -q -p promote-cli
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/promote
src=$dir/src.bin
if [ ! -f "$src" ] || [ "$(stat -c %s "$src")" != $((size_mib << 20)) ]; then
  head -c $((size_mib << 20)) /dev/urandom > "$src"
fi
cp "$src" "$other/src.bin"
[ "$(stat -c %d "$src")" != "$(stat -c %d "$other/src.bin")" ] || { echo "OTHER_FS_DIR must be on another filesystem" >&2; exit 1; }
sha=$(sha256sum "$src" | cut -d' ' -f1)

# Which path each promote row takes, from its -vv log.
path_of() { # source
  rm -rf "$dir/root"
  local log; log=$("$bin" -vv --root "$dir/root" put "$1" check.bin --sha256 "$sha" 2>&1 >/dev/null)
  echo "$log" | { grep -o 'kernel copy[^=]*' || true; } | sed -n '1s/ key$//p'
}
kernel_path=$(path_of "$src")
rhw_path=$(path_of "$other/src.bin")
rm -rf "$dir/root"
echo "kernel row: ${kernel_path:-no -vv line}"
echo "rhw row:    ${rhw_path:-no -vv line}"
case "$kernel_path" in "kernel copy: "*) ;; *) echo "the kernel row does not take the kernel copy" >&2; exit 1 ;; esac
case "$rhw_path" in "kernel copy not used"*) ;; *) echo "the rhw row does not stream" >&2; exit 1 ;; esac

timed() { /usr/bin/time -f '%e %M' "$@" 2>&1 >/dev/null | tail -n 1; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for t in kernel rhw cp dd; do : > "$dir/$t.times"; : > "$dir/$t.rss"; done
run() { # name, command...
  local name=$1; shift
  rm -rf "$dir/root" "$dir/out.bin"; sync
  local out; out=$(timed "$@")
  echo "$out" | awk '{print $1}' >> "$dir/$name.times"
  echo "$out" | awk '{print $2}' >> "$dir/$name.rss"
}
for i in $(seq "$rounds"); do
  run kernel "$bin" --root "$dir/root" put "$src" big.bin --sha256 "$sha"
  run rhw "$bin" --root "$dir/root" put "$other/src.bin" big.bin --sha256 "$sha"
  run cp sh -c "cp '$src' '$dir/out.bin' && sync '$dir/out.bin'"
  run dd dd if="$src" of="$dir/out.bin" bs=1M conv=fsync status=none
done
rm -rf "$dir/root" "$dir/out.bin" "$other"
ratios() { paste "$dir/$1.times" "$dir/kernel.times" | awk '{print $1/$2}'; }
summary() { local r; r=$(ratios "$1"); printf "%s / kernel: median %.2f, spread %.2f..%.2f, rounds [%s]\n" "$1" \
  "$(echo "$r" | median)" "$(echo "$r" | sort -g | head -n1)" "$(echo "$r" | sort -g | tail -n1)" "$(echo $r)"; }
echo "size $size_mib MiB, $rounds rounds (times in s, medians; ratio > 1: the kernel path is faster)"
for t in kernel rhw cp dd; do
  printf "%-7s %6.2f s  peak RSS %6.1f MiB\n" "$t" "$(median < "$dir/$t.times")" "$(sort -n "$dir/$t.rss" | tail -n1 | awk '{print $1/1024}')"
done
summary rhw; summary cp; summary dd
