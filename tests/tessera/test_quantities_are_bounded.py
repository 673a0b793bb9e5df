"""Quantities are bounded as the API server's resource.Quantity bounds them: nothing above 2^63-1, a
non-zero value rounded up to the nano. ``1e99999999`` in a pod used to cost 418 s of CPU in the
extender (the webhook and every verb parse pod quantities); it is now refused at once with a reason
the user reads, and the device plugin and the embedded kubelet read counts with the same parser."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from tessera.podrequest import RequestError, pod_request
from extender.webhook import PodAdmission
from tessera.quantity import MAX_QUANTITY, QuantityError, cpu_millis, memory_bytes, parse_quantity, whole_units

REPO = Path(__file__).resolve().parents[2]
HANG_GUARD_S = 120
TOO_LARGE = "is larger than a Kubernetes quantity can be (at most 2^63-1 = 9223372036854775807)"


def gpu_pod(limits: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default", "uid": "u"},
            "spec": {"containers": [{"name": "main", "resources": {"limits": limits, "requests": dict(limits)}}]}}


def test_a_huge_exponent_is_refused_with_its_reason_not_computed():
    # In a process of its own, so a parser that multiplies it out is stopped by the hang guard.
    code = ("from tessera.quantity import QuantityError, cpu_millis\n"
            "try:\n    cpu_millis('1e99999999')\nexcept QuantityError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=HANG_GUARD_S)
    assert done.stdout.strip() == f"'1e99999999' {TOO_LARGE}", done.stderr


@pytest.mark.parametrize("text", ["1e20", "9.3e18", "9223372036854775808", "8Ei", "10E", "1e19"])
def test_values_above_2_to_the_63_are_refused(text):
    with pytest.raises(QuantityError, match=r"larger than a Kubernetes quantity can be"):
        parse_quantity(text)


def test_values_at_the_bounds_are_read_as_the_api_machinery_reads_them():
    assert parse_quantity("9223372036854775807") == MAX_QUANTITY
    assert parse_quantity("7Ei") == 7 * 2**60 and parse_quantity("9e18") == 9 * 10**18
    # Below a nano, rounded up to one nano (resource.Quantity rounds non-zero values up).
    assert parse_quantity("1e-99999999") == Fraction(1, 10**9) and parse_quantity("-1e-30") == -Fraction(1, 10**9)
    assert parse_quantity("0.1n") == Fraction(1, 10**9) and parse_quantity("0e99999999") == 0
    assert cpu_millis("1e-99999999") == 1 and memory_bytes("1.5") == 2
    assert whole_units("1k") == 1000 and whole_units(4) == 4
    with pytest.raises(QuantityError, match="not a whole number"):
        whole_units("0.5")
    with pytest.raises(QuantityError, match=r"\(200 characters\) is longer than any Kubernetes quantity"):
        parse_quantity("1" * 200)
    with pytest.raises(QuantityError, match="larger than a Kubernetes quantity"):
        parse_quantity(1e300)
    with pytest.raises(QuantityError, match="is not a quantity"):
        parse_quantity(float("inf"))


def test_a_pod_asking_a_huge_quantity_is_refused_at_creation_and_by_filter():
    pod = gpu_pod({"nvidia.com/gpu": "1", "cpu": "1e99999999"})
    with pytest.raises(RequestError) as refused:
        pod_request(pod)
    assert str(refused.value) == f"container 'main': cpu: '1e99999999' {TOO_LARGE}"
    answer = PodAdmission("tessera-scheduler", lambda: (15, 15)).review(
        {"kind": {"kind": "Pod"}, "operation": "CREATE", "namespace": "default", "object": pod})
    assert answer["allowed"] is False and TOO_LARGE in answer["status"]["message"]


@pytest.mark.parametrize("text", ["١٢", "１２", "٣e٣", " 1", "1 ", "1\n", "\t2Gi"])
def test_only_what_the_api_server_parses_is_a_quantity(text):
    """ParseQuantity takes ASCII digits and the whole text: no other script's digits, no spaces."""
    with pytest.raises(QuantityError):
        parse_quantity(text)
