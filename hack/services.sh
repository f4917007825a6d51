#!/usr/bin/env bash
# Local backing services for the integration suites, on 127.0.0.1 only:
#   MariaDB  (read model, MySQL dialect)  port $THREADWEAVER_MYSQL_PORT    (default 3306)
#   dynalite (DynamoDB API, in memory)    port $THREADWEAVER_DYNAMODB_PORT (default 8000)
#
# Usage: hack/services.sh up|down|status|env
#   up      install what is missing (mariadb-server via apt, dynalite via npm into
#           .cache/services/node_modules), start both, wait until they accept connections.
#           Idempotent: when both already answer, it returns at once. A server on the port that
#           this script did not start is used when it answers as expected (e.g. the services of
#           another checkout); `down` never stops it.
#   down    stop exactly the processes this script started (pid files under .cache/services).
#   status  say what runs; exit 0 only if both are up and healthy.
#   env     print the export lines the test suites read:
#             THREADWEAVER_TEST_MYSQL_URL, THREADWEAVER_TEST_DYNAMODB_URL
#
# Everything lives under .cache/services/ (datadir, socket, pid files, logs). MariaDB's data is
# kept between runs (fast warm start); dynalite keeps its tables in memory (tests create unique
# tables and delete them). Runs as root (mariadbd gets --user=root) or as an ordinary user.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="$ROOT/.cache/services"
MYSQL_PORT="${THREADWEAVER_MYSQL_PORT:-3306}"
DYNAMO_PORT="${THREADWEAVER_DYNAMODB_PORT:-8000}"
HOST=127.0.0.1

DB_NAME=threadweaver
DB_USER=threadweaver
DB_PASS=threadweaver

MDB_DIR="$CACHE/mariadb"
MDB_DATA="$MDB_DIR/data"
MDB_TMP="$MDB_DIR/tmp"
MDB_PID="$MDB_DIR/mariadbd.pid"
MDB_LOG="$MDB_DIR/mariadbd.log"
MDB_SOCK="$MDB_DIR/mariadbd.sock"
# A Unix socket path must fit in 107 bytes; a deep checkout falls back to a short path.
if [ "${#MDB_SOCK}" -gt 100 ]; then
  MDB_SOCK="/tmp/threadweaver-mariadb-$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1).sock"
fi

DYN_DIR="$CACHE/dynalite"
DYN_PID="$DYN_DIR/dynalite.pid"
DYN_LOG="$DYN_DIR/dynalite.log"
DYN_VERSION="4.0.0"
DYN_CLI="$CACHE/node_modules/dynalite/cli.js"

START_TIMEOUT="${THREADWEAVER_SERVICES_TIMEOUT:-90}"

