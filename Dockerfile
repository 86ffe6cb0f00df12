# syntax=docker/dockerfile:1
#
# modelpin: the admission webhook and the reconciler, one image.
#
#   docker build -t modelpin:0.1.0 .
#
# Builder: a virtualenv at /opt/venv holding modelpin and its dependencies
# (no mlflow: the webhook talks to the tracking server over REST).
# The base pinned to a patch release (the interpreter the test suite runs on); bump it on purpose.
FROM python:3.11.7-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, from the lock alone (every file checked against its
# sha256; hack/lock.sh writes it from pyproject.toml), so that a change to the
# code does not re-download them. The lock holds the build backend too.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock

# Then the package itself (a regular, non-editable install), built with the
# locked backend and adding no dependency of its own.
COPY pyproject.toml README.md ./
COPY webhook/ webhook/
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && modelpin --help > /dev/null

# Runtime: the same Python, the virtualenv, and an unprivileged user. The
# Kubernetes manifests run it with a read-only root filesystem and an
# emptyDir at /tmp.
FROM python:3.11.7-slim-bookworm

LABEL org.opencontainers.image.title="modelpin" \
      org.opencontainers.image.description="Kubernetes admission webhook that pins MLflow registry references to artifact URIs" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"

RUN groupadd --system --gid 10001 modelpin \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin modelpin

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Numeric, so that Kubernetes can verify runAsNonRoot without a runAsUser.
USER 10001:10001
WORKDIR /tmp

EXPOSE 8443
ENTRYPOINT ["modelpin"]
CMD ["serve", "--config", "/etc/modelpin/config.yaml"]
