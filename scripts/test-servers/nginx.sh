#!/usr/bin/env bash
# Runs a private nginx in the foreground on 127.0.0.1:PORT proxying to 127.0.0.1:UPSTREAM_PORT,
# with its config, logs and pid under DIR/nginx. The access log format is the timed combined one
# unless LOG_FORMAT is set; the access log is DIR/nginx/access.log unless ACCESS_LOG names
# another file (a folder shared with an agent, as with a Kubernetes sidecar). The upstream block lives in DIR/nginx/upstreams.conf (managed file).
# Usage: nginx.sh DIR PORT UPSTREAM_PORT
set -euo pipefail
DIR=$1 PORT=$2 UPSTREAM_PORT=$3
N="$DIR/nginx"
mkdir -p "$N/tmp"
FORMAT=${LOG_FORMAT:-'$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_time $upstream_response_time'}
[ -f "$N/upstreams.conf" ] || cat >"$N/upstreams.conf" <<CONF
upstream app {
    server 127.0.0.1:$UPSTREAM_PORT;
}
CONF
cat >"$N/nginx.conf" <<CONF
$( [ "$(id -u)" = 0 ] && echo "user root;" )
worker_processes 1;
pid $N/nginx.pid;
error_log $N/error.log warn;
events { worker_connections 256; }
http {
    client_body_temp_path $N/tmp/body;
    proxy_temp_path $N/tmp/proxy;
    fastcgi_temp_path $N/tmp/fastcgi;
    uwsgi_temp_path $N/tmp/uwsgi;
    scgi_temp_path $N/tmp/scgi;
    log_format vigil '$FORMAT';
    access_log ${ACCESS_LOG:-$N/access.log} vigil;
    include $N/upstreams.conf;
    server {
        listen 127.0.0.1:$PORT;
        location /stub_status { stub_status; access_log off; }
        location /static { return 200 "ok\n"; }
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
exec nginx -c "$N/nginx.conf" -g 'daemon off;'
