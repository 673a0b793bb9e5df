"""Running the MPS section's CUDA clients (gpucheck/cudaclient.py, or the dry run's fake ones) as bounded
subprocesses, each with the environment Tessera's Allocate answered for its share."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["ClientError", "Clients"]


class ClientError(RuntimeError):
    """A client that failed, timed out or said nothing; the message has its last words."""


def _answer(stdout: str) -> dict:
    for line in reversed(stdout.strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    raise ClientError(f"no JSON answer: {stdout.strip()[-200:]!r}")


class Clients:
    """Starts clients with ``argv`` (the client program) before ``deadline`` (time.monotonic)."""

    def __init__(self, argv: list[str], fake: bool, deadline: float) -> None:
        self.argv = argv
        self.fake = fake
        self.deadline = deadline

    def env(self, share: dict[str, str]) -> dict[str, str]:
        """This process's environment with the share's variables; a real client gets no PYTHONPATH (the
        check's carried packages must not shadow the ones torch was installed with)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CUDA_MPS_") and k != "CUDA_VISIBLE_DEVICES"}
        if not self.fake:
            env.pop("PYTHONPATH", None)
        return {**env, **share}

    def _left(self, most: float) -> float:
        left = self.deadline - time.monotonic()
        if left <= 1:
            raise ClientError("no time left in the section's budget")
        return min(most, left)

    def run(self, args: list[str], share: dict[str, str], most_s: float = 90.0) -> dict:
        """One client to its end: its JSON answer, or ClientError."""
        try:
            result = subprocess.run([*self.argv, *args], env=self.env(share), capture_output=True, text=True,
                                    timeout=self._left(most_s), stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as err:
            raise ClientError(f"{args[0]} did not finish in {err.timeout:.0f} s") from None
        if result.returncode != 0:
            words = (result.stderr.strip().splitlines() or result.stdout.strip().splitlines() or ["(nothing)"])[-1]
            raise ClientError(f"{args[0]} exited {result.returncode}: {words}")
        return _answer(result.stdout)

    @contextmanager
    def holding(self, gib: int, share: dict[str, str], most_s: float = 60.0) -> Iterator[dict]:
        """A client holding ``gib`` GiB until the block ends; yields its ready answer (with its pid)."""
        proc = subprocess.Popen([*self.argv, "hold", "--gib", str(gib)], env=self.env(share), text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            line = _ready_line(proc, self._left(most_s))
            yield _answer(line)
        finally:
            if proc.stdin:
                proc.stdin.close()  # the client lets go and exits
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()


def _ready_line(proc: subprocess.Popen, timeout_s: float) -> str:
    """The first line the holding client prints, within ``timeout_s``."""
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout_s):
            raise ClientError(f"hold: no ready line in {timeout_s:.0f} s")
    line = proc.stdout.readline()
    if not line:
        raise ClientError(f"hold: exited {proc.wait()} before it was ready: {proc.stderr.read().strip()[-200:]}")
    return line
