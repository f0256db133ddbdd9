# Sourced by the bench scripts: nginx on a free loopback port serving WWW, with a private
# config under DIR/nginx and no root-owned paths; EXTRA is added to its `http` block (for
# example `limit_rate 8m;`). Sets `base` (http://127.0.0.1:PORT) and stops nginx on exit.
#
#   start_nginx DIR WWW [EXTRA]
start_nginx() {
  local dir=$1 www=$2 extra=${3:-} port nginx_bin
  nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p "$dir/nginx/tmp"
  cat > "$dir/nginx/nginx.conf" <<EOF
user $(id -un);
worker_processes 2;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  default_type application/octet-stream;
  client_body_temp_path $dir/nginx/tmp/body;
  proxy_temp_path $dir/nginx/tmp/proxy;
  fastcgi_temp_path $dir/nginx/tmp/fastcgi;
  uwsgi_temp_path $dir/nginx/tmp/uwsgi;
  scgi_temp_path $dir/nginx/tmp/scgi;
  $extra
  server { listen 127.0.0.1:$port; root $www; }
}
EOF
  "$nginx_bin" -c "$dir/nginx/nginx.conf" -p "$dir/nginx" -e "$dir/nginx/error.log"
  nginx_pid_file=$dir/nginx/nginx.pid
  base=http://127.0.0.1:$port
}

# Stops the nginx start_nginx started (for an EXIT trap).
stop_nginx() {
  [ -n "${nginx_pid_file:-}" ] && [ -f "$nginx_pid_file" ] && kill "$(cat "$nginx_pid_file")" 2>/dev/null || true
}

# Waits (up to 5 s) until URL answers.
wait_url() {
  for _ in $(seq 50); do
    python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1]).read(1)" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nginx does not answer $1" >&2
  return 1
}
