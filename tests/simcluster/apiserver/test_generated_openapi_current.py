"""The committed OpenAPI definitions and protobuf code are what their generators write today."""

from __future__ import annotations

import pytest

from simcluster.apiserver import openapi_generate
from simcluster.apiserver.protos import generate
from tessera.kubeletapi.generate import stale_files


def test_openapi_definitions_regenerate_from_kubernetes_validate_byte_for_byte():
    pytest.importorskip("kubernetes_validate", reason="kubernetes-validate (tests extra) holds the source schemas")
    fresh = openapi_generate.render(openapi_generate.build(openapi_generate.source_definitions()))
    assert fresh == openapi_generate.OUTPUT.read_text(), (
        "stale simcluster/apiserver/openapi_definitions.json: run `python -m simcluster.apiserver.openapi_generate`")


def test_protobuf_code_regenerates_from_proto_byte_for_byte():
    pytest.importorskip("grpc_tools", reason="grpcio-tools (tests extra) regenerates the code")
    committed = generate.generated_files(generate.REPO_ROOT)
    assert len(committed) == 4
    stale = stale_files(lambda out: generate.generate(out_dir=out), committed)
    assert not stale, f"stale generated code: {stale}; run `python -m simcluster.apiserver.protos.generate`"
