#!/usr/bin/env bash
# Benchmark: `promote run` of one large item over HTTP into an OpenDAL service (`scheme = "s3"`
# on LocalStack, or `SCHEME=azblob` on Azurite). The item downloads into a partial file in the
# run directory; promote moves that file into the backend's local staging area and uploads it
# from there. With BENCH_BASE=/path/to/promote (a build from before that adoption, which copied
# the partial into staging and hashed it again), both binaries run in alternating rounds.
# Prints per binary the median wall time, the bytes the process wrote locally (`write_bytes`,
# what reached the block layer) and the peak RSS.
#
#   bash bench/run-into-opendal.sh [ROUNDS] [SIZE_MIB] [DIR]
#   BENCH_BASE=/tmp/promote-before bash bench/run-into-opendal.sh 5 512
#
# Defaults: 3 rounds of a 256 MiB item under target/bench-run-opendal. The source is served by
# Python's http.server on 127.0.0.1; the server is started by tests/s3/server.sh or
# tests/azurite/server.sh (as the tests do) unless its PROMOTE_TEST_* endpoint is set. The run
# directory and the staging area are both under DIR (one filesystem).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
size=${2:-256}
dir=${3:-target/bench-run-opendal}
scheme=${SCHEME:-s3}
cargo build --release -q -p promote-cli
bins=("now=$PWD/target/release/promote")
[ -n "${BENCH_BASE:-}" ] && bins+=("base=$(realpath "$BENCH_BASE")")
mkdir -p "$dir"; dir=$(realpath "$dir")
started=""
case $scheme in
  s3) server=tests/s3/server.sh; endpoint=${PROMOTE_TEST_S3_ENDPOINT:-} ;;
  azblob) server=tests/azurite/server.sh; endpoint=${PROMOTE_TEST_AZBLOB_ENDPOINT:-} ;;
  *) echo "SCHEME must be s3 or azblob, not $scheme" >&2; exit 2 ;;
esac
if [ -z "$endpoint" ]; then
  bash "$server" start "$dir/server" >/dev/null
  # shellcheck disable=SC1091
  source "$dir/server/env"
  started=$server
fi
src=$dir/src
mkdir -p "$src"
[ -f "$src/big" ] && [ "$(stat -c %s "$src/big")" = $((size << 20)) ] || head -c $((size << 20)) /dev/urandom > "$src/big"
sha=$(sha256sum "$src/big" | cut -d' ' -f1)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$src" >/dev/null 2>&1 &
http=$!
trap 'kill $http 2>/dev/null; [ -n "$started" ] && bash "$started" stop "$dir/server" >/dev/null; true' EXIT
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
export PROMOTE_BACKEND__KIND=opendal PROMOTE_BACKEND__SCHEME=$scheme PROMOTE_BACKEND__STAGING_DIR=$dir/staging
if [ "$scheme" = s3 ]; then
  export PROMOTE_BACKEND__OPTIONS__BUCKET=$PROMOTE_TEST_S3_BUCKET \
    PROMOTE_BACKEND__OPTIONS__ENDPOINT=$PROMOTE_TEST_S3_ENDPOINT PROMOTE_BACKEND__OPTIONS__REGION=us-east-1 \
    PROMOTE_BACKEND__OPTIONS__ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID \
    PROMOTE_BACKEND__OPTIONS__SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY \
    PROMOTE_BACKEND__OPTIONS__DISABLE_CONFIG_LOAD=true PROMOTE_BACKEND__OPTIONS__DISABLE_EC2_METADATA=true
else
  export PROMOTE_BACKEND__OPTIONS__CONTAINER=$PROMOTE_TEST_AZBLOB_CONTAINER \
    PROMOTE_BACKEND__OPTIONS__ENDPOINT=$PROMOTE_TEST_AZBLOB_ENDPOINT \
    PROMOTE_BACKEND__OPTIONS__ACCOUNT_NAME=$PROMOTE_TEST_AZBLOB_ACCOUNT_NAME \
    PROMOTE_BACKEND__OPTIONS__ACCOUNT_KEY=$PROMOTE_TEST_AZBLOB_ACCOUNT_KEY
fi
# Runs promote with "$@" in a shell whose /proc/self/io then counts the reaped child's I/O;
# prints "seconds write_bytes peak_rss_kib".
measure() {
  bash -c 's=$(date +%s%N); /usr/bin/time -o "$0.time" -f %M "$@" >/dev/null 2>&1 || exit 9; e=$(date +%s%N)
           echo "$(( (e - s) / 1000000 ))e-3 $(awk "/^write_bytes/ {print \$2}" /proc/$$/io) $(cat "$0.time")"' \
    "$dir/t" "$@"
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "one item of $size MiB over HTTP into OpenDAL $scheme ($PROMOTE_BACKEND__OPTIONS__ENDPOINT), $rounds rounds"
for entry in "${bins[@]}"; do : > "$dir/${entry%%=*}"; done
for r in $(seq "$rounds"); do
  # Alternate which binary goes first.
  order=("${bins[@]}")
  [ $((r % 2)) = 0 ] && [ ${#bins[@]} = 2 ] && order=("${bins[1]}" "${bins[0]}")
  for entry in "${order[@]}"; do
    name=${entry%%=*}; bin=${entry#*=}
    root="/bench/$name-$r-$$/"
    printf '{"source":"http://127.0.0.1:%s/big","key":"big","sha256":"%s","size":%s}\n' \
      "$port" "$sha" $((size << 20)) > "$dir/m.jsonl"
    rm -rf "$dir/run"
    sync
    PROMOTE_BACKEND__OPTIONS__ROOT=$root measure "$bin" run -q "$dir/m.jsonl" --out "$dir/run" \
      | tee -a "$dir/$name" | sed "s/^/round $r $name: /"
    PROMOTE_BACKEND__OPTIONS__ROOT=$root "$bin" rm -q big >/dev/null 2>&1 || true
  done
done
for entry in "${bins[@]}"; do
  name=${entry%%=*}
  t=$(awk '{print $1}' "$dir/$name" | median)
  w=$(awk '{print $2}' "$dir/$name" | median)
  m=$(awk '{print $3}' "$dir/$name" | median)
  echo "$name: median ${t} s, wrote $(( ${w%.*} >> 20 )) MiB locally, peak RSS $(( ${m%.*} >> 10 )) MiB"
done
if [ ${#bins[@]} = 2 ]; then
  paste "$dir/base" "$dir/now" | awk '{print $1 / $4}' | median | sed 's/^/median per-round ratio, base time \/ now time: /'
fi
