# gunicorn settings for the web process. The address is WEB_LISTEN (the console site's
# upstream); a --bind on the command line (scripts/run.sh) takes precedence.
import multiprocessing
import os

workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
threads = int(os.environ.get("GUNICORN_THREADS", 2))
bind = [os.environ.get("WEB_LISTEN", "127.0.0.1:8000")]
worker_class = "gthread"
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = "-"
errorlog = "-"
max_requests = 2000
max_requests_jitter = 200


def child_exit(server, worker):
    """With PROMETHEUS_MULTIPROC_DIR (README "Operations"), a dead worker's live gauges go."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
