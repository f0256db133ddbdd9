#!/usr/bin/env bash
# Benchmark: `promote run` on a manifest of N lines (default 1,000,000 URLs on 127.0.0.1): how
# long from start to the first request the server sees, and the peak RSS a few seconds into
# the run, and over a whole run with --max 2000 (the other lines read back and reported skipped
# at the end); then `promote status` on a ledger of N jobs (made with sqlite3 from Python, in the
# schema the run created: most promoted, some failed, some planned), timed.
#
#   bash bench/run-big-manifest.sh [N] [ROUNDS] [DIR]
#
# DIR (default target/bench-big-manifest) holds the manifest (kept between invocations).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
rounds=${2:-3}
dir=${3:-target/bench-big-manifest}
cargo build --release -q -p promote-cli
bin=$PWD/target/release/promote
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
server=
cleanup() { [ -z "$server" ] || kill "$server" 2>/dev/null || true; pkill -f "$dir/m.jsonl" 2>/dev/null || true; rm -rf "$dir/run" "$dir/root"; }
trap cleanup EXIT

# The manifest: N distinct URLs (the port is part of each line, so it is made anew each time).
python3 - "$dir/m.jsonl" "$n" "$port" <<'EOF'
import json, sys
path, n, port = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(path, "w") as f:
    for i in range(n):
        f.write(json.dumps({"source": f"http://127.0.0.1:{port}/f/{i}", "key": f"papers/{i:07d}.pdf"}) + "\n")
EOF
# A server that notes when each request came and answers one byte.
python3 - "$port" "$dir/requests" <<'EOF' &
import http.server, sys, time
port, log = int(sys.argv[1]), sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(log, "a") as f:
            f.write(f"{time.time()}\n")
        self.send_response(200); self.send_header("Content-Length", "1"); self.end_headers()
        try:
            self.wfile.write(b"x")
        except OSError:
            pass
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
EOF
server=$!
sleep 1

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
: > "$dir/first.t"; : > "$dir/rss.m"
for r in $(seq "$rounds"); do
  rm -rf "$dir/run" "$dir/root" "$dir/requests"; sync
  t0=$(date +%s.%N)
  "$bin" --root "$dir/root" run "$dir/m.jsonl" --out "$dir/run" -q >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 600); do [ -s "$dir/requests" ] && break; sleep 0.05; done
  [ -s "$dir/requests" ] || { echo "no request within 30 s" >&2; exit 1; }
  python3 -c "import sys; print(float(open(sys.argv[1]).readline()) - float(sys.argv[2]))" "$dir/requests" "$t0" >> "$dir/first.t"
  sleep 5
  awk '/^VmHWM/ {print $2}' "/proc/$pid/status" >> "$dir/rss.m"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "round $r done" >&2
done

# A whole run with --max 2000: planning, 2,000 fetches, and every other line read back from the
# manifest at the end and reported skipped; its peak RSS over the whole run.
: > "$dir/whole.m"
for r in $(seq "$rounds"); do
  rm -rf "$dir/run2" "$dir/root2"
  /usr/bin/time -f '%M' -o "$dir/whole.one" "$bin" --root "$dir/root2" run "$dir/m.jsonl" --out "$dir/run2" --max 2000 -q >/dev/null 2>&1
  cat "$dir/whole.one" >> "$dir/whole.m"
done
rm -rf "$dir/run2" "$dir/root2"

# A ledger of N jobs in the schema the run made.
python3 - "$dir/run/ledger.sqlite3" "$n" <<'EOF'
import os, random, sqlite3, sys
db = sqlite3.connect(sys.argv[1]); n = int(sys.argv[2])
first = (db.execute("SELECT max(id) FROM jobs").fetchone()[0] or 0) + 1
states = ["promoted"] * 90 + ["failed"] * 5 + ["planned"] * 5
db.executemany("INSERT OR IGNORE INTO jobs (id, job, key, reason) VALUES (?, ?, ?, 'http-404')",
               ((first + i, os.urandom(32), f"x/{i:07d}") for i in range(n)))
db.executemany("INSERT OR IGNORE INTO states (id, state, attempts, updated_ms) VALUES (?, ?, 1, 1700000000000)",
               ((first + i, random.choice(states)) for i in range(n)))
db.commit()
EOF
: > "$dir/status.t"
for r in $(seq "$rounds"); do
  /usr/bin/time -f '%e' -o "$dir/status.one" "$bin" status "$dir/run" >/dev/null
  cat "$dir/status.one" >> "$dir/status.t"
done
echo "promote run, $n-line manifest of URLs on 127.0.0.1, $rounds rounds (medians):"
echo "  first request after $(median < "$dir/first.t" | awk '{printf "%.2f", $1}') s (rounds: $(tr '\n' ' ' < "$dir/first.t" | awk '{for (i = 1; i <= NF; i++) printf "%.2f ", $i}'))"
echo "  peak RSS 5 s in: $(median < "$dir/rss.m" | awk '{printf "%.0f MiB", $1 / 1024}')"
echo "  peak RSS of a whole run with --max 2000 (the rest reported skipped): $(median < "$dir/whole.m" | awk '{printf "%.0f MiB", $1 / 1024}')"
echo "promote status on a ledger of $n jobs: $(median < "$dir/status.t") s"
