"""bench/compare.py --only nvidia-plugin --quick: Tessera's device plugin and NVIDIA's, both on NVIDIA's mock
NVML (H100 profile), each registered with its own simulated kubelet; the section prints both plugins'
figures and their ratio for each measure, and each plugin's Allocate answer names the GPU asked for.
Builds nothing: skips, saying why, where scripts/build-nvidia-device-plugin.sh or scripts/build-mocknvml.sh
has not built its part. No timing is asserted.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import compare  # noqa: E402 - bench/, added to the path above
import nvidia_plugin_peer  # noqa: E402

pytestmark = pytest.mark.slow

NUMBER = r"\d+\.\d\d"
RATIO = r"\d+(\.\d+)?(e-\d+)?"
PATHS = ["mock H100: registration from start", "mock H100: Allocate whole GPU (nvidia.com/gpu: 1)",
         "mock H100: Allocate time-sliced replica (nvidia.com/gpu.shared: 1)",
         "mock H100: re-registration after kubelet restart"]
ANSWER = re.compile(r"^note: Allocate (.+?), (Tessera|NVIDIA): asked (\S+) -> NVIDIA_VISIBLE_DEVICES=(\S+)$", re.M)


@pytest.fixture(scope="module")
def built() -> tuple[Path, Path]:
    binary, mock, why = nvidia_plugin_peer.build(find=True)
    if binary is None:
        pytest.skip(f"NVIDIA's device plugin not run: {why}")
    return binary, mock


def gpu_of(device_id: str) -> str:
    """The GPU UUID a device ID names (NVIDIA's replicas are ``<uuid>::<n>``, Tessera's ``<uuid>::ts::<n>``)."""
    return device_id.split("::", 1)[0]


def test_both_plugins_register_and_answer_allocate_with_the_gpu_asked_for(built, capsys):
    _, mock = built
    assert compare.main(["--only", "nvidia-plugin", "--quick", "--no-build"]) == 0
    out = capsys.readouterr().out
    rows = {}
    for line in out.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells[0] in PATHS:
            rows[cells[0]] = cells[1:]
    assert set(rows) == set(PATHS), out
    for path, cells in rows.items():
        tessera_p50, tessera_p99, peer, peer_p50, peer_p99, ratio_p50, ratio_p99, *_ = cells
        assert peer == "NVIDIA device plugin"
        assert all(re.fullmatch(NUMBER, v) for v in (tessera_p50, tessera_p99, peer_p50, peer_p99)), cells
        assert re.fullmatch(RATIO, ratio_p50) and re.fullmatch(RATIO, ratio_p99), cells
        assert float(ratio_p50) == pytest.approx(float(tessera_p50) / float(peer_p50), rel=0.05, abs=0.02), path

    with tempfile.TemporaryDirectory() as tmp:
        uuids = nvidia_plugin_peer.profile_uuids(nvidia_plugin_peer.write_h100_profile(mock, Path(tmp) / "p.yaml"))
    answers = {(share, who): (asked, visible) for share, who, asked, visible in ANSWER.findall(out)}
    assert set(answers) == {(share, who) for share in ("whole GPU", "time-sliced replica")
                            for who in ("Tessera", "NVIDIA")}, out
    for (share, who), (asked, visible) in answers.items():
        assert visible == gpu_of(asked) and visible in uuids, (share, who, asked, visible)
        assert ("::" in asked) == (share == "time-sliced replica"), (share, who, asked)


def test_without_peers_the_section_says_why(capsys):
    assert compare.main(["--only", "nvidia-plugin", "--no-peers"]) == 0
    assert "note: NVIDIA's device plugin not run: not asked (--no-peers)" in capsys.readouterr().out
