#!/usr/bin/env bash
# Run the whole platform locally on embedded defaults. Ctrl-C stops every process started here.
# Works whatever ran before: a manage.py command that created var/ (Django's file cache makes
# it 0700), or an earlier run that was killed and left its processes behind.
set -euo pipefail
# Each process started below gets its own process group (job control): Ctrl-C reaches this
# script alone, whose trap then stops them all, group by group, in one place.
set -m
cd "$(dirname "$0")/.."

fail() { echo "make run: $*" >&2; exit 1; }

end_all() { # end_all PID...: ask each leader to stop (gunicorn, Celery and nginx stop their
  # own children; a TERM to a Celery pool child would leave its master waiting forever), give
  # them 20 s for their warm shutdowns, then kill what is left, group and all.
  local pid left=("$@") still
  for pid in "$@"; do kill "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 100); do
    still=()
    for pid in "${left[@]}"; do kill -0 "$pid" 2>/dev/null && still+=("$pid"); done
    left=("${still[@]}")
    [ ${#left[@]} -eq 0 ] && return 0
    sleep 0.2
  done
  for pid in "${left[@]}"; do
    echo "==> pid $pid did not stop within 20 s; killing it" >&2
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  done
}

scripts/ensure-system.sh nginx=nginx docker-registry=docker-registry msgfmt=gettext

PY=.venv/bin/python
VAR_DIR=${VAR_DIR:-$PWD/var}
export VAR_DIR
WEB_LISTEN=${WEB_LISTEN:-127.0.0.1:8000}
PIDS_FILE=$VAR_DIR/run.pids
mkdir -p "$VAR_DIR/log" || fail "cannot create $VAR_DIR/log"
# nginx's workers (user nobody when started as root) reach the blob cache and the access log
# under VAR_DIR: the directory must be searchable by others, whoever created it first.
chmod o+x "$VAR_DIR" || fail "cannot make $VAR_DIR searchable (chmod o+x)"

# Processes an earlier run left behind (killed with SIGKILL, terminal closed): each line of the
# pid file is "<pid> <name>"; a pid is ended only while its command line is still what we
# started, so a recycled pid is left alone.
if [ -f "$PIDS_FILE" ]; then
  left=()
  while read -r pid name; do
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$name"; then
      echo "==> stopping $name (pid $pid) left by an earlier run"
      left+=("$pid")
    fi
  done <"$PIDS_FILE"
  end_all "${left[@]}"
  rm -f "$PIDS_FILE"
fi

# The edge's configs are rendered first: a wrong setting stops here, before anything starts,
# with its own message.
edge_env=$($PY manage.py edge_render --shell) || fail "the edge's configuration is not valid (see above)"
eval "$edge_env"

echo "==> preparing the database, translations and static files"
$PY manage.py migrate --no-input -v0 || fail "migrate failed (see above)"
# The translations (locale/*.po) are compiled here; *.mo files are never committed.
$PY manage.py compilemessages --ignore=.venv --ignore=var -v0 || fail "compilemessages failed"
$PY manage.py collectstatic --no-input -v0 || fail "collectstatic failed"
$PY manage.py edge_sync >/dev/null || fail "the first gate map could not be written (see above)"

pids=()
stop() { # stop [STATUS]: end every process started here, then exit
  trap - INT TERM HUP EXIT
  echo; echo "==> stopping"
  end_all "${pids[@]}"
  wait 2>/dev/null || true
  rm -f "$PIDS_FILE"
  exit "${1:-0}"
}
trap 'stop 0' INT TERM HUP
trap 'stop $?' EXIT

start() { # start NAME MATCH CMD...: run in the background, log to var/log/NAME.log
  local name=$1 match=$2; shift 2
  "$@" >"$VAR_DIR/log/$name.log" 2>&1 &
  pids+=($!)
  echo "$! $match" >>"$PIDS_FILE"
  echo "    $name (pid $!, log var/log/$name.log)"
}


echo "==> starting"
start gunicorn gunicorn .venv/bin/gunicorn config.wsgi -c deploy/gunicorn.conf.py --bind "$WEB_LISTEN"
start celery-worker celery .venv/bin/celery -A config worker --loglevel=info --concurrency=2
start celery-beat celery .venv/bin/celery -A config beat --loglevel=info \
  --schedule "$VAR_DIR/celerybeat-schedule"
# The edge: configs rendered into EDGE_RUN_DIR above, a first gate map (beat keeps it current
# every EDGE_GATE_SYNC_SECONDS), then the pull-through registry (manifests), the token helper
# and nginx (gate, access log, blob cache).
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
start registry run.sh registry_supervised "$EDGE_RUN_DIR/registry.yml"
# One more per registry in UPSTREAMS (registry-<name>.yml, rendered above).
for conf in "$EDGE_RUN_DIR"/registry-*.yml; do
  [ -e "$conf" ] || continue
  name=$(basename "$conf" .yml)
  start "$name" run.sh registry_supervised "$conf"
done
# Bearer tokens for the blob cache's fetches from UPSTREAM_URL (no database needed).
start edge-token edge_token $PY manage.py edge_token
# The digest check every blob cache fill passes through.
start edge-verify edge_verify $PY manage.py edge_verify
start nginx nginx "$NGINX" -p "$EDGE_RUN_DIR/" -c "$EDGE_RUN_DIR/nginx.conf" \
  -e "$EDGE_RUN_DIR/logs/error.log"

cat <<MSG

  Open http://$WEB_LISTEN/ and sign up. Every email the platform sends (verification links,
  invites, quota notices) is written to $VAR_DIR/mail/, one file per message.
  The mirror listens on http://$EDGE_LISTEN: after "Start your accelerator", put your
  http://<label>.<MIRROR_DOMAIN>:<port> in Docker's registry-mirrors.
  Press Ctrl-C to stop everything.

MSG
# Only a process that ends by itself gets here (Ctrl-C runs stop through the trap).
wait -n "${pids[@]}" || true
echo "==> a process exited unexpectedly; see $VAR_DIR/log/" >&2
stop 1
