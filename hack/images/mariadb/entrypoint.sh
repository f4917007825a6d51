#!/bin/sh
# First start: initialise the datadir, create the database and the application user
# (MARIADB_DATABASE, MARIADB_USER, MARIADB_PASSWORD) with a server on the socket only; then
# run mariadbd in the foreground as user mysql (it handles SIGTERM: clean shutdown).
set -eu
DATADIR=/var/lib/mysql
SOCK=/run/mysqld/mysqld.sock
OPTS="--no-defaults --user=mysql --datadir=$DATADIR --socket=$SOCK --skip-name-resolve
  --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci --max-connections=500
  --innodb-buffer-pool-size=128M --innodb-flush-log-at-trx-commit=2 --innodb-use-native-aio=0
  --skip-log-bin"
if [ "$(id -u)" = 0 ]; then chown -R mysql:mysql "$DATADIR" /run/mysqld; fi
if [ ! -d "$DATADIR/mysql" ]; then
  echo "entrypoint: initialising $DATADIR"
  mariadb-install-db --no-defaults --user=mysql --datadir="$DATADIR" --skip-test-db \
    --auth-root-authentication-method=socket >/dev/null
  # shellcheck disable=SC2086
  mariadbd $OPTS --skip-networking &
  pid=$!
  i=0
  until mariadb-admin --no-defaults -S "$SOCK" -uroot ping >/dev/null 2>&1; do
    i=$((i + 1)); [ "$i" -lt 300 ] || { echo "entrypoint: mariadbd did not start" >&2; exit 1; }
    sleep 0.2
  done
  db=${MARIADB_DATABASE:-}
  user=${MARIADB_USER:-}
  {
    [ -z "$db" ] || echo "CREATE DATABASE IF NOT EXISTS \`$db\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"
    if [ -n "$user" ]; then
      echo "CREATE USER IF NOT EXISTS '$user'@'%' IDENTIFIED BY '${MARIADB_PASSWORD:-}';"
      [ -z "$db" ] || echo "GRANT ALL PRIVILEGES ON \`$db\`.* TO '$user'@'%';"
    fi
  } | mariadb --no-defaults -S "$SOCK" -uroot
  mariadb-admin --no-defaults -S "$SOCK" -uroot shutdown
  wait "$pid" || true
  echo "entrypoint: database ${db:-<none>} and user ${user:-<none>} created"
fi
# shellcheck disable=SC2086
exec mariadbd $OPTS --bind-address=0.0.0.0 --port=3306 "$@"
