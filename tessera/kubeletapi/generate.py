"""Regenerate the Python code for the kubelet APIs from ``proto/``.

Run from the repository root::

    python -m tessera.kubeletapi.generate

protoc sees ``proto/`` under the virtual path ``tessera/kubeletapi`` (``-Itessera/kubeletapi=proto``),
so the generated modules import each other absolutely (``from tessera.kubeletapi.deviceplugin.v1beta1
import api_pb2``) and the two ``api.proto`` files get distinct names in the descriptor pool. The output
depends on the grpcio-tools version (the tests extra pins it), so the committed code regenerates
byte for byte.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO_ROOT / "proto"
VIRTUAL_PREFIX = "tessera/kubeletapi"
PROTO_FILES: tuple[str, ...] = (
    "deviceplugin/v1beta1/api.proto",
    "podresources/v1/api.proto",
    "dra/v1/api.proto",
    "drahealth/v1/api.proto",
    "pluginregistration/v1/api.proto",
)
GENERATED_SUFFIXES: tuple[str, ...] = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generated_files(out_dir: Path) -> list[Path]:
    """The files that :func:`generate` writes under ``out_dir``, in a stable order."""
    files = []
    for proto in PROTO_FILES:
        stem = Path(VIRTUAL_PREFIX) / Path(proto).with_suffix("")
        files.extend(out_dir / f"{stem}{suffix}" for suffix in GENERATED_SUFFIXES)
    return files


def generate(out_dir: Path = REPO_ROOT, proto_dir: Path = PROTO_DIR) -> list[Path]:
    """Run protoc (from grpcio-tools) over ``proto_dir`` and write the Python code under ``out_dir``.

    Returns the generated files. Raises ``RuntimeError`` if protoc fails.
    """
    run_protoc(proto_dir, VIRTUAL_PREFIX, PROTO_FILES, out_dir, grpc=True)
    return generated_files(out_dir)


def run_protoc(proto_dir: Path, virtual_prefix: str, proto_files: tuple[str, ...], out_dir: Path,
               grpc: bool) -> None:
    """protoc over ``proto_files`` (relative to ``proto_dir``, seen under ``virtual_prefix``): the
    messages (``_pb2.py``, ``_pb2.pyi``) and, with ``grpc``, the services (``_pb2_grpc.py``).

    Raises ``RuntimeError`` if protoc fails.
    """
    from grpc_tools import protoc  # imported here: grpcio-tools is a test/dev dependency only

    well_known = str(resources.files("grpc_tools") / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{virtual_prefix}={proto_dir}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        *([f"--grpc_python_out={out_dir}"] if grpc else []),
        *(f"{virtual_prefix}/{proto}" for proto in proto_files),
    ]
    code = protoc.main(args)
    if code != 0:
        raise RuntimeError(f"protoc failed with exit code {code}")


def stale_files(generate_into: Callable[[Path], list[Path]], committed: list[Path]) -> list[str]:
    """The ``committed`` files (relative to the repository) that differ from what ``generate_into``
    writes into a fresh folder today (missing ones included)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate_into(Path(tmp))
        if [f.relative_to(tmp) for f in fresh] != [c.relative_to(REPO_ROOT) for c in committed]:
            raise RuntimeError(f"the generator wrote {fresh}, expected the committed {committed}")
        return [str(old.relative_to(REPO_ROOT)) for new, old in zip(fresh, committed)
                if not old.exists() or new.read_bytes() != old.read_bytes()]


def main() -> int:
    """Regenerate the committed code in place and list what was written."""
    for path in generate():
        print(path.relative_to(REPO_ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
