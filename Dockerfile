# One image for the runtime (`threadweaver serve|migrate|create-tables`) and the operator
# (`threadweaver-operator`). Non-root (uid 10001), works with a read-only root filesystem
# (writable: /tmp, an emptyDir in the manifests the operator builds).
#
#   docker build -t thread-weaver:dev .
#   docker run --rm -p 8080:8080 thread-weaver:dev threadweaver serve --host 0.0.0.0 --data-dir /tmp/data
#
# BASE_IMAGE: any image with Python >= 3.11, its venv module and `python` on PATH. `make image`
# (hack/images.sh, podman, no registry) passes a base it makes from Debian's packages.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/threadweaver
COPY pyproject.toml README.md* ./
COPY runtime ./runtime
COPY operator ./operator
RUN /opt/threadweaver/bin/pip install ".[operator]"

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="thread-weaver" \
      org.opencontainers.image.description="Event-sourced, sharded chat runtime and its Kubernetes operator" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/threadweaver/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    THREADWEAVER_DATA_DIR=/tmp/threadweaver \
    THREADWEAVER_LOG_FORMAT=json
RUN groupadd --system --gid 10001 threadweaver \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin threadweaver
COPY --from=build /opt/threadweaver /opt/threadweaver
USER 10001:10001
EXPOSE 8080 8081
CMD ["threadweaver", "serve", "--host", "0.0.0.0"]
