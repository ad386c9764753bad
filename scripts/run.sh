#!/usr/bin/env bash
# Run the whole platform locally on embedded defaults. Ctrl-C stops every process started here.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-system.sh nginx=nginx docker-registry=docker-registry

PY=.venv/bin/python
VAR_DIR=${VAR_DIR:-$PWD/var}
export VAR_DIR
mkdir -p "$VAR_DIR/log"

$PY manage.py migrate --no-input -v0
$PY manage.py collectstatic --no-input -v0

pids=()
stop() {
  trap - INT TERM EXIT
  echo; echo "==> stopping"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

start() { # start NAME CMD...: run in the background, log to var/log/NAME.log
  local name=$1; shift
  "$@" >"$VAR_DIR/log/$name.log" 2>&1 &
  pids+=($!)
  echo "    $name (pid $!, log var/log/$name.log)"
}

echo "==> starting"
start gunicorn .venv/bin/gunicorn config.wsgi -c deploy/gunicorn.conf.py --bind 127.0.0.1:8000
start celery-worker .venv/bin/celery -A config worker --loglevel=info --concurrency=2
start celery-beat .venv/bin/celery -A config beat --loglevel=info \
  --schedule "$VAR_DIR/celerybeat-schedule"
# RUN_EDGE_HOOK: the edge (nginx and the registry) joins here.

cat <<MSG

  Open http://127.0.0.1:8000/ and sign up. Emails (the verification link) print in
  var/log/gunicorn.log. Press Ctrl-C to stop everything.

MSG
wait -n "${pids[@]}" || true
echo "==> a process exited; see var/log/" >&2
