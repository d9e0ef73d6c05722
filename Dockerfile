# syntax=docker/dockerfile:1
# Multi-stage: build a wheel, install it into a slim runtime that runs as a non-root user.
FROM python:3.11.9-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY controller ./controller
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11.9-slim-bookworm
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin shardring
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001:10001
# Fewer glibc malloc arenas: the Kubernetes client runs in worker threads, and per-thread arenas
# otherwise keep freed memory resident.
ENV PYTHONUNBUFFERED=1 MALLOC_ARENA_MAX=2
ENTRYPOINT ["shardring-operator"]
CMD ["run"]
