"""``realcluster.running(extra_flags=...)`` hands each flag to the component it names, which runs with it
(the light-node benchmark keeps its nodes Ready with kube-controller-manager's
``--node-monitor-grace-period``), and a name that is no component is refused before anything starts."""

from __future__ import annotations

import json
import ssl
import urllib.request
from pathlib import Path

import pytest

from realtier import binaries_or_skip

GRACE = "--node-monitor-grace-period=1h"


def _find(doc, key: str):
    """The first value of ``key`` anywhere in a JSON document, else None."""
    if isinstance(doc, dict):
        if key in doc:
            return doc[key]
        doc = list(doc.values())
    if isinstance(doc, list):
        for item in doc:
            found = _find(item, key)
            if found is not None:
                return found
    return None


def test_a_flag_reaches_the_controller_manager_it_names():
    import realcluster

    with realcluster.running(binaries=binaries_or_skip(), tessera=False, kubelets=False,
                             extra_flags={"kube-controller-manager": [GRACE]}) as cluster:
        by_name = {c.name: c for c in cluster.control.components}
        manager = by_name["kube-controller-manager"]
        cmdline = Path(f"/proc/{manager.proc.pid}/cmdline").read_bytes().decode().split("\0")
        assert GRACE in cmdline
        assert not any(GRACE in Path(f"/proc/{c.proc.pid}/cmdline").read_bytes().decode()
                       for name, c in by_name.items() if name != "kube-controller-manager")
        # The controller-manager runs with it: its /configz (as the admin) says so.
        port = next(a.split("=", 1)[1] for a in manager.argv if a.startswith("--secure-port="))
        context = ssl._create_unverified_context()  # noqa: S323 - its serving certificate is self-signed
        context.load_cert_chain(str(cluster.control.admin.cert), str(cluster.control.admin.key))
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/configz", timeout=30, context=context) as resp:
            configz = json.load(resp)
        assert _find(configz, "NodeMonitorGracePeriod") == "1h0m0s"


def test_flags_for_a_component_that_does_not_exist_are_refused():
    import realcluster

    with pytest.raises(ValueError, match="kube-schedular: not a component"):
        with realcluster.running(binaries=binaries_or_skip(), tessera=False, kubelets=False,
                                 extra_flags={"kube-schedular": ["--v=4"]}):
            pass
