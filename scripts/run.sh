#!/usr/bin/env bash
# Run the whole platform locally on embedded defaults. Ctrl-C stops every process started here.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-system.sh nginx=nginx docker-registry=docker-registry msgfmt=gettext

PY=.venv/bin/python
VAR_DIR=${VAR_DIR:-$PWD/var}
export VAR_DIR
mkdir -p "$VAR_DIR/log"

$PY manage.py migrate --no-input -v0
# The translations (locale/*.po) are compiled here; *.mo files are never committed.
$PY manage.py compilemessages --ignore=.venv --ignore=var -v0
$PY manage.py collectstatic --no-input -v0

pids=()
stop() { # stop [STATUS]: end every process started here, then exit
  trap - INT TERM EXIT
  echo; echo "==> stopping"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  exit "${1:-0}"
}
trap 'stop 0' INT TERM
trap 'stop $?' EXIT

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
# The edge: configs rendered into EDGE_RUN_DIR, a first gate map (beat keeps it current every
# EDGE_GATE_SYNC_SECONDS), then the pull-through registry (manifests), the token helper and
# nginx (gate, access log, blob cache) in the foreground.
eval "$($PY manage.py edge_render --shell)"
$PY manage.py edge_sync >/dev/null
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
# Distribution in proxy mode exits at start when it cannot reach UPSTREAM_URL (offline, DNS):
# retry every 5 s rather than stop everything; meanwhile nginx answers 502 and Docker falls
# back to Docker Hub by itself.
registry_supervised() {
  local child=
  trap '[ -n "$child" ] && kill "$child" 2>/dev/null; exit 0' TERM INT
  while :; do
    docker-registry serve "$1" &
    child=$!
    wait "$child" || true
    echo "==> registry exited; retrying in 5 s"
    sleep 5 &
    wait $! || true
  done
}
start registry registry_supervised "$EDGE_RUN_DIR/registry.yml"
# Bearer tokens for the blob cache's fetches from UPSTREAM_URL (no database needed).
start edge-token $PY manage.py edge_token
start nginx "$NGINX" -p "$EDGE_RUN_DIR/" -c "$EDGE_RUN_DIR/nginx.conf" \
  -e "$EDGE_RUN_DIR/logs/error.log"

cat <<MSG

  Open http://127.0.0.1:8000/ and sign up. Emails (the verification link) print in
  var/log/gunicorn.log. Press Ctrl-C to stop everything.
  The mirror listens on http://$EDGE_LISTEN: after "Start your accelerator", put your
  http://<label>.<MIRROR_DOMAIN>:<port> in Docker's registry-mirrors.

MSG
# Only a process that ends by itself gets here (Ctrl-C runs stop through the trap).
wait -n "${pids[@]}" || true
echo "==> a process exited unexpectedly; see var/log/" >&2
stop 1
