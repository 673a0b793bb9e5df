"""The committed kubelet API code is what proto/ generates today: nobody edited one without the other."""

from __future__ import annotations

import pytest

from tessera.kubeletapi import generate


def test_regenerating_from_proto_reproduces_the_committed_code_byte_for_byte():
    pytest.importorskip("grpc_tools", reason="grpcio-tools (tests extra) regenerates the code")
    committed = generate.generated_files(generate.REPO_ROOT)
    assert len(committed) == 3 * len(generate.PROTO_FILES) == 15
    stale = generate.stale_files(lambda out: generate.generate(out_dir=out), committed)
    assert not stale, (
        f"stale generated code: {stale}; run `python -m tessera.kubeletapi.generate` "
        "with the grpcio-tools version pinned in the tests extra"
    )


def test_generated_modules_are_named_by_their_package_path():
    from tessera.kubeletapi import deviceplugin_pb2, podresources_pb2

    assert deviceplugin_pb2.DESCRIPTOR.name == "tessera/kubeletapi/deviceplugin/v1beta1/api.proto"
    assert podresources_pb2.DESCRIPTOR.name == "tessera/kubeletapi/podresources/v1/api.proto"
    assert deviceplugin_pb2.DESCRIPTOR.package == "v1beta1"
    assert podresources_pb2.DESCRIPTOR.package == "v1"


def test_the_dra_services_have_the_kubelet_s_full_names():
    """gRPC calls are routed by service name: the kubelet dials these exactly."""
    from tessera.kubeletapi import dra_pb2, registration_pb2

    assert dra_pb2.DESCRIPTOR.services_by_name["DRAPlugin"].full_name == "k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin"
    assert registration_pb2.DESCRIPTOR.services_by_name["Registration"].full_name == "pluginregistration.Registration"
