"""The check's nvidia-smi reader on what real nvidia-smi printed (captures of an A100-SXM4-80GB on driver
535.54.03 and an H100 80GB HBM3 on 590.48.01, under fixtures/, sources in their headers), and the dry run's
stand-in held to the same shape: every element it prints sits where the real tool puts it, and it answers
[N/A] where a real H100 does."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from checkrun import REPO
from gpucheck.dryrun import DEFAULT_NODE
from gpucheck.sections.exporter import FIELDS
from gpucheck.smi import NOT_A_VALUE, number, query_gpus, read_log
from tessera.fakenvml import resolve_node_description
from tessera.topology import bus

FIXTURES = Path(__file__).with_name("fixtures")
A100_XML = FIXTURES / "nvidia-smi-q-x_a100-sxm4-80gb_535.54.03.xml"
H100_CSV = FIXTURES / "nvidia-smi-query-gpu_h100-80gb-hbm3_590.48.01.csv"
# Short names the check asks for and the long names the capture's header has; both are listed as one field
# by `nvidia-smi --help-query-gpu` of driver 590.48.01 ("clocks.current.sm" or "clocks.sm", ...)
ALIASES = {"clocks.sm": "clocks.current.sm", "clocks.mem": "clocks.current.memory",
           "retired_pages.sbe": "retired_pages.single_bit_ecc.count",
           "retired_pages.dbe": "retired_pages.double_bit.count"}
REPLAY = '''
import sys
header, row = sys.argv[1], sys.argv[2]
names = [h.split(" [")[0] for h in header.split(", ")]
values = dict(zip(names, row.split(", ")))
aliases = %r
asked = next(a for a in sys.argv[3:] if a.startswith("--query-gpu=")).split("=", 1)[1].split(",")
unknown = [f for f in asked if aliases.get(f, f) not in values]
if unknown:
    print('Field "%%s" is not a valid field to query.' %% unknown[0])
    sys.exit(2)
# nounits: "69.85 W" -> "69.85", "[N/A]" stays
print(", ".join(values[aliases.get(f, f)].split(" ")[0] for f in asked))
''' % (ALIASES,)


def _h100_blocks() -> dict[str, tuple[str, str]]:
    lines = [line for line in H100_CSV.read_text().splitlines() if not line.startswith("# ")]
    return {lines[i][3:]: (lines[i + 1], lines[i + 2]) for i in range(0, len(lines), 3)}


def _replaying_smi(tmp_path: Path, header: str, row: str) -> Path:
    script = tmp_path / "replay.py"
    script.write_text(REPLAY)
    smi = tmp_path / "nvidia-smi"
    smi.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "{header}" "{row}" "$@"\n')
    smi.chmod(0o755)
    return smi


def _cat_smi(tmp_path: Path, path: Path) -> Path:
    smi = tmp_path / "nvidia-smi"
    smi.write_text(f'#!/bin/sh\nexec cat "{path}"\n')
    smi.chmod(0o755)
    return smi


def _stand_in(node: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TESSERA_FAKE_NVML": str(node)}
    return subprocess.run([sys.executable, "-m", "gpucheck.fakesmi", *args], env=env, capture_output=True,
                          text=True, timeout=60, cwd=REPO)


def _paths(element: ET.Element, prefix: str = "") -> set[str]:
    found = set()
    for child in element:
        path = f"{prefix}/{child.tag}" if prefix else child.tag
        found |= {path} | _paths(child, path)
    return found


def test_the_real_a100_log_is_read_field_by_field(tmp_path):
    log = read_log(_cat_smi(tmp_path, A100_XML))
    assert (log.driver_version, log.cuda_version) == ("535.54.03", "12.2")
    (gpu,) = log.gpus
    assert gpu.get("uuid") == "GPU-513536b6-7d19-9063-b049-1e69664bb298"
    assert gpu.get("minor_number") == "1"
    assert bus(gpu.get("pci_bus_id")) == "00000000:01:00.0"
    assert (number(gpu.get("memory_total")), number(gpu.get("memory_reserved"))) == (81920, 869)
    assert gpu.get("mig_current") == "Enabled"
    assert gpu.mig_devices == {(3, 0): "14", (4, 0): "14"}  # the whole GPU prints no SM count, MIG devices do
    assert set(gpu.fields) == {"product_name", "uuid", "minor_number", "pci_bus_id", "memory_total",
                               "memory_reserved", "mig_current"}  # no NUMA node: real nvidia-smi prints none


@pytest.mark.parametrize("node", ["default", "a100-40gb-mig"])
def test_the_stand_in_prints_only_elements_the_real_tool_prints_where_it_prints_them(tmp_path, node):
    path = tmp_path / "node.yaml"
    path.write_text(DEFAULT_NODE) if node == "default" else path.write_bytes(resolve_node_description(node).read_bytes())
    said = _stand_in(path, "-q", "-x")
    assert said.returncode == 0, said.stderr
    assert said.stdout.splitlines()[1] == A100_XML.read_text().splitlines()[1]  # the DOCTYPE line
    mine, real = ET.fromstring(said.stdout), ET.parse(A100_XML).getroot()
    assert _paths(mine) <= _paths(real), sorted(_paths(mine) - _paths(real))
    assert set(read_log(_cat_smi(tmp_path, _saved(tmp_path, said.stdout))).gpus[0].fields) >= {"uuid", "minor_number"}


def _saved(tmp_path: Path, text: str) -> Path:
    out = tmp_path / "log.xml"
    out.write_text(text)
    return out


@pytest.mark.parametrize("block", ["nvidia-h100-80gb-hbm3 idle", "nvidia-h100-80gb-hbm3 load", "nvidia-h100-mig idle"])
def test_every_field_the_exporter_compares_is_one_a_real_h100_answers(tmp_path, block):
    header, row = _h100_blocks()[block]
    names = sorted({f.smi for f in FIELDS.values()})
    found, refused = query_gpus(_replaying_smi(tmp_path, header, row), names)
    assert refused == {}
    (values,) = found.values()
    assert number(values["power.draw"]) > 50 and number(values["clocks.mem"]) == 2619
    assert number(values["memory.reserved"]) == 479
    assert values["retired_pages.sbe"] in NOT_A_VALUE  # Hopper remaps rows: no page retirement
    mig = block.startswith("nvidia-h100-mig")
    assert (values["utilization.gpu"] in NOT_A_VALUE) is mig


def test_a_field_the_real_tool_does_not_know_is_named_as_refused(tmp_path):
    header, row = _h100_blocks()["nvidia-h100-80gb-hbm3 idle"]
    found, refused = query_gpus(_replaying_smi(tmp_path, header, row), ["temperature.gpu", "power.draw.bogus"])
    assert refused == {"power.draw.bogus": 'Field "power.draw.bogus" is not a valid field to query.'}
    assert [v["temperature.gpu"] for v in found.values()] == ["41"]


@pytest.mark.parametrize("node, block", [("default", "nvidia-h100-80gb-hbm3 idle"),
                                         ("h100-80gb-mig", "nvidia-h100-mig idle")])
def test_the_stand_in_answers_n_a_where_a_real_h100_does(tmp_path, node, block):
    path = tmp_path / "node.yaml"
    path.write_text(DEFAULT_NODE) if node == "default" else path.write_bytes(resolve_node_description(node).read_bytes())
    header, row = _h100_blocks()[block]
    real = dict(zip([h.split(" [")[0] for h in header.split(", ")], row.split(", ")))
    names = sorted({f.smi for f in FIELDS.values()} | {"compute_cap"})
    said = _stand_in(path, f"--query-gpu={','.join(names)}", "--format=csv,noheader,nounits")
    assert said.returncode == 0, said.stdout + said.stderr
    mine = dict(zip(names, said.stdout.splitlines()[0].split(", ")))
    assert {n for n in names if mine[n] in NOT_A_VALUE} == {n for n in names if real[ALIASES.get(n, n)] in NOT_A_VALUE}
