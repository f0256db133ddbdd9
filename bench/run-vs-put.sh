#!/usr/bin/env bash
# Benchmark: `promote run` of a manifest of COUNT local files versus `promote put DIR` of the
# same files, for each durability, alternating in one run with a fresh store (and run
# directory) each round. Prints the medians, the median of the per-round ratios run / put, and
# the bytes each wrote (`write_bytes` of the process, what reached the block layer, and
# `wchar`, what it passed to write calls), per file.
#
#   bash bench/run-vs-put.sh [ROUNDS] [COUNT] [SIZE_BYTES] [DIR]
#
# Defaults: 3 rounds of 100000 files of 1024 bytes under target/bench-run-put, durabilities
# `none batch each` (BENCH_DURABILITIES to choose). `--concurrency` / `--jobs`: 8, the run's
# default.
#
# BENCH_IMAGE=1 runs on a fresh ext4 filesystem (with its journal) in an 8 GiB image file
# loop-mounted at DIR (root needed): see bench/small-files.sh for why (on an ext4 without a
# journal, every round's `rm -rf` of 100,000 files slows the next round's inode allocation).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
count=${2:-100000}
size=${3:-1024}
dir=${4:-target/bench-run-put}
durabilities=${BENCH_DURABILITIES:-none batch each}
cargo build --release -q -p promote-cli
bin=$PWD/target/release/promote
mkdir -p "$dir"; dir=$(realpath "$dir")
if [ "${BENCH_IMAGE:-0}" = 1 ]; then
  mountpoint -q "$dir" && umount "$dir"
  rm -f "$dir.img"; truncate -s 8G "$dir.img"; mkfs.ext4 -q -F "$dir.img"
  mount -o loop "$dir.img" "$dir"
  trap 'umount "$dir"; rm -f "$dir.img"' EXIT
fi
src=$dir/src-$count-$size
if [ ! -f "$src/.done" ]; then
  rm -rf "$src"; mkdir -p "$src"
  python3 - "$src" "$count" "$size" <<'PY'
import json, os, sys
src, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(os.path.join(os.path.dirname(src), f"m-{count}-{size}.jsonl"), "w") as m:
    for i in range(count):
        d = os.path.join(src, f"d{i % 100}")
        os.makedirs(d, exist_ok=True)
        p = os.path.join(d, f"f{i}")
        with open(p, "wb") as f:
            f.write(os.urandom(size))
        m.write(json.dumps({"source": p, "key": f"x/d{i % 100}/f{i}"}) + "\n")
PY
  touch "$src/.done"
fi
manifest=$dir/m-$count-$size.jsonl
# Runs "$@" in a shell whose /proc/self/io then counts the reaped child's I/O; prints
# "seconds write_bytes wchar peak_rss_kib".
measure() {
  bash -c 's=$(date +%s%N); /usr/bin/time -o "$0.time" -f %M "$@" >/dev/null 2>&1 || exit 9; e=$(date +%s%N)
           echo "$(( (e - s) / 1000000 ))e-3 $(awk "/^write_bytes/ {print \$2}" /proc/$$/io) \
$(awk "/^wchar/ {print \$2}" /proc/$$/io) $(cat "$0.time")"' "$dir/t" "$@"
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
fresh() { rm -rf "$dir/store" "$dir/run"; sync; }
echo "$count files of $size bytes, $rounds rounds; ratio = run time / put time (per round, then median)"
for d in $durabilities; do
  : > "$dir/put.$d"; : > "$dir/run.$d"
  for _ in $(seq "$rounds"); do
    fresh; measure "$bin" --root "$dir/store" put -q --durability "$d" --jobs 8 "$src" x/ >> "$dir/put.$d"
    fresh; measure "$bin" --root "$dir/store" run -q --durability "$d" --out "$dir/run" "$manifest" >> "$dir/run.$d"
  done
  ratios=$(paste -d' ' "$dir/run.$d" "$dir/put.$d" | awk '{printf "%.2f\n", $1 / $5}')
  for t in put run; do
    awk -v n="$count" -v t="$t" -v d="$d" '{s[NR]=$1; w+=$2; c+=$3; if ($4>r) r=$4}
      END {printf "%-4s --durability %-5s write_bytes %.0f B/file  wchar %.0f B/file  peak RSS %.0f MiB\n",
           t, d, w/NR/n, c/NR/n, r/1024}' "$dir/$t.$d"
    printf "     median %.2f s\n" "$(awk '{print $1}' "$dir/$t.$d" | median)"
  done
  echo "run/put --durability $d: median ratio $(echo "$ratios" | median) (rounds: $(echo $ratios))"
done
fresh
