#!/usr/bin/env bash
# nginx's side of `cluster-http`: `return 200` from N worker processes, under
# wrk with bench/wrk/figures.lua. Prints the same figures as crew-bench.
#   --workers N (2)  --reuseport yes|no (no)  --connections C (64)  --seconds S (5)
#   --threads T (2)  --keep-alive yes|no (yes)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
workers=2 reuseport=no connections=64 seconds=5 threads=2 keep_alive=yes
while (($# >= 2)); do
  case $1 in
    --workers) workers=$2 ;; --reuseport) reuseport=$2 ;; --connections) connections=$2 ;;
    --seconds) seconds=$2 ;; --threads) threads=$2 ;; --keep-alive) keep_alive=$2 ;;
    *) echo "nginx/http.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift 2
done

dir=$(mktemp -d)
trap 'nginx -c "$dir/nginx.conf" -s stop 2>/dev/null || true; sleep 0.2; rm -rf "$dir"' EXIT
port=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
listen="127.0.0.1:$port"
[[ $reuseport == yes ]] && listen+=" reuseport"
cat > "$dir/nginx.conf" <<CONF
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  keepalive_requests 1000000;
  server {
    listen $listen;
    location / { return 200 "hello from nginx\n"; }
  }
}
CONF
nginx -c "$dir/nginx.conf"
for _ in $(seq 50); do [[ -s $dir/nginx.pid ]] && break; sleep 0.1; done
extra=()
[[ $keep_alive == no ]] && extra=(-H "Connection: close")
wrk -t "$threads" -c "$connections" -d "${seconds}s" -s "$here/../wrk/figures.lua" "${extra[@]}" "http://127.0.0.1:$port/" |
  grep -E '^[a-z_0-9]+ [0-9.]+ [a-z_]+$'
