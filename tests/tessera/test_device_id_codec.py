"""The device-ID grammar is spelled in one place (tessera.deviceids): every share ID reads back to the
GPU, kind and unit it was spelled from, and anything else is refused in one line."""

from __future__ import annotations

import pytest

from tessera.deviceids import (
    CORE,
    MAX_ID_LENGTH,
    MEM,
    TS,
    DeviceIdError,
    ShareId,
    core_id,
    gpu_of,
    is_share,
    mem_id,
    parse_share,
    read_share,
    share_id,
    ts_id,
    unit_of,
)

UUID = "GPU-3f2a9c1e-7b4d-4e8f-9a0b-1c2d3e4f5a6b"


@pytest.mark.parametrize("kind,spell", [(CORE, core_id), (MEM, mem_id), (TS, ts_id)])
def test_every_share_id_reads_back_to_what_spelled_it(kind, spell):
    for n in (0, 7, 99, 640):
        text = spell(UUID, n)
        assert text == share_id(UUID, kind, n) == f"{UUID}::{kind}::{n}"
        assert read_share(text) == parse_share(text) == ShareId(UUID, kind, n)
        assert gpu_of(text) == UUID and unit_of(text) == n and is_share(text, kind)
        assert len(text) <= MAX_ID_LENGTH, "the kubelet takes device IDs of at most 63 characters"


def test_whole_gpus_and_mig_instances_are_their_own_uuid():
    assert gpu_of(UUID) == UUID and gpu_of("MIG-1234") == "MIG-1234"
    assert parse_share(UUID) is None and not is_share(UUID, CORE)


@pytest.mark.parametrize("bad", ["GPU-a::core", "GPU-a::core::x", "GPU-a::disk::1", "GPU-a::core::-1",
                                 "::core::1", "GPU-a::core::1::2", "GPU-a", "", 7, None])
def test_a_malformed_id_is_refused_in_one_line(bad):
    if isinstance(bad, str):
        assert parse_share(bad) is None
    with pytest.raises(DeviceIdError) as err:
        read_share(bad)
    assert "\n" not in str(err.value) and repr(bad) in str(err.value)
    with pytest.raises(DeviceIdError):
        unit_of(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("args", [(UUID, "disk", 1), (UUID, CORE, -1), ("", CORE, 1), ("GPU-a::mem::1", CORE, 1)])
def test_an_id_that_would_not_read_back_is_never_spelled(args):
    with pytest.raises(DeviceIdError):
        share_id(*args)
