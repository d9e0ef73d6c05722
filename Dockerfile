# syntax=docker/dockerfile:1
# Multi-stage: build wheels, install them into a slim runtime that runs as a non-root user.
# Dependencies come only from requirements.lock (exact versions and hashes, `make lock`).
FROM python:3.11.9-slim-bookworm AS build
WORKDIR /src
COPY requirements.lock pyproject.toml README.md ./
COPY controller ./controller
COPY clients/python/src ./clients/python/src
RUN pip wheel --no-cache-dir --require-hashes --wheel-dir /wheels -r requirements.lock \
    && pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11.9-slim-bookworm
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin shardring
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels
USER 10001:10001
# Fewer glibc malloc arenas: the Kubernetes client runs in worker threads, and per-thread arenas
# otherwise keep freed memory resident.
ENV PYTHONUNBUFFERED=1 MALLOC_ARENA_MAX=2
ENTRYPOINT ["shardring-operator"]
CMD ["run"]
