# tierwatch container image.
#
#   docker build -t tierwatch .
#   docker run --rm -p 9847:9847 \
#     -v "$PWD/tierwatch.yaml:/etc/tierwatch/tierwatch.yaml:ro" \
#     -v "$PWD/secrets:/run/secrets:ro" tierwatch
#
# Stage 1 builds the tierwatch wheel and installs it with its dependencies into a venv at
# /opt/tierwatch; stage 2 is a slim Debian with only python3, libpq5 (psycopg runs over the
# system libpq) and that venv. The venv keeps the same path in both stages, so its scripts
# and interpreter links stay valid.
# docs/deploy.md explains the config, the secret files and the non-root user (uid 10001).
ARG BASE_IMAGE=debian:bookworm-slim

# --------------------------------------------------------------------------- build
FROM ${BASE_IMAGE} AS build

# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# A CA bundle for pip behind an intercepting proxy (scripts/image_test.py passes one);
# empty by default, so a plain `docker build .` uses the image's own certificates.
ARG PIP_CERT=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1

# The build backend lives in its own venv, so it never reaches the runtime image.
RUN if [ -z "$PIP_CERT" ]; then unset PIP_CERT; fi \
 && python3 -m venv /opt/buildtools \
 && /opt/buildtools/bin/pip install --no-cache-dir "hatchling==1.27.0"

# Dependencies first, from pyproject.toml alone: this layer survives source changes.
WORKDIR /src
COPY pyproject.toml ./
RUN if [ -z "$PIP_CERT" ]; then unset PIP_CERT; fi \
 && python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > /tmp/requirements.txt \
 && python3 -m venv /opt/tierwatch \
 && /opt/tierwatch/bin/pip install --no-cache-dir -r /tmp/requirements.txt

COPY README.md ./
COPY exporter ./exporter
RUN if [ -z "$PIP_CERT" ]; then unset PIP_CERT; fi \
 && /opt/buildtools/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation -w /dist . \
 && /opt/tierwatch/bin/pip install --no-cache-dir --no-deps /dist/tierwatch-*.whl \
 && /opt/tierwatch/bin/pip uninstall -y pip setuptools

# --------------------------------------------------------------------------- runtime
FROM ${BASE_IMAGE}

# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates libpq5 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 tierwatch \
 && useradd --system --uid 10001 --gid tierwatch --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin tierwatch

COPY --from=build /opt/tierwatch /opt/tierwatch
# The default config only sets the listen address reachable from outside the container and
# watches nothing: mount your own over it (or a directory over /etc/tierwatch).
COPY deploy/container/tierwatch.yaml /etc/tierwatch/tierwatch.yaml

ENV PATH=/opt/tierwatch/bin:$PATH \
    TIERWATCH_CONFIG=/etc/tierwatch/tierwatch.yaml \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Numeric, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
USER 10001:10001
EXPOSE 9847

# `tierwatch health` reads the same config and TIERWATCH_* environment as the daemon, so a
# changed listen port keeps the check pointed at the right place.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["tierwatch", "health"]

# Exec form: tierwatch is PID 1 and shuts down cleanly on SIGTERM (exit 0 within seconds).
ENTRYPOINT ["tierwatch"]
CMD ["run"]
