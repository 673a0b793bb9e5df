"""The exporter's settings: its config section, with the node name resolved.

An empty ``node_name`` means the ``NODE_NAME`` environment variable (what a DaemonSet sets from
``spec.nodeName``), else the host name. ``dcgm_compatible_labels`` (default true: keep
dcgm-exporter's ``modelName`` so its dashboards work; false serves ``model_name``, which promtool's
lint accepts) is read from the section where the config version has it; so is ``dcgm_series``
(default true; false where dcgm-exporter runs beside Tessera and serves the ``DCGM_*`` series).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from tessera.config import ExporterConfig

__all__ = ["ExporterSettings"]



@dataclass(frozen=True)
class ExporterSettings:
    """Everything the exporter needs to run."""

    listen: str
    pod_resources_socket: str
    interval_s: float
    state_dir: str
    kubeconfig: str
    proc_root: str
    overuse_dir: str
    node_name: str
    dcgm_compatible_labels: bool = True
    dcgm_series: bool = True

    @classmethod
    def from_config(cls, config: ExporterConfig) -> "ExporterSettings":
        return cls(
            listen=config.listen, pod_resources_socket=config.pod_resources_socket, interval_s=config.interval_s,
            state_dir=config.state_dir, kubeconfig=config.kubeconfig,
            proc_root=config.proc_root, overuse_dir=config.overuse_dir,
            node_name=config.node_name or os.environ.get("NODE_NAME") or socket.gethostname(),
            dcgm_compatible_labels=bool(config.dcgm_compatible_labels),
            dcgm_series=bool(config.dcgm_series),
        )
