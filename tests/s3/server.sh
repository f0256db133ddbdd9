#!/usr/bin/env bash
# Install (into a private venv) and run a real local S3 server for promote's tests.
#
#   server.sh start      STATE_DIR   LocalStack S3 (no Docker), bucket "promote-test"
#   server.sh start-moto STATE_DIR   moto_server, bucket "promote-test"
#   server.sh stop       STATE_DIR   stop whichever server runs from STATE_DIR
#
# After a successful start, STATE_DIR holds:
#   env         shell `export` lines (PROMOTE_TEST_S3_ENDPOINT, PROMOTE_TEST_S3_BUCKET,
#               AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, PROMOTE_TEST_S3_SERVER)
#   pid         the server's pid (also its process-group id)
#   server.log  the server's output
#
# Venvs: $PROMOTE_S3_VENV (default <repo>/target/s3-venv) for LocalStack,
#        $PROMOTE_S3_VENV_MOTO (default <repo>/target/s3-venv-moto) for moto.
# A venv is (re)installed from the pinned requirements file only when its marker
# (sha256 of that file) is missing or differs. Python: $PROMOTE_S3_PYTHON (default python3).
# Startup timeout: $PROMOTE_S3_START_TIMEOUT seconds (default 60).
# Port: a free one on 127.0.0.1 is picked, unless $PROMOTE_S3_PORT names one.
# pip's output goes to STATE_DIR/install.log.
#
# Any failure prints the tail of the server log to stderr and exits non-zero.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/../.." && pwd)
BUCKET=promote-test
START_TIMEOUT=${PROMOTE_S3_START_TIMEOUT:-60}
PYTHON=${PROMOTE_S3_PYTHON:-python3}

say() { printf 'server.sh: %s\n' "$*" >&2; }

LOG_FILE=""
die() {
    say "ERROR: $*"
    if [[ -n "$LOG_FILE" && -f "$LOG_FILE" ]]; then
        say "---- last 40 lines of $LOG_FILE ----"
        tail -n 40 -- "$LOG_FILE" >&2 || true
        say "---- end of log ----"
    fi
    exit 1
}

# A server launched by this invocation that is not (yet) known good: stopped on any exit.
LAUNCHED_PID=""
LAUNCHED_STATE=""
on_exit() {
    if [[ -n "$LAUNCHED_PID" ]]; then
        stop_pid "$LAUNCHED_PID" 3 || true
        rm -f -- "$LAUNCHED_STATE/pid" "$LAUNCHED_STATE/env"
    fi
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

usage() {
    cat >&2 <<EOF
usage: $0 start STATE_DIR        start LocalStack S3 (venv: \${PROMOTE_S3_VENV:-$REPO_ROOT/target/s3-venv})
       $0 start-moto STATE_DIR   start moto_server  (venv: \${PROMOTE_S3_VENV_MOTO:-$REPO_ROOT/target/s3-venv-moto})
       $0 stop STATE_DIR         stop the server started from STATE_DIR
EOF
    exit 2
}

# ensure_venv VENV REQUIREMENTS: create VENV and pip-install REQUIREMENTS unless the
# marker file says this exact requirements file is already installed.
ensure_venv() {
    local venv=$1 req=$2 install_log=$3 want have="" marker
    [[ -f "$req" ]] || die "requirements file $req is missing"
    marker="$venv/.promote-requirements.sha256"
    want=$(sha256sum -- "$req" | cut -d' ' -f1)
    mkdir -p -- "$(dirname -- "$venv")"
    # Serialize concurrent installs into the same venv.
    exec 9>"$venv.lock"
    flock 9
    [[ -f "$marker" ]] && have=$(cat -- "$marker")
    if [[ "$have" != "$want" ]]; then
        say "installing $(basename -- "$req") into $venv (marker ${have:-missing}, want $want)"
        if [[ ! -x "$venv/bin/python" ]]; then
            "$PYTHON" -m venv -- "$venv" || die "python3 -m venv $venv failed"
        fi
        rm -f -- "$marker"
        LOG_FILE=$install_log
        "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -r "$req" \
            >"$install_log" 2>&1 || die "pip install -r $req into $venv failed"
        printf '%s\n' "$want" >"$marker"
        say "installed into $venv"
    fi
    flock -u 9
    exec 9>&-
}

free_port() {
    "$1/bin/python" - <<'EOF'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

# pid_alive PID: true if PID exists and is not a zombie.
pid_alive() {
    local state
    [[ -r "/proc/$1/stat" ]] || return 1
    state=$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ "$state" != "Z" && "$state" != "X" ]]
}

