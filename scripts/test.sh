#!/usr/bin/env bash
# The whole test suite against real PostgreSQL, Redis, nginx, the registry, skopeo, dockerd
# and Chromium. Called by `make test` after the virtual environment is ready.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-system.sh pg_isready=postgresql-client redis-cli=redis-tools \
  nginx=nginx docker-registry=docker-registry skopeo=skopeo dockerd=docker.io chromium=chromium msgfmt=gettext \
  containerd=containerd ctr=containerd podman=podman \
  prometheus=prometheus promtool=prometheus prometheus-nginx-exporter=prometheus-nginx-exporter \
  shellcheck=shellcheck
scripts/ensure-services.sh
# The translations (locale/*.po) are compiled here; *.mo files are never committed.
.venv/bin/python manage.py compilemessages --ignore=.venv --ignore=var -v0

# The tests' own VAR_DIR (the edge's default cache and run directories), apart from make run's
# data. nginx's workers (user nobody under root) must reach it, whoever created var/ before
# (Django's file cache makes it 0700).
export VAR_DIR=${TEST_VAR_DIR:-$PWD/var/test}
mkdir -p "$VAR_DIR"
chmod o+x "$(dirname "$VAR_DIR")" "$VAR_DIR"

export DATABASE_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
export REDIS_URL=${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}
export DJANGO_DEBUG=true
# Tests run their own Celery worker where they need one; the rest run tasks in-process.
export CELERY_BROKER_URL=${TEST_CELERY_BROKER_URL:-memory://}

exec .venv/bin/python -m pytest "$@"
