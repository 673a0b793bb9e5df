"""A device plugin runs with TESSERA_FAKE_NVML in its own process; a test in another injects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from tessera.fakenvml import FaultInjector

from fakegpu import one_model

WAITER = r"""
import json, sys, time
from tessera.log import configure_logging
from tessera.nvml import Nvml
configure_logging("warning", stream=sys.stderr)
with Nvml() as nvml:
    print(json.dumps([g.uuid for g in nvml.read_gpus()]), flush=True)
    nvml.events(0)
    print("ready", flush=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        events = nvml.events(1.0)
        if events:
            e = events[0]
            print(json.dumps({"gpu": e.gpu_index, "uuid": e.gpu_uuid, "xid": e.xid}), flush=True)
            break
"""


def test_xid_injected_from_another_process_reaches_the_waiter_within_a_second(tmp_path):
    path = one_model(tmp_path, "H100-SXM5-80GB", count=8)
    env = {**os.environ, "TESSERA_FAKE_NVML": str(path)}
    child = subprocess.Popen([sys.executable, "-c", WAITER], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    try:
        uuids = json.loads(child.stdout.readline())
        assert len(uuids) == 8  # the child read the fake node through the unchanged layer
        assert child.stdout.readline().strip() == "ready"
        injected = time.monotonic()
        FaultInjector(path).inject_xid(5, 79)
        line = child.stdout.readline()
        latency = time.monotonic() - injected
        assert json.loads(line) == {"gpu": 5, "uuid": uuids[5], "xid": 79}
        assert latency < 1.0, f"the Xid took {latency:.3f}s to cross processes"
    finally:
        child.kill()
        child.wait()