log() { printf 'services: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

as_root() { [ "$(id -u)" -eq 0 ]; }

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

need_apt() {  # need_apt PKG... : install Debian packages that are missing
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} (apt)"
  local sudo=""; as_root || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

pid_alive() {  # pid_alive PIDFILE PATTERN : the recorded process runs and is what we started
  local file="$1" pattern="$2" pid
  [ -s "$file" ] || return 1
  pid="$(tr -dc '0-9' <"$file")"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$pattern"
}

port_open() {  # port_open PORT : something accepts TCP connections on 127.0.0.1:PORT
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

check_same_port() {  # check_same_port FILE PORT NAME : ours runs, but on the port asked for?
  local was; was="$(cat "$1" 2>/dev/null || true)"
  [ -z "$was" ] || [ "$was" = "$2" ] || \
    die "$3 of this checkout runs on port $was, not $2: run \`hack/services.sh down\` first"
}

show_log() {  # show_log FILE
  if [ -s "$1" ]; then
    log "last lines of $1:"
    tail -n 40 "$1" >&2
  else
    log "(no log at $1)"
  fi
}

stop_pid() {  # stop_pid PIDFILE PATTERN NAME : TERM, wait, then KILL the recorded process only
  local file="$1" pattern="$2" name="$3" pid i
  if ! pid_alive "$file" "$pattern"; then
    rm -f "$file"; return 0
  fi
  pid="$(tr -dc '0-9' <"$file")"
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 300); do
    pid_alive "$file" "$pattern" || break
    sleep 0.1
  done
  if pid_alive "$file" "$pattern"; then
    log "$name did not stop in 30 s, killing pid $pid"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
  rm -f "$file"
}

# --------------------------------------------------------------------------------------------
# MariaDB
# --------------------------------------------------------------------------------------------

mariadb_client() {  # mariadb_client ARGS... : admin session over our socket
  local user=root
  as_root || user="$(id -un)"
  mariadb --no-defaults --protocol=socket -S "$MDB_SOCK" -u "$user" "$@"
}

mariadb_app_ok() {  # the application account can log in over TCP
  mariadb --no-defaults --protocol=tcp -h "$HOST" -P "$MYSQL_PORT" -u "$DB_USER" -p"$DB_PASS" \
    --connect-timeout=2 -N -e 'SELECT 1' "$DB_NAME" >/dev/null 2>&1
}

mariadb_running() { pid_alive "$MDB_PID" mariadbd; }

mariadb_install() {
  command -v mariadbd >/dev/null 2>&1 && command -v mariadb-install-db >/dev/null 2>&1 \
    || need_apt mariadb-server mariadb-client
}

mariadb_init_datadir() {
  [ -d "$MDB_DATA/mysql" ] && return 0
  log "initialising MariaDB datadir $MDB_DATA"
  rm -rf "$MDB_DATA"
  mkdir -p "$MDB_DATA" "$MDB_TMP"
  local user_opt=(); as_root && user_opt=(--user=root) || user_opt=(--user="$(id -un)")
  if ! mariadb-install-db --no-defaults --datadir="$MDB_DATA" "${user_opt[@]}" \
        --auth-root-authentication-method=socket --skip-test-db \
        >"$MDB_DIR/install-db.log" 2>&1; then
    show_log "$MDB_DIR/install-db.log"
    rm -rf "$MDB_DATA"
    die "mariadb-install-db failed"
  fi
}

mariadb_start() {
  mkdir -p "$MDB_DIR" "$MDB_TMP"
  if mariadb_running; then
    check_same_port "$MDB_DIR/port" "$MYSQL_PORT" MariaDB
    return 0
  fi
  if port_open "$MYSQL_PORT"; then
    die "port $HOST:$MYSQL_PORT is already taken by a process this script did not start;
          stop it or choose another port: THREADWEAVER_MYSQL_PORT=3307 hack/services.sh up"
  fi
  mariadb_install
  mariadb_init_datadir
  local user_opt=(); as_root && user_opt=(--user=root)
  rm -f "$MDB_SOCK" "$MDB_PID"
  log "starting MariaDB on $HOST:$MYSQL_PORT (log: $MDB_LOG)"
  # Durability is relaxed (flush the log once a second): this instance only serves tests.
  setsid nohup mariadbd --no-defaults "${user_opt[@]}" \
      --datadir="$MDB_DATA" --tmpdir="$MDB_TMP" \
      --socket="$MDB_SOCK" --pid-file="$MDB_PID" --log-error="$MDB_LOG" \
      --port="$MYSQL_PORT" --bind-address="$HOST" --skip-name-resolve \
      --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
      --max-connections=500 --innodb-buffer-pool-size=128M \
      --innodb-flush-log-at-trx-commit=2 --innodb-use-native-aio=0 \
      --skip-log-bin </dev/null >>"$MDB_LOG" 2>&1 9>&- &
  # setsid/nohup exec into mariadbd (same pid); it rewrites this file with that pid itself.
  echo $! >"$MDB_PID"
  echo "$MYSQL_PORT" >"$MDB_DIR/port"
}

mariadb_wait() {
  local deadline=$((SECONDS + START_TIMEOUT))
  until mariadb_client -N -e 'SELECT 1' >/dev/null 2>&1; do
    if ! mariadb_running; then
      show_log "$MDB_LOG"
      die "MariaDB exited during start-up"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      show_log "$MDB_LOG"
      die "MariaDB did not accept connections within ${START_TIMEOUT}s"
    fi
    sleep 0.2
  done
}

mariadb_provision() {  # idempotent: database, application user, grants
  mariadb_client <<SQL
CREATE DATABASE IF NOT EXISTS \`$DB_NAME\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL PRIVILEGES ON \`$DB_NAME\`.* TO '$DB_USER'@'127.0.0.1', '$DB_USER'@'localhost';
GRANT ALL PRIVILEGES ON \`tw\\_%\`.* TO '$DB_USER'@'127.0.0.1', '$DB_USER'@'localhost';
GRANT ALL PRIVILEGES ON \`threadweaver\\_test%\`.* TO '$DB_USER'@'127.0.0.1', '$DB_USER'@'localhost';
FLUSH PRIVILEGES;
SQL
}

mariadb_up() {
  if mariadb_app_ok; then   # ours, or one started elsewhere (another checkout) that serves us
    mariadb_running || log "using the MariaDB/MySQL already answering on $HOST:$MYSQL_PORT (not started by this script)"
    return 0
  fi
  mariadb_start
  mariadb_wait
  mariadb_provision || { show_log "$MDB_LOG"; die "could not create the database and user"; }
  mariadb_app_ok || { show_log "$MDB_LOG"; die "MariaDB runs but $DB_USER cannot log in over TCP"; }
  log "MariaDB ready on $HOST:$MYSQL_PORT"
}

mariadb_down() {
  if mariadb_running; then
    local pid; pid="$(tr -dc '0-9' <"$MDB_PID")"
    log "stopping MariaDB (pid $pid)"
    mariadb-admin --no-defaults --protocol=socket -S "$MDB_SOCK" \
      -u "$(as_root && echo root || id -un)" shutdown >/dev/null 2>&1 || true
    local i
    for i in $(seq 1 300); do
      [ -r "/proc/$pid/cmdline" ] || break
      sleep 0.1
    done
  fi
  stop_pid "$MDB_PID" mariadbd MariaDB
}

# --------------------------------------------------------------------------------------------
# dynalite
# --------------------------------------------------------------------------------------------

dynalite_install() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || need_apt nodejs npm
  [ -f "$DYN_CLI" ] && return 0
  log "installing dynalite@$DYN_VERSION into $CACHE/node_modules (npm)"
  mkdir -p "$CACHE"
  npm install --prefix "$CACHE" --no-audit --no-fund --no-save --loglevel=error \
    "dynalite@$DYN_VERSION" >&2 || die "npm install dynalite failed"
  [ -f "$DYN_CLI" ] || die "npm did not install $DYN_CLI"
}

dynalite_running() { pid_alive "$DYN_PID" dynalite; }

dynalite_ok() {  # a real DynamoDB API call (ListTables) answers
  command -v node >/dev/null 2>&1 || return 1
  node -e '
    const req = require("http").request({host: process.argv[1], port: +process.argv[2], method: "POST",
      path: "/", timeout: 2000, headers: {
        "Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "DynamoDB_20120810.ListTables",
        "X-Amz-Date": "20240101T000000Z",
        "Authorization": "AWS4-HMAC-SHA256 Credential=local/20240101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0"}},
      (res) => { let body = ""; res.on("data", (c) => body += c);
                 res.on("end", () => process.exit(body.includes("TableNames") ? 0 : 1)); });
    req.on("error", () => process.exit(1)); req.on("timeout", () => process.exit(1));
    req.end("{}");' "$HOST" "$DYNAMO_PORT" >/dev/null 2>&1
}

dynalite_start() {
  mkdir -p "$DYN_DIR"
  if dynalite_running; then
    check_same_port "$DYN_DIR/port" "$DYNAMO_PORT" dynalite
    return 0
  fi
  if port_open "$DYNAMO_PORT"; then
    die "port $HOST:$DYNAMO_PORT is already taken by a process this script did not start;
          stop it or choose another port: THREADWEAVER_DYNAMODB_PORT=8001 hack/services.sh up"
  fi
  dynalite_install
  log "starting dynalite on $HOST:$DYNAMO_PORT (log: $DYN_LOG)"
  setsid nohup node "$DYN_CLI" --host "$HOST" --port "$DYNAMO_PORT" \
      --createTableMs 20 --deleteTableMs 20 --updateTableMs 20 \
      </dev/null >>"$DYN_LOG" 2>&1 9>&- &
  echo $! >"$DYN_PID"
  echo "$DYNAMO_PORT" >"$DYN_DIR/port"
}

dynalite_wait() {
  local deadline=$((SECONDS + START_TIMEOUT))
  until dynalite_ok; do
    if ! dynalite_running; then
      show_log "$DYN_LOG"
      die "dynalite exited during start-up"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      show_log "$DYN_LOG"
      die "dynalite did not answer within ${START_TIMEOUT}s"
    fi
    sleep 0.1
  done
}

dynalite_up() {
  if dynalite_ok; then      # ours, or a DynamoDB API server started elsewhere
    dynalite_running || log "using the DynamoDB API already answering on $HOST:$DYNAMO_PORT (not started by this script)"
    return 0
  fi
  dynalite_start
  dynalite_wait
  log "dynalite ready on $HOST:$DYNAMO_PORT"
}

dynalite_down() { stop_pid "$DYN_PID" dynalite dynalite; }

# --------------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------------

print_env() {
  echo "export THREADWEAVER_TEST_MYSQL_URL=mysql+aiomysql://$DB_USER:$DB_PASS@$HOST:$MYSQL_PORT/$DB_NAME"
  echo "export THREADWEAVER_TEST_DYNAMODB_URL='dynamodb://$HOST:$DYNAMO_PORT?region=us-east-1'"
}

status() {
  local rc=0
  if mariadb_running && mariadb_app_ok; then
    echo "mariadb:  up   $HOST:$MYSQL_PORT pid $(tr -dc '0-9' <"$MDB_PID")"
  elif mariadb_app_ok; then
    echo "mariadb:  up   $HOST:$MYSQL_PORT (external: not started by this script)"
  elif mariadb_running; then
    echo "mariadb:  running but not answering (pid $(tr -dc '0-9' <"$MDB_PID"), log $MDB_LOG)"; rc=1
  else
    echo "mariadb:  down"; rc=1
  fi
  if dynalite_running && dynalite_ok; then
    echo "dynalite: up   $HOST:$DYNAMO_PORT pid $(tr -dc '0-9' <"$DYN_PID")"
  elif dynalite_ok; then
    echo "dynalite: up   $HOST:$DYNAMO_PORT (external: not started by this script)"
  elif dynalite_running; then
    echo "dynalite: running but not answering (pid $(tr -dc '0-9' <"$DYN_PID"), log $DYN_LOG)"; rc=1
  else
    echo "dynalite: down"; rc=1
  fi
  return $rc
}

with_lock() {  # serialise up/down between concurrent callers (parallel test sessions)
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.lock"
  flock -w 300 9 || die "another hack/services.sh holds $CACHE/.lock"
  "$@"
}

healthy() { mariadb_app_ok && dynalite_ok; }

up() {
  healthy && return 0   # another caller may have started them while we waited for the lock
  # Start both (the slow parts run concurrently), then wait for each.
  mariadb_up &
  local mpid=$!
  local drc=0 mrc=0
  dynalite_up || drc=$?
  wait "$mpid" || mrc=$?
  [ "$mrc" -eq 0 ] || die "MariaDB failed to start (see above)"
  [ "$drc" -eq 0 ] || die "dynalite failed to start (see above)"
}

down() {
  dynalite_down
  mariadb_down
}

case "${1:-}" in
  up)     healthy || with_lock up ;;
  down)   with_lock down ;;
  status) status ;;
  env)    print_env ;;
  *)      echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
