"""The driver's API server client: a kubeconfig file, or the pod's in-cluster config."""

from __future__ import annotations

import kubernetes

from tessera.kube import client_configuration
from tessera.log import get_logger

log = get_logger("draplugin")


def connect(kubeconfig: str) -> kubernetes.client.ApiClient | None:
    """An ApiClient from ``kubeconfig`` or the in-cluster config; None (logged) when there is neither: a
    DRA driver cannot work without the API server (its slices and the claims live there)."""
    try:
        configuration = client_configuration(kubeconfig)
    except (kubernetes.config.ConfigException, OSError) as err:
        log.error("api_server_config_failed", kubeconfig=kubeconfig or "in-cluster", reason=str(err))
        return None
    if configuration is None:
        log.error("api_server_not_configured", effect="a DRA driver needs the API server: set --kubeconfig "
                                                      "or run in a pod")
        return None
    return kubernetes.client.ApiClient(configuration)
