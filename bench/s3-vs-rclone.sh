#!/usr/bin/env bash
# Benchmark: promote versus `rclone copy` to the same local S3 server (LocalStack), in one run:
# 500 objects of 64 KiB, and one of 512 MiB. promote verifies (SHA-256, --sha256 on the large
# file) and publishes create-only; rclone copies with its defaults (4 transfers, MD5 checks).
# Alternating rounds, fresh prefixes each time; medians, ratios and peak RSS.
#
#   bash bench/s3-vs-rclone.sh [ROUNDS]
#
# Needs rclone (Debian package `rclone`: apt-get install rclone).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
command -v rclone >/dev/null || { echo "rclone is not installed (apt-get install rclone)" >&2; exit 1; }
cargo build --release -q -p promote-cli
bin=$PWD/target/release/promote
# shellcheck disable=SC1091
source bench/s3.sh
start_s3

mkdir -p "$work/small"
for i in $(seq -w 1 500); do head -c 65536 /dev/urandom > "$work/small/f$i.bin"; done
head -c $((512 << 20)) /dev/urandom > "$work/big.bin"
big_sha=$(sha256sum "$work/big.bin" | cut -d' ' -f1)

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for f in ps pb rs rb; do : > "$work/$f.t"; : > "$work/$f.m"; done
record() { echo "$2" | awk '{print $1}' >> "$work/$1.t"; echo "$2" | awk '{print $2}' >> "$work/$1.m"; }
for r in $(seq "$rounds"); do
  record ps "$(PROMOTE_BACKEND__PREFIX=p$r timed "$bin" put "$work/small" small)"
  record rs "$(timed rclone copy "$work/small" "ls:$PROMOTE_TEST_S3_BUCKET/r$r/small")"
  record pb "$(PROMOTE_BACKEND__PREFIX=p$r timed "$bin" put "$work/big.bin" big.bin --sha256 "$big_sha")"
  record rb "$(timed rclone copy "$work/big.bin" "ls:$PROMOTE_TEST_S3_BUCKET/r$r/")"
done
# Check promote's objects really are there and whole.
PROMOTE_BACKEND__PREFIX=p1 "$bin" verify big.bin --sha256 "$big_sha" >/dev/null
[ "$(PROMOTE_BACKEND__PREFIX=p1 "$bin" ls small/ | wc -l)" = 500 ]
[ "$(rclone lsf "ls:$PROMOTE_TEST_S3_BUCKET/r1/small" | wc -l)" = 500 ]

ps=$(median < "$work/ps.t"); rs=$(median < "$work/rs.t"); pb=$(median < "$work/pb.t"); rb=$(median < "$work/rb.t")
awk -v ps="$ps" -v rs="$rs" -v pb="$pb" -v rb="$rb" -v n="$rounds" \
  -v psm="$(sort -n "$work/ps.m" | tail -1)" -v rsm="$(sort -n "$work/rs.m" | tail -1)" \
  -v pbm="$(sort -n "$work/pb.m" | tail -1)" -v rbm="$(sort -n "$work/rb.m" | tail -1)" 'BEGIN {
  printf "%d rounds, medians; peak RSS = max over rounds\n", n
  printf "500 x 64 KiB   promote %6.2f s (%5.1f MiB RSS)   rclone %6.2f s (%5.1f MiB RSS)   speed ratio promote/rclone %.2f\n", ps, psm/1024, rs, rsm/1024, rs/ps
  printf "1 x 512 MiB    promote %6.2f s (%5.1f MiB RSS)   rclone %6.2f s (%5.1f MiB RSS)   speed ratio promote/rclone %.2f\n", pb, pbm/1024, rb, rbm/1024, rb/pb
}'
