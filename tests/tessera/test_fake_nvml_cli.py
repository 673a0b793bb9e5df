"""`tessera fake-nvml`: inject from a shell and see the result through the NVML layer."""

from __future__ import annotations

import re

from tessera_cli.fake_nvml import fake_nvml_main

from fakegpu import one_model


def table_rows(text: str, title: str) -> list[str]:
    """The rows of the table titled ``title...`` in ``text`` (after its header and rule). A log line from
    another test's thread can land in captured stdout (seen once in a full run): lines that read as a
    log record are not rows."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rule = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("---"))
    return [line for line in lines[rule + 1:]
            if not re.match(r"\d{4}-\d\d-\d\d[ T]\d\d:", line) and not line.startswith("{")]


def test_lose_then_show(tmp_path, capsys):
    node = str(one_model(tmp_path, "A100-SXM4-80GB", count=2, mig=["7g.80gb"]))
    assert fake_nvml_main(["processes", "--node", node, "--gpu", "0", "--gpu-instance", "1", "--process", "31:2048"]) == 0
    assert fake_nvml_main(["lose", "--node", node, "--gpu", "1"]) == 0
    assert fake_nvml_main(["show", "--node", node]) == 0
    out = [line.split() for line in table_rows(capsys.readouterr().out, "2 GPU(s) on ")]
    assert out[0][:3] == ["0", "NVIDIA", "A100-SXM4-80GB"] and out[0][3].startswith("GPU-")
    assert out[0][4] == "2048/81920"
    assert out[1][0] == "7g.80gb" and out[1][1].startswith("MIG-") and out[1][-4:] == ["gi", "1", "slot", "0+8"]
    assert out[2][:2] == ["pid", "31"] and out[2][3].startswith("MIG-") and out[2][4] == "2048/-"
    # a fresh process never saw GPU 1 answer, so its UUID is unknown, as with a real lost GPU
    assert out[3][:2] == ["1", "?"] and "gpu lost from the bus (NVML_ERROR_GPU_IS_LOST)" in " ".join(out[3])


def test_show_a_shipped_node_by_name(capsys):
    assert fake_nvml_main(["show", "--node", "t4-timeslice"]) == 0
    assert capsys.readouterr().out.count("Tesla T4") == 4


def test_bad_arguments_exit_2_with_the_reason(tmp_path, capsys):
    node = str(one_model(tmp_path, "T4", count=1))
    assert fake_nvml_main(["xid", "--node", node, "--gpu", "3", "--xid", "79"]) == 2
    assert "GPU index 3 is not on node test-node (0..0)" in capsys.readouterr().err
    assert fake_nvml_main(["processes", "--node", node, "--gpu", "0", "--process", "abc"]) == 2
    assert "--process 'abc' is not PID:MIB" in capsys.readouterr().err
    assert fake_nvml_main(["show", "--node", "no-such-node"]) == 2
    assert "no shipped node description by that name" in capsys.readouterr().err
