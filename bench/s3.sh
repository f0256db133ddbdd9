# Sourced by the S3 bench scripts (from the repository's top). `start_s3` makes a work
# directory ($work, removed on exit), starts LocalStack's S3 there (tests/s3/server.sh, stopped
# on exit) and points promote (PROMOTE_BACKEND__*) and rclone (remote `ls:`) at it; `timed`
# runs a command and prints "seconds peak-KiB".

start_s3() {
  work=$(mktemp -d "${TMPDIR:-/tmp}/promote-bench.XXXXXX")
  state=$work/s3
  trap 'bash tests/s3/server.sh stop "$state" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
  mkdir -p "$state"
  bash tests/s3/server.sh start "$state" >/dev/null
  # shellcheck disable=SC1091
  source "$state/env"
  export PROMOTE_BACKEND__KIND=s3 PROMOTE_BACKEND__BUCKET=$PROMOTE_TEST_S3_BUCKET \
    PROMOTE_BACKEND__ENDPOINT=$PROMOTE_TEST_S3_ENDPOINT PROMOTE_BACKEND__ALLOW_HTTP=true
  export RCLONE_CONFIG_LS_TYPE=s3 RCLONE_CONFIG_LS_PROVIDER=Other RCLONE_CONFIG_LS_ENV_AUTH=false \
    RCLONE_CONFIG_LS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID RCLONE_CONFIG_LS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY \
    RCLONE_CONFIG_LS_ENDPOINT=$PROMOTE_TEST_S3_ENDPOINT RCLONE_CONFIG_LS_REGION=us-east-1 RCLONE_CONFIG=/dev/null
  # rclone refuses to start when AWS_CA_BUNDLE is set and the endpoint is plain http.
  unset AWS_CA_BUNDLE
}

# Prints "seconds peak-KiB"; fails the run if the command failed.
timed() {
  local out; out=$(/usr/bin/time -f '%x %e %M' "$@" 2>&1 >/dev/null | tail -n 1)
  [ "${out%% *}" = 0 ] || { echo "failed: $* ($out)" >&2; exit 1; }
  echo "${out#* }"
}
