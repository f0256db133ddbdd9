#!/usr/bin/env bash
# Benchmark: `promote run` of one large item over HTTP into S3, straight into a multipart upload
# (the default) versus through a partial file in the run directory (`streaming = false`, the
# path every large item took before), alternating in one run. Prints per mode the median wall
# time, and the bytes the process wrote locally (`write_bytes`, what reached the block layer)
# and the peak RSS.
#
#   bash bench/run-into-s3.sh [ROUNDS] [SIZE_MIB] [DIR]
#
# Defaults: 3 rounds of a 256 MiB item under target/bench-run-s3. The source is served by
# Python's http.server on 127.0.0.1; the bucket is LocalStack's, started by tests/s3/server.sh
# (as the tests do) unless PROMOTE_TEST_S3_ENDPOINT is set.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
size=${2:-256}
dir=${3:-target/bench-run-s3}
cargo build --release -q -p promote-cli
bin=$PWD/target/release/promote
mkdir -p "$dir"; dir=$(realpath "$dir")
started_s3=0
if [ -z "${PROMOTE_TEST_S3_ENDPOINT:-}" ]; then
  bash tests/s3/server.sh start "$dir/s3" >/dev/null
  # shellcheck disable=SC1091
  source "$dir/s3/env"
  started_s3=1
fi
src=$dir/src
mkdir -p "$src"
[ -f "$src/big" ] && [ "$(stat -c %s "$src/big")" = $((size << 20)) ] || head -c $((size << 20)) /dev/urandom > "$src/big"
sha=$(sha256sum "$src/big" | cut -d' ' -f1)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$src" >/dev/null 2>&1 &
http=$!
trap 'kill $http 2>/dev/null; [ "$started_s3" = 1 ] && bash tests/s3/server.sh stop "$dir/s3" >/dev/null; true' EXIT
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
export PROMOTE_BACKEND__KIND=s3 PROMOTE_BACKEND__BUCKET=$PROMOTE_TEST_S3_BUCKET \
  PROMOTE_BACKEND__ENDPOINT=$PROMOTE_TEST_S3_ENDPOINT PROMOTE_BACKEND__ALLOW_HTTP=true
# Runs promote with "$@" in a shell whose /proc/self/io then counts the reaped child's I/O;
# prints "seconds write_bytes peak_rss_kib".
measure() {
  bash -c 's=$(date +%s%N); /usr/bin/time -o "$0.time" -f %M "$@" >/dev/null 2>&1 || exit 9; e=$(date +%s%N)
           echo "$(( (e - s) / 1000000 ))e-3 $(awk "/^write_bytes/ {print \$2}" /proc/$$/io) $(cat "$0.time")"' \
    "$dir/t" "$@"
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "one item of $size MiB over HTTP into S3 ($PROMOTE_TEST_S3_ENDPOINT), $rounds alternating rounds"
: > "$dir/direct"; : > "$dir/partial"
for r in $(seq "$rounds"); do
  for mode in direct partial; do
    prefix="bench/$mode-$r-$$"
    printf '{"source":"http://127.0.0.1:%s/big","key":"big","sha256":"%s","size":%s}\n' \
      "$port" "$sha" $((size << 20)) > "$dir/m.jsonl"
    rm -rf "$dir/run"
    streaming=true; [ "$mode" = partial ] && streaming=false
    sync
    PROMOTE_BACKEND__PREFIX=$prefix PROMOTE_STREAMING=$streaming \
      measure "$bin" run -q "$dir/m.jsonl" --out "$dir/run" | tee -a "$dir/$mode" | sed "s/^/round $r $mode: /"
    PROMOTE_BACKEND__PREFIX=$prefix "$bin" rm -q big >/dev/null 2>&1 || true
  done
done
for mode in direct partial; do
  t=$(awk '{print $1}' "$dir/$mode" | median)
  w=$(awk '{print $2}' "$dir/$mode" | median)
  m=$(awk '{print $3}' "$dir/$mode" | median)
  echo "$mode: median ${t} s, wrote $(( ${w%.*} >> 20 )) MiB locally, peak RSS $(( ${m%.*} >> 10 )) MiB"
done