# Is PID one of ours (guards against a stale pid file and pid reuse)?
pid_is_server() {
    local cmd
    cmd=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
    [[ "$cmd" == *localstack.runtime.main* || "$cmd" == *moto_server* ]]
}

# pids_in_group PGID: print pids (not zombies) whose process group is PGID.
pids_in_group() {
    ps -e -o pid=,pgid=,stat= | awk -v g="$1" '$2 == g && $3 !~ /^[ZX]/ { print $1 }'
}

# stop_pid PID [GRACE_SECONDS]: TERM the process group, wait up to GRACE_SECONDS (default 20),
# then KILL; return once no process of the group is left.
stop_pid() {
    local pid=$1 grace=${2:-20} i
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM -- "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
        [[ -z "$(pids_in_group "$pid")" ]] && ! pid_alive "$pid" && return 0
        sleep 0.1
    done
    say "server (pgid $pid) did not exit on SIGTERM within ${grace}s; sending SIGKILL"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL -- "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        [[ -z "$(pids_in_group "$pid")" ]] && ! pid_alive "$pid" && return 0
        sleep 0.1
    done
    return 1
}

cmd_stop() {
    local state=$1 pid
    if [[ ! -f "$state/pid" ]]; then
        say "no pid file in $state; nothing to stop"
        return 0
    fi
    pid=$(cat -- "$state/pid")
    [[ "$pid" =~ ^[0-9]+$ ]] || die "bad pid file $state/pid: '$pid'"
    if ! pid_alive "$pid" && [[ -z "$(pids_in_group "$pid")" ]]; then
        say "server pid $pid is not running"
        rm -f -- "$state/pid" "$state/env"
        return 0
    fi
    if pid_alive "$pid" && ! pid_is_server "$pid"; then
        die "pid $pid from $state/pid is not a LocalStack/moto server; refusing to kill it"
    fi
    stop_pid "$pid" || die "server pid $pid (and its group) still running after SIGKILL"
    rm -f -- "$state/pid" "$state/env"
    say "stopped server pid $pid"
}

# create_bucket VENV ENDPOINT: signed CreateBucket (idempotent), retried for a few seconds.
create_bucket() {
    "$1/bin/python" - "$2" "$BUCKET" <<'EOF'
import sys, time
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError, ConnectionClosedError

endpoint, bucket = sys.argv[1], sys.argv[2]
s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    aws_access_key_id="test",
    aws_secret_access_key="test",
    region_name="us-east-1",
    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                  connect_timeout=5, read_timeout=30),
)
deadline = time.monotonic() + 20
while True:
    try:
        s3.create_bucket(Bucket=bucket)
        break
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code")
        if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            break
        if time.monotonic() > deadline:
            raise
    except (EndpointConnectionError, ConnectionClosedError):
        if time.monotonic() > deadline:
            raise
    time.sleep(0.25)
s3.head_bucket(Bucket=bucket)
print("bucket %s ready at %s" % (bucket, endpoint))
EOF
}

# launch KIND VENV STATE PORT: start the server in its own session/process group, echo its pid.
launch() {
    local kind=$1 venv=$2 state=$3 port=$4
    case "$kind" in
    localstack)
        # setsid (without -f) execs in place when not a group leader, which a
        # background job of a non-interactive shell never is; so $! is the server.
        # OVERRIDE_IN_DOCKER=0: LocalStack otherwise decides it runs in its own Docker
        # image when /.dockerenv exists (as on CI containers), ignores FILESYSTEM_ROOT
        # and writes to /var/lib/localstack and /usr/lib/localstack.
        # PYTHONUNBUFFERED: "Ready." must reach the log when it is printed.
        # TMPDIR keeps Python's tempfiles (S3 object spill files) inside STATE_DIR; it
        # earns a harmless "TMPDIR is deprecated" warning in the log.
        env PYTHONUNBUFFERED=1 \
            SERVICES=s3 \
            OVERRIDE_IN_DOCKER=0 \
            GATEWAY_LISTEN="127.0.0.1:$port" \
            EAGER_SERVICE_LOADING=1 \
            LOCALSTACK_TELEMETRY_DISABLED=1 \
            DISABLE_EVENTS=1 \
            SKIP_SSL_CERT_DOWNLOAD=1 \
            DNS_ADDRESS=0 \
            FILESYSTEM_ROOT="$state/fs" \
            TMPDIR="$state/tmp" \
            setsid "$venv/bin/python" -m localstack.runtime.main \
            </dev/null >>"$state/server.log" 2>&1 &
        ;;
    moto)
        env PYTHONUNBUFFERED=1 \
            TMPDIR="$state/tmp" \
            setsid "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" \
            </dev/null >>"$state/server.log" 2>&1 &
        ;;
    esac
    echo $!
}

