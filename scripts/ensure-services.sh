#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer; start them when they do not and this is root on Debian.
set -euo pipefail
pg_host=127.0.0.1; pg_port=5432; redis_port=6379

pg_up() { pg_isready -q -h "$pg_host" -p "$pg_port" 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null | grep -q PONG; }

if ! pg_up; then
  if [ "$(id -u)" = 0 ] && command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "==> starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start || true
    for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  fi
  pg_up || { echo "PostgreSQL does not answer on $pg_host:$pg_port (apt-get install postgresql, trust auth for user postgres)" >&2; exit 1; }
fi
if ! redis_up; then
  if [ "$(id -u)" = 0 ] && command -v redis-server >/dev/null 2>&1; then
    echo "==> starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
    for _ in $(seq 1 30); do redis_up && break; sleep 1; done
  fi
  redis_up || { echo "Redis does not answer on 127.0.0.1:$redis_port (apt-get install redis-server)" >&2; exit 1; }
fi
