# syntax=docker/dockerfile:1
#
# One image for every ShareHub process (build from the repository root: docker build -t sharehub .):
#   gateway      docker run IMAGE                      -> sharehub gateway
#   migrations   docker run IMAGE migrate              -> sharehub migrate
#   Ray nodes    docker run --entrypoint ray IMAGE start --head --block ...
#                (the Ray cluster launcher and KubeRay replace the entrypoint themselves)
# Ray nodes must import the project's code, so the Ray version on every node is the one pinned by
# pyproject.toml and installed here.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# A compiler only for the rare dependency that ships no wheel for this platform; it stays in this stage.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# The project lives at /app in the repository's layout: sharehub.config finds migrations/, web/ and
# api/ next to its packages (REPO_ROOT), so it is installed in place (editable) rather than copied
# into site-packages without them.
WORKDIR /app

# Dependencies first (read from pyproject.toml), so a code change does not reinstall Ray and friends.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --upgrade pip setuptools wheel \
 && pip install -r /tmp/requirements.txt

# The packages listed in [tool.setuptools.packages.find], then the files they read at run time.
COPY README.md ./
COPY sharehub ./sharehub
COPY actors ./actors
COPY gateway ./gateway
COPY storage ./storage
COPY search ./search
COPY ml ./ml
COPY migrations ./migrations
COPY web ./web
COPY api ./api
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps --editable . \
 && pip check \
 && sharehub --help > /dev/null \
 && python -m compileall -q sharehub actors gateway storage search ml

# ---------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="sharehub" \
      org.opencontainers.image.description="ShareHub rental marketplace: gateway, migrations and Ray shard nodes" \
      org.opencontainers.image.licenses="MIT"

# libgomp1: LightGBM's OpenMP runtime.
# rsync, openssh-client: the Ray cluster launcher syncs files into the container and the head's
#   autoscaler reaches worker hosts over SSH.
# wget: KubeRay's default liveness/readiness probes on Ray pods call wget.
# tini: reaps the Ray daemons when a container runs `ray start` and then the gateway.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 rsync openssh-client wget tini procps \
 && rm -rf /var/lib/apt/lists/*

# UID 1000 matches the default login user of the Ray launcher's Ubuntu hosts, so files it
# mounts into the container stay readable.
RUN groupadd --gid 1000 sharehub \
 && useradd --uid 1000 --gid sharehub --create-home --home-dir /home/sharehub \
      --shell /bin/bash sharehub \
 && mkdir -p /var/lib/sharehub/data /var/lib/sharehub/jwt-keys \
 && chown -R sharehub:sharehub /var/lib/sharehub \
 && chmod 0700 /var/lib/sharehub/jwt-keys

COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app

# HOME must be set in the image: the Ray cluster launcher reads it from the image config.
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    HOME=/home/sharehub \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    SHAREHUB_HTTP_HOST=0.0.0.0 \
    SHAREHUB_HTTP_PORT=8080 \
    SHAREHUB_DATA_DIR=/var/lib/sharehub/data \
    SHAREHUB_JWT_KEYS_DIR=/var/lib/sharehub/jwt-keys

# Numeric, so Kubernetes can check runAsNonRoot without resolving the name.
USER 1000:1000
WORKDIR /app

# 8080 gateway HTTP/websocket; a Ray head also listens on 6379 (GCS), 8265 (dashboard),
# 10001 (Ray client) and 8000 (Ray Serve).
EXPOSE 8080

ENTRYPOINT ["sharehub"]
CMD ["gateway"]