cmd_start() {
    local kind=$1 state=$2 venv req ready_re pid port attempt t0 ok bindfail
    case "$kind" in
    localstack)
        venv=${PROMOTE_S3_VENV:-$REPO_ROOT/target/s3-venv}
        req=$SCRIPT_DIR/requirements-localstack.txt
        ready_re='^Ready\.'
        ;;
    moto)
        venv=${PROMOTE_S3_VENV_MOTO:-$REPO_ROOT/target/s3-venv-moto}
        req=$SCRIPT_DIR/requirements-moto.txt
        ready_re='Running on http://127\.0\.0\.1:'
        ;;
    esac
    mkdir -p -- "$state"
    state=$(cd -- "$state" && pwd)
    LOG_FILE=$state/server.log

    if [[ -f "$state/pid" ]]; then
        pid=$(cat -- "$state/pid")
        if [[ "$pid" =~ ^[0-9]+$ ]] && pid_alive "$pid" && pid_is_server "$pid"; then
            LOG_FILE=""
            die "a server (pid $pid) is already running from $state; run '$0 stop $state' first"
        fi
        rm -f -- "$state/pid"
    fi
    rm -f -- "$state/env"

    ensure_venv "$venv" "$req" "$state/install.log"

    mkdir -p -- "$state/fs" "$state/tmp"
    LOG_FILE=$state/server.log
    rm -f -- "$LOG_FILE".attempt*
    : >"$LOG_FILE"

    for attempt in 1 2 3; do
        if [[ -n "${PROMOTE_S3_PORT:-}" ]]; then
            port=$PROMOTE_S3_PORT
        else
            port=$(free_port "$venv") || die "could not pick a free port"
        fi
        printf '=== server.sh: starting %s on 127.0.0.1:%s (attempt %s) ===\n' "$kind" "$port" "$attempt" >>"$LOG_FILE"
        pid=$(launch "$kind" "$venv" "$state" "$port")
        LAUNCHED_PID=$pid
        LAUNCHED_STATE=$state
        printf '%s\n' "$pid" >"$state/pid"
        t0=$SECONDS
        ok=0
        bindfail=0
        while ((SECONDS - t0 < START_TIMEOUT)); do
            # LocalStack logs CannotListenError but still prints "Ready." and keeps
            # running without a listener, so a bind failure must be looked for first.
            if grep -qiE 'CannotListenError|address already in use|errno 98' "$LOG_FILE"; then
                bindfail=1
                break
            fi
            if grep -Eq -- "$ready_re" "$LOG_FILE"; then
                ok=1
                break
            fi
            if ! pid_alive "$pid"; then
                break
            fi
            sleep 0.2
        done
        if ((ok)); then
            break
        fi
        if ((bindfail)); then
            stop_pid "$pid" 3 || true
            rm -f -- "$state/pid"
            if [[ -z "${PROMOTE_S3_PORT:-}" ]] && ((attempt < 3)); then
                say "port $port was taken; retrying with another"
                mv -f -- "$LOG_FILE" "$LOG_FILE.attempt$attempt"
                continue
            fi
            die "$kind could not listen on 127.0.0.1:$port (address already in use)"
        fi
        if pid_alive "$pid"; then
            stop_pid "$pid" 3 || true
            rm -f -- "$state/pid"
            die "$kind did not become ready within ${START_TIMEOUT}s"
        fi
        stop_pid "$pid" 3 || true # leftover children of the group, if any
        rm -f -- "$state/pid"
        die "$kind exited before becoming ready"
    done

    local endpoint="http://127.0.0.1:$port"
    if ! create_bucket "$venv" "$endpoint" >>"$LOG_FILE" 2>&1; then
        stop_pid "$pid" 3 || true
        rm -f -- "$state/pid"
        die "could not create bucket $BUCKET at $endpoint"
    fi

    cat >"$state/env.tmp" <<EOF
export PROMOTE_TEST_S3_ENDPOINT=$endpoint
export PROMOTE_TEST_S3_BUCKET=$BUCKET
export PROMOTE_TEST_S3_SERVER=$kind
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1
EOF
    mv -f -- "$state/env.tmp" "$state/env"
    LAUNCHED_PID=""
    say "$kind S3 ready at $endpoint (pid $pid, bucket $BUCKET); source $state/env"
}

[[ $# -eq 2 ]] || usage
case "$1" in
start) cmd_start localstack "$2" ;;
start-moto) cmd_start moto "$2" ;;
stop)
    if [[ ! -d "$2" ]]; then
        say "state dir $2 does not exist; nothing to stop"
        exit 0
    fi
    cmd_stop "$(cd -- "$2" && pwd)"
    ;;
*) usage ;;
esac
