# Lomash Wood backend: one ECS task = one container running `lomash serve`.
FROM python:3.13-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    # The code (and migrations/) are read from /app, not from site-packages.
    PYTHONPATH=/app \
    PIP_NO_CACHE_DIR=1 \
    LOMASH_HOST=0.0.0.0 \
    LOMASH_PORT=8000 \
    LOMASH_LOG_FORMAT=json \
    # In-flight requests get 25 s after SIGTERM: below ECS's 30 s stop timeout,
    # which must also be the ALB's deregistration delay.
    LOMASH_DRAIN_TIMEOUT_S=25

WORKDIR /app
COPY pyproject.toml README.md ./
COPY supervisors ./supervisors
COPY actors ./actors
COPY adapters ./adapters
COPY jobs ./jobs
COPY gateway ./gateway
COPY service ./service
COPY devservers ./devservers
COPY config ./config
COPY chaos ./chaos
COPY migrations ./migrations
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin lomash

USER lomash
EXPOSE 8000
# The app owns SIGTERM (hypercorn's single-process path does not): drain, then exit 0.
STOPSIGNAL SIGTERM
# Liveness only (the process answers): a database outage must not get tasks killed.
# On the port the service listens on (LOMASH_PORT, whatever the task sets it to).
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=5 \
    CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"LOMASH_PORT\", \"8000\")}/health/live', timeout=2).status != 200)"]
# LOMASH_DATABASE_URL and LOMASH_REDIS_URL must be set: the image has no embedded servers.
# Migrations run as a separate one-off task before update-service: `lomash migrate up`.
CMD ["lomash", "serve"]
