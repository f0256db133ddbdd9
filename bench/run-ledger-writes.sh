#!/usr/bin/env bash
# Benchmark: what a `promote run` of COUNT small local files writes (the kernel's write_bytes
# for the process: objects, staging, ledger and its WAL), on a first run and on a rerun that
# finds everything present, with the time of each; then the first run again with the run
# directory on tmpfs, which leaves out the ledger's writes (the difference is the ledger's).
#
#   bash bench/run-ledger-writes.sh [COUNT] [DIR] [PROMOTE]
#
# Defaults: 20000 files under target/bench-ledger, the release binary (built if missing).
# `--durability none`, so fsyncs do not hide what is written. Counted through a shell, whose
# /proc/self/io includes its reaped child's.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-20000}
dir=${2:-target/bench-ledger}
promote=${3:-target/release/promote}
[ -x "$promote" ] || cargo build --release -q -p promote-cli
promote=$(realpath "$promote")
rm -rf "$dir"; mkdir -p "$dir/src"; cd "$dir"
python3 - "$count" <<'PY'
import json, os, sys
with open("m.jsonl", "w") as m:
    for i in range(int(sys.argv[1])):
        p = f"src/f{i}"
        with open(p, "w") as f:
            f.write(f"file {i}\n")
        m.write(json.dumps({"source": os.path.abspath(p), "key": f"k/{i}"}) + "\n")
PY
measure() { # LABEL RUN-DIR
  bash -c "s=\$(date +%s%N); '$promote' run -q m.jsonl --out '$2' --durability none; e=\$(date +%s%N);
           w=\$(awk '/^write_bytes/ {print \$2}' /proc/\$\$/io); c=\$(awk '/^wchar/ {print \$2}' /proc/\$\$/io);
           echo \"$1: \$w bytes written (\$((w / $count)) per item; write calls \$((c / $count)) bytes per item), \$(( (e - s) / 1000000 )) ms\""
}
measure "first run" run
measure "rerun    " run
# The ledger's share: the same first run with the run directory on tmpfs (whose writes never
# reach the block layer) writes the objects only; the difference is the ledger.
if [ -d /dev/shm ]; then
  shm=/dev/shm/promote-bench-ledger-$$
  rm -rf run promote-data "$shm"; sync
  measure "first run, run directory on tmpfs (objects only)" "$shm"
  rm -rf "$shm"
fi
