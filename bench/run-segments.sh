#!/usr/bin/env bash
# Benchmark: one large item from a server that gives each connection RATE (nginx
# `limit_rate`, as a far server gives a single TCP stream), over one connection and over N:
# `promote run --segments 1` and `--segments N`, `aria2c -x N -s N` (its parallel ranges) and
# `curl -o FILE && sync -f FILE` (one connection). promote verifies the SHA-256 given in the
# manifest and promotes create-only and durably; aria2c and curl just write the file.
# Alternating rounds, a fresh destination each round; medians of per-round ratios.
#
#   bash bench/run-segments.sh [ROUNDS] [N] [MIB] [RATE] [DIR]
#
# Defaults: 3 rounds, N = 4, a 256 MiB file, RATE 16m (nginx's syntax: bytes per second per
# connection). DIR (default: a fresh directory under target/) must be on the filesystem you
# care about. Installs nginx, aria2 and curl with apt-get when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/nginx.sh
rounds=${1:-3}
n=${2:-4}
mib=${3:-256}
rate=${4:-16m}
dir=${5:-target/bench-segments}

missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v aria2c >/dev/null || missing+=(aria2)
command -v curl >/dev/null || missing+=(curl)
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release -q -p promote-cli
bin=$PWD/target/release/promote

mkdir -p "$dir/www"
dir=$(cd "$dir" && pwd)
cleanup() {
  stop_nginx
  rm -rf "$dir/dest" "$dir/nginx"
}
trap cleanup EXIT
if [ ! -f "$dir/www/big.bin" ] || [ "$(stat -c %s "$dir/www/big.bin")" != $((mib << 20)) ]; then
  head -c $((mib << 20)) /dev/urandom > "$dir/www/big.bin"
fi
chmod -R a+rX "$dir/www"
start_nginx "$dir" "$dir/www" "limit_rate $rate;"
wait_url "$base/big.bin"
sha=$(sha256sum < "$dir/www/big.bin" | cut -d' ' -f1)
printf '{"source":"%s/big.bin","key":"big.bin","sha256":"%s","size":%d}\n' "$base" "$sha" $((mib << 20)) > "$dir/big.jsonl"

# Prints the seconds; fails the benchmark if the command failed.
timed() {
  local out; out=$(/usr/bin/time -f '%x %e' "$@" 2>&1 >/dev/null | tail -n 1)
  [ "${out%% *}" = 0 ] || { echo "failed: $* ($out)" >&2; exit 1; }
  echo "${out#* }"
}
fresh() { rm -rf "$dir/dest"; mkdir -p "$dir/dest"; sync; }
promote() { # SEGMENTS
  fresh
  timed "$bin" --root "$dir/dest/root" run "$dir/big.jsonl" --out "$dir/dest/run" --segments "$1" \
    --per-host "$1" --quiet
}
aria2() {
  fresh
  timed aria2c -q -x "$n" -s "$n" -k 1M -d "$dir/dest" --file-allocation=none --console-log-level=error \
    --summary-interval=0 "$base/big.bin"
}
curl_sync() {
  fresh
  timed sh -c 'curl -sf -o "$1/dest/big.bin" "$2/big.bin" && sync -f "$1/dest/big.bin"' _ "$dir" "$base"
}
check() { [ "$(sha256sum < "$1" | cut -d' ' -f1)" = "$sha" ] || { echo "wrong bytes in $1" >&2; exit 1; }; }

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for f in p1 pn an c1; do : > "$dir/$f.t"; done
for r in $(seq "$rounds"); do
  promote 1 >> "$dir/p1.t"
  promote "$n" >> "$dir/pn.t"
  [ "$r" != 1 ] || check "$dir/dest/root/big.bin"
  aria2 >> "$dir/an.t"
  [ "$r" != 1 ] || check "$dir/dest/big.bin"
  curl_sync >> "$dir/c1.t"
  echo "round $r done" >&2
done

ratio() { paste "$dir/$1.t" "$dir/$2.t" | awk '{print $1 / $2}' | median; }
line() { awk -v l="$1" -v t="$(median < "$dir/$2.t")" -v mib="$mib" 'BEGIN {printf "  %-36s %7.2f s %7.1f MiB/s\n", l, t, mib / t}'; }
echo "1 x $mib MiB from nginx on 127.0.0.1 at $rate per connection, $rounds rounds (medians)"
line "promote run --segments 1" p1
line "promote run --segments $n" pn
line "aria2c -x $n -s $n" an
line "curl -o + sync -f (one connection)" c1
echo "median of per-round ratios (their time / promote --segments $n's time; above 1: promote is faster):"
echo "  promote --segments 1: $(ratio p1 pn)   aria2c -x $n: $(ratio an pn)   curl+sync: $(ratio c1 pn)"
