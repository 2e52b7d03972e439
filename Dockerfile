# syntax=docker/dockerfile:1
# The operator image: `agentobs-operator` (the console script of pyproject.toml) as ENTRYPOINT.
#
#   docker build -t ghcr.io/agentobs/agentobs-operator:0.1.0 .
#
# Stage 1 builds wheels of the package and its dependencies; stage 2 installs only those wheels
# into a virtual environment, without compilers or pip caches, and runs as a non-root user.

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PATH=/opt/agentobs/bin:$PATH
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/agentobs \
 && /opt/agentobs/bin/pip install --no-index --find-links /wheels agentobs-operator \
 && /opt/agentobs/bin/pip uninstall --yes pip
# A numeric user, so that the kubelet can verify runAsNonRoot without reading /etc/passwd.
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080 8081 9443
ENTRYPOINT ["agentobs-operator"]
