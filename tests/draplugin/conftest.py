"""Fixtures: the DRA driver's kubelet-facing server on real unix sockets (draharness)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from draharness import Driver


@pytest.fixture
def driver():
    root = Path(tempfile.mkdtemp(dir="/tmp", prefix="tdra-"))
    made = []

    def make(claims: dict[tuple[str, str], dict], **kwargs) -> Driver:
        d = Driver(root, claims, **kwargs).start()
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()
    shutil.rmtree(root, ignore_errors=True)
