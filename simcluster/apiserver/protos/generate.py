"""Regenerate the Python code for the API server's protobuf messages from ``proto/apiserver/``.

Run from the repository root::

    python -m simcluster.apiserver.protos.generate

Two files: gnostic's ``OpenAPIv2.proto`` (the ``/openapi/v2`` document kubectl downloads as
protobuf) and ``kubernetes/objects.proto`` (the request bodies kubectl's typed clients send as
protobuf). protoc sees ``proto/apiserver/`` as ``simcluster/apiserver/protos``, so the modules land
in this package. The output depends on the grpcio-tools version (the tests extra pins it), so the
committed code regenerates byte for byte.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tessera.kubeletapi.generate import REPO_ROOT, run_protoc

PROTO_DIR = REPO_ROOT / "proto" / "apiserver"
VIRTUAL_PREFIX = "simcluster/apiserver/protos"
PROTO_FILES: tuple[str, ...] = ("openapiv2/OpenAPIv2.proto", "kubernetes/objects.proto")
GENERATED_SUFFIXES: tuple[str, ...] = ("_pb2.py", "_pb2.pyi")


def generated_files(out_dir: Path) -> list[Path]:
    """The files that :func:`generate` writes under ``out_dir``, in a stable order."""
    stems = [Path(VIRTUAL_PREFIX) / Path(proto).with_suffix("") for proto in PROTO_FILES]
    return [out_dir / f"{stem}{suffix}" for stem in stems for suffix in GENERATED_SUFFIXES]


def generate(out_dir: Path = REPO_ROOT, proto_dir: Path = PROTO_DIR) -> list[Path]:
    """Run protoc over ``proto_dir`` and write the Python code under ``out_dir``; the files written."""
    run_protoc(proto_dir, VIRTUAL_PREFIX, PROTO_FILES, out_dir, grpc=False)
    return generated_files(out_dir)


def main() -> int:
    """Regenerate the committed code in place and list what was written."""
    for path in generate():
        print(path.relative_to(REPO_ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
