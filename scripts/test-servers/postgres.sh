#!/usr/bin/env bash
# Runs a private PostgreSQL cluster in the foreground on 127.0.0.1:PORT with its data and socket
# under DIR (created with initdb on first use; role `vigil` gets pg_monitor). As root, the server
# runs as the `postgres` user. Usage: postgres.sh DIR PORT
set -euo pipefail
DIR=$1 PORT=$2
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg=()
if [ "$(id -u)" = 0 ]; then
  as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups --pdeathsig=KILL)
  mkdir -p "$DIR/pg" && chown postgres: "$DIR/pg"
else
  mkdir -p "$DIR/pg"
fi
if [ ! -f "$DIR/pg/data/PG_VERSION" ]; then
  "${as_pg[@]}" "$BIN/initdb" -D "$DIR/pg/data" -U postgres -A trust --no-sync >"$DIR/pg/initdb.log" 2>&1 ||
    { echo "postgres.sh: initdb failed, see $DIR/pg/initdb.log" >&2; exit 1; }
  cat >>"$DIR/pg/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR/pg'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 50
# pg_top_statements reads pg_stat_statements (Debian's postgresql ships it; tests create it).
shared_preload_libraries = 'pg_stat_statements'
CONF
  # Roles and the tables tests use are created once the server accepts connections.
  ( for _ in $(seq 1 100); do
      if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
        "$BIN/psql" -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 >/dev/null <<SQL
CREATE ROLE vigil LOGIN;
GRANT pg_monitor TO vigil;
GRANT pg_signal_backend TO vigil;
CREATE ROLE app LOGIN;
CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL);
INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 10) g;
GRANT ALL ON accounts TO app;
SQL
        touch "$DIR/pg/ready"; exit 0
      fi
      sleep 0.1
    done ) &
fi
exec "${as_pg[@]}" "$BIN/postgres" -D "$DIR/pg/data" -p "$PORT"
