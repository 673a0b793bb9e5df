"""Without a driver, opening NVML fails with one clear message that says how to run on a fake node."""

from __future__ import annotations

import pynvml
import pytest

from tessera.nvml import Nvml, NvmlUnavailable


def _driver_present() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


@pytest.mark.skipif(_driver_present(), reason="this machine has an NVIDIA driver")
def test_no_driver_gives_one_clear_message():
    with pytest.raises(NvmlUnavailable) as caught:
        Nvml().open()
    message = str(caught.value)
    assert message.startswith("NVIDIA driver not found: libnvidia-ml.so.1 could not be loaded")
    assert "NVML_ERROR_LIBRARY_NOT_FOUND" in message
    assert "set TESSERA_FAKE_NVML=<node description> to run on a fake GPU node" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_bad_fake_node_description_names_the_file(tmp_path, monkeypatch):
    bad = tmp_path / "bad.yaml"
    bad.write_text("node: n\ngpus: [{model: A100-SXM4-80GB, mode: turbo}]\n")
    monkeypatch.setenv("TESSERA_FAKE_NVML", str(bad))
    with pytest.raises(NvmlUnavailable, match=r"TESSERA_FAKE_NVML=.*bad.yaml: .*gpus\[0\]\.mode: 'turbo' is not one of"):
        Nvml().open()


def test_env_var_runs_the_layer_on_the_fake(tmp_path, monkeypatch):
    from fakegpu import one_model

    monkeypatch.setenv("TESSERA_FAKE_NVML", str(one_model(tmp_path, "T4", count=4)))
    with Nvml() as nvml:
        assert [g.name for g in nvml.read_gpus()] == ["Tesla T4"] * 4
