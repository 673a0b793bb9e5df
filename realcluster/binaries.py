"""Where the real control plane's programs are: a folder holding etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kubectl; and, for a real node, kubelet, containerd, its
runc shim, ctr and pause (``Binaries.node_missing``: a KUBEBUILDER_ASSETS folder has none of them).

In order: ``KUBEBUILDER_ASSETS`` (controller-runtime envtest's convention, for binaries a user already
has), ``TESSERA_KUBE_BIN``, then the folder scripts/build-kube.sh built for this checkout's pins. None
found: :class:`BinariesMissing`, whose message says how to get them (the real tier skips with it).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-kube.sh"
PROGRAMS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
NODE_PROGRAMS = ("kubelet", "containerd", "containerd-shim-runc-v2", "ctr", "pause")
KUBE_VERSION = "v1.37.2"  # tools/kube/go.mod's pin; scripts/build-kube.sh stamps it

HOW_TO_GET = ("run `bash scripts/build-kube.sh` (needs Go; a cold build took 9 min on 2 cores), or set "
              "KUBEBUILDER_ASSETS to a folder holding " + ", ".join(PROGRAMS))


class BinariesMissing(RuntimeError):
    """No folder with every program of the control plane; the message says which and how to get them."""


@dataclass(frozen=True)
class Binaries:
    """The control plane's programs, by name."""

    folder: Path

    def __getitem__(self, program: str) -> str:
        return str(self.folder / program)

    def node_missing(self) -> list[str]:
        """The programs of a real node this folder lacks (none: it can run one)."""
        return [p for p in NODE_PROGRAMS if not os.access(self.folder / p, os.X_OK)]


def _complete(folder: Path) -> list[str]:
    return [p for p in PROGRAMS if not os.access(folder / p, os.X_OK)]


def find_binaries() -> Binaries:
    """The first folder that has every program; :class:`BinariesMissing` with the reason otherwise."""
    tried = []
    for variable in ("KUBEBUILDER_ASSETS", "TESSERA_KUBE_BIN"):
        value = os.environ.get(variable)
        if value:
            missing = _complete(Path(value))
            if not missing:
                return Binaries(Path(value))
            tried.append(f"{variable}={value} lacks {', '.join(missing)}")
    try:
        done = subprocess.run(["bash", str(BUILD_SCRIPT), "--find"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        done = None
        tried.append(f"scripts/build-kube.sh --find failed: {exc}")
    if done is not None:
        if done.returncode == 0 and not _complete(Path(done.stdout.strip())):
            return Binaries(Path(done.stdout.strip()))
        tried.append("no Go toolchain to build them" if done.returncode == 3
                     else "scripts/build-kube.sh has not built them for these pins")
    raise BinariesMissing(f"no real Kubernetes binaries ({'; '.join(tried)}): {HOW_TO_GET}")
