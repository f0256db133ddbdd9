#!/usr/bin/env bash
# Install (pinned, from the npm registry) and run Azurite's Blob service for promote's tests.
#
#   server.sh start STATE_DIR   Azurite blob on a free port of 127.0.0.1, container "promote-test"
#   server.sh stop  STATE_DIR   stop it
#
# After a successful start, STATE_DIR holds:
#   env         shell `export` lines (PROMOTE_TEST_AZBLOB_ENDPOINT, PROMOTE_TEST_AZBLOB_CONTAINER,
#               PROMOTE_TEST_AZBLOB_ACCOUNT_NAME, PROMOTE_TEST_AZBLOB_ACCOUNT_KEY)
#   pid         the server's pid (also its process-group id)
#   server.log  the server's output
#
# Install dir: $PROMOTE_AZURITE_DIR (default <repo>/target/azurite-$VERSION); installed with npm
# only when its marker is missing. Needs node and npm (Debian's `nodejs` and `npm` packages).
# Startup timeout: $PROMOTE_AZURITE_START_TIMEOUT seconds (default 60).
# Any failure prints the tail of the log to stderr and exits non-zero: nothing is skipped.
set -euo pipefail

VERSION=3.35.0
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/../.." && pwd)
CONTAINER=promote-test
# Azurite's well-known development account (public, documented by Microsoft; not a secret).
ACCOUNT=devstoreaccount1
KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
START_TIMEOUT=${PROMOTE_AZURITE_START_TIMEOUT:-60}

say() { printf 'azurite/server.sh: %s\n' "$*" >&2; }
LOG_FILE=""
die() {
    say "ERROR: $*"
    if [[ -n "$LOG_FILE" && -f "$LOG_FILE" ]]; then
        say "---- last 40 lines of $LOG_FILE ----"
        tail -n 40 -- "$LOG_FILE" >&2 || true
    fi
    exit 1
}

ensure_installed() {
    local dir=$1 marker=$1/.promote-azurite-version
    mkdir -p -- "$dir"
    exec 9>"$dir.lock"
    flock 9
    if [[ "$(cat -- "$marker" 2>/dev/null || true)" != "$VERSION" ]]; then
        command -v npm >/dev/null 2>&1 || die "npm is not installed (apt-get install nodejs npm)"
        say "installing azurite@$VERSION into $dir"
        LOG_FILE=$dir/install.log
        npm install --no-audit --no-fund --prefix "$dir" "azurite@$VERSION" >"$LOG_FILE" 2>&1 \
            || die "npm install azurite@$VERSION failed"
        printf '%s\n' "$VERSION" >"$marker"
    fi
    flock -u 9
    exec 9>&-
    [[ -x "$dir/node_modules/.bin/azurite-blob" ]] || die "$dir has no azurite-blob"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

pid_alive() { [[ -r "/proc/$1/stat" ]] && ! grep -qE '^[0-9]+ \(.*\) [ZX]' "/proc/$1/stat"; }

stop_group() {
    local pid=$1 i
    kill -TERM -- "-$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        pid_alive "$pid" || return 0
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
}

cmd_start() {
    local state=$1 dir pid port endpoint t0
    dir=${PROMOTE_AZURITE_DIR:-$REPO_ROOT/target/azurite-$VERSION}
    mkdir -p -- "$state"
    state=$(cd -- "$state" && pwd)
    ensure_installed "$dir"
    LOG_FILE=$state/server.log
    : >"$LOG_FILE"
    mkdir -p -- "$state/data"
    port=$(free_port) || die "could not pick a free port"
    setsid "$dir/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$port" \
        --location "$state/data" --skipApiVersionCheck --disableProductStyleUrl --disableTelemetry \
        </dev/null >>"$LOG_FILE" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$state/pid"
    t0=$SECONDS
    until grep -q "successfully listens" "$LOG_FILE"; do
        pid_alive "$pid" || die "azurite exited before becoming ready"
        if ((SECONDS - t0 > START_TIMEOUT)); then
            stop_group "$pid"
            die "azurite did not become ready within ${START_TIMEOUT}s"
        fi
        sleep 0.2
    done
    endpoint="http://127.0.0.1:$port/$ACCOUNT"
    python3 "$SCRIPT_DIR/create_container.py" "$endpoint" "$ACCOUNT" "$KEY" "$CONTAINER" >>"$LOG_FILE" 2>&1 \
        || { stop_group "$pid"; die "could not create container $CONTAINER at $endpoint"; }
    cat >"$state/env" <<ENV
export PROMOTE_TEST_AZBLOB_ENDPOINT=$endpoint
export PROMOTE_TEST_AZBLOB_CONTAINER=$CONTAINER
export PROMOTE_TEST_AZBLOB_ACCOUNT_NAME=$ACCOUNT
export PROMOTE_TEST_AZBLOB_ACCOUNT_KEY='$KEY'
ENV
    say "azurite $VERSION blob ready at $endpoint (pid $pid, container $CONTAINER); source $state/env"
}

cmd_stop() {
    local state=$1 pid
    [[ -f "$state/pid" ]] || { say "no pid file in $state; nothing to stop"; return 0; }
    pid=$(cat -- "$state/pid")
    [[ "$pid" =~ ^[0-9]+$ ]] || die "bad pid file $state/pid"
    if pid_alive "$pid"; then
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q azurite || die "pid $pid is not azurite; refusing to kill it"
        stop_group "$pid"
    fi
    rm -f -- "$state/pid" "$state/env"
    say "stopped azurite pid $pid"
}

[[ $# -eq 2 ]] || { echo "usage: $0 start|stop STATE_DIR" >&2; exit 2; }
case "$1" in
start) cmd_start "$2" ;;
stop) [[ -d "$2" ]] && cmd_stop "$(cd -- "$2" && pwd)" ;;
*) echo "usage: $0 start|stop STATE_DIR" >&2; exit 2 ;;
esac
