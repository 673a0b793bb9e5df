# One image for every Tessera entry point: tessera-extender, tessera-device-plugin, tessera-exporter,
# tessera-hook (copied onto each node by tessera-install-hook), tessera and kubectl-tessera.
#   docker build -t registry.example.com/tessera:0.1.0 .
# Everything lives under /usr/local (python:3.12-slim's Python and site-packages); tessera-install-hook
# copies from it to the host's /opt/tessera only what the hook runs on (python -m hook.release: the
# interpreter, the standard library, and the hook, tessera, yaml and structlog packages).
# matplotlib is the demo extra and is not installed here.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY tessera ./tessera
COPY deviceplugin ./deviceplugin
COPY draplugin ./draplugin
COPY extender ./extender
COPY hook ./hook
COPY exporter ./exporter
COPY simcluster ./simcluster
COPY tessera_cli ./tessera_cli
COPY proto ./proto
RUN pip install . && python -m compileall -q /usr/local/lib/python3.12/site-packages \
    && rm -rf /src

COPY deploy/node/install-hook.sh /usr/local/bin/tessera-install-hook
COPY deploy/make-keys.sh /opt/tessera-deploy/make-keys.sh
RUN chmod 0755 /usr/local/bin/tessera-install-hook /opt/tessera-deploy/make-keys.sh

# Non-root by default (the extender runs so); the node DaemonSets set runAsUser 0 or the MPS user
# where a container needs it, each saying why.
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin tessera
USER 10001:10001
WORKDIR /
CMD ["tessera", "--help"]
