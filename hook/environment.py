"""The process environment and user must agree with the container's grants.

The kubelet puts the device plugin's variables before the pod's own, so a pod can add a second
``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`` after the plugin's: containerd keeps both copies in
``process.env`` and runc or crun give the process the last. So every copy of every variable a
grant sets must equal the grant's value.
"""

from __future__ import annotations

from hook.container import ContainerSpec
from hook.errors import Refused
from tessera.grant import Grant, GrantError, container_env


def check_environment(spec: ContainerSpec, grants: list[Grant], who: str) -> dict[str, str]:
    """Refuse unless each variable the grants imply appears, and only with the granted value."""
    try:
        expected = container_env(grants)
    except GrantError as err:
        raise Refused(f"{who}: {err}") from None
    for name, value in expected.items():
        values = spec.env_values(name)
        if not values:
            raise Refused(f"{who}: its environment lacks {name}={value}, which its grant sets")
        for seen in values:
            if seen != value:
                resources = ", ".join(sorted({g.resource for g in grants}))
                raise Refused(f"{who}: its environment sets {name}={seen}, but its grant ({resources}) "
                              f"says {name}={value}; a pod cannot override what it was granted")
    return expected


def check_mps(spec: ContainerSpec, grants: list[Grant], mps_user: int, who: str) -> None:
    """MPS grants come as mps-core (with or without mps-memory) and run as the MPS daemon's user."""
    resources = {g.resource for g in grants}
    mps = {r for r in resources if r in ("nvidia.com/mps-core", "nvidia.com/mps-memory")}
    if not mps:
        return
    if "nvidia.com/mps-core" not in mps:
        raise Refused(f"{who}: it holds an nvidia.com/mps-memory grant without nvidia.com/mps-core")
    if mps != resources:
        raise Refused(f"{who}: it holds MPS and non-MPS grants ({', '.join(sorted(resources))}); "
                      "one kind of GPU grant per container")
    if spec.uid != mps_user:
        raise Refused(f"{who}: its process runs as uid {spec.uid}, but MPS clients must run as uid {mps_user} "
                      "(the MPS daemon's user; a client of another user would wait forever); "
                      f"set runAsUser: {mps_user}")
