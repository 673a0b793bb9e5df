"""Run as a child process with the mock NVML on LD_LIBRARY_PATH: what Tessera's NVML layer reads, as JSON.

``python probe.py inventory``: driver and CUDA versions and every GPU's inventory, then two samples (the
second one carries GPM figures). ``python probe.py events ROUNDS``: up to ROUNDS rounds of read, sample
and a short event wait, stopping after the first round that saw an event; every event, then one more read and sample: the
errors they reported.
"""

from __future__ import annotations

import dataclasses
import json
import sys

from tessera.log import configure_logging
from tessera.nvml import Nvml


def _plain(value):
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def inventory(nvml: Nvml) -> dict:
    gpus = nvml.read_gpus()
    nvml.sample_gpus()  # GPM needs a previous sample
    samples = nvml.sample_gpus()
    return {"driver": nvml.driver_version(), "cuda": nvml.cuda_version(),
            "gpus": [_plain(g) for g in gpus], "samples": [_plain(s) for s in samples]}


def events(nvml: Nvml, rounds: int) -> dict:
    seen: list[dict] = []
    for _ in range(rounds):
        nvml.read_gpus()
        nvml.sample_gpus()
        seen += [_plain(e) for e in nvml.events(0.1)]
        if seen:
            break
    read_errors = {g.index: g.error for g in nvml.read_gpus() if g.error}  # after the event: what a reader sees now
    sample_errors = {s.index: s.error for s in nvml.sample_gpus() if s.error}
    return {"events": seen, "read_errors": read_errors, "sample_errors": sample_errors}


def main() -> None:
    configure_logging("error", "json")
    nvml = Nvml().open()
    try:
        out = inventory(nvml) if sys.argv[1] == "inventory" else events(nvml, int(sys.argv[2]))
    finally:
        nvml.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
