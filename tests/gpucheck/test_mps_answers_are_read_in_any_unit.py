"""The MPS section reads the control daemon's pinned-memory answer whatever unit it prints it in (the docs
say how a limit is set, "<n>G" or "<n>M", not how get_default_device_pinned_mem_limit prints it back), and
refuses words."""

from __future__ import annotations

import pytest

from gpucheck.sections.mps import limit_mib


@pytest.mark.parametrize("answer", ["8G", "8GB", "8192M", "8192 MB", "8.000G", "8589934592", "8g\n", "ok\n8192M"])
def test_an_8_gib_limit_reads_as_8192_mib(answer):
    assert limit_mib(answer) == 8192


@pytest.mark.parametrize("answer", ["", "Invalid memory limit", "Unrecognized command: get_x"])
def test_words_are_no_limit(answer):
    assert limit_mib(answer) is None
