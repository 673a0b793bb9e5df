"""The extender protocol's floor: a do-nothing scheduler extender, served as tessera-extender serves.

    .venv/bin/python bench/extender_floor.py --listen 127.0.0.1:PORT

It answers ``POST /filter`` and ``POST /prioritize`` on Tessera's own HTTP port (``tessera.httpserve``
with ``extender.http``'s handler, ``Server-Timing`` included) by decoding the whole ExtenderArgs body
(orjson) and encoding an answer of the same shape and size as Tessera's to the same body, as the
request's head describes it (``shape_headers``): filter passes the first nodes named, as many as
Tessera passed, and fails as many of the next ones as Tessera failed, each with a reason as long as
Tessera's were on average, with an error as long as Tessera's (every node passes without those headers); prioritize scores each node
named (0..10, varied so the answer is the size of a real one). No cache, no placement: what is left
is what the protocol costs, the time a Tessera verb cannot go under.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from extender.http import ExtenderHandler, HttpApp  # noqa: E402
from simcluster.extenders import free_port, wait_healthy  # noqa: E402
from tessera.httpserve import HttpService  # noqa: E402

MAX_BODY_BYTES = 8 * 1024 * 1024
SHAPE_HEADERS = {"pass": "X-Floor-Pass", "fail": "X-Floor-Fail", "reason": "X-Floor-Reason-Bytes",
                 "error": "X-Floor-Error-Bytes"}
_asked = {"pass": -1, "fail": 0, "reason": 0, "error": 0}  # the request being answered (pass -1: every node)


def shape_headers(answer: dict) -> dict[str, str]:
    """The headers asking the floor for a filter answer shaped as ``answer`` (an ExtenderFilterResult)."""
    failed = {**(answer.get("FailedNodes") or {}), **(answer.get("FailedAndUnresolvableNodes") or {})}
    reason = sum(map(len, failed.values())) // len(failed) if failed else 0
    shape = {"pass": len(answer.get("NodeNames") or []), "fail": len(failed), "reason": reason,
             "error": len(answer.get("Error") or "")}
    return {SHAPE_HEADERS[key]: str(value) for key, value in shape.items()}


class FloorHandler(ExtenderHandler):
    """The extender's handler, reading the filter answer's shape from the request head (every route
    runs on the port's one event-loop thread, one request at a time)."""

    def do_POST(self) -> None:  # noqa: N802
        for key, header in SHAPE_HEADERS.items():
            default = -1 if key == "pass" else 0
            try:
                _asked[key] = int(self.headers.get(header, default))
            except ValueError:
                _asked[key] = default
        super().do_POST()


def filter_floor(body: bytes) -> bytes:
    """ExtenderFilterResult passing and failing the nodes the request names, as many as asked (else
    passing all)."""
    names = orjson.loads(body).get("NodeNames") or []
    passed = _asked["pass"]
    if passed < 0:
        return orjson.dumps({"Nodes": None, "NodeNames": names, "FailedNodes": {},
                             "FailedAndUnresolvableNodes": {}, "Error": ""})
    reason = "x" * _asked["reason"]
    failed = {name: reason for name in names[passed:passed + _asked["fail"]]}
    return orjson.dumps({"Nodes": None, "NodeNames": names[:passed], "FailedNodes": failed,
                         "FailedAndUnresolvableNodes": {}, "Error": "x" * _asked["error"]})


def prioritize_floor(body: bytes) -> bytes:
    """HostPriorityList scoring every node the request names."""
    names = orjson.loads(body).get("NodeNames") or []
    return orjson.dumps([{"Host": name, "Score": i % 11} for i, name in enumerate(names)])


def floor_service(listen: str) -> HttpService:
    """The floor's port, not yet started."""
    routes = {"/filter": filter_floor, "/prioritize": prioritize_floor}
    return HttpService(listen, FloorHandler, name="extender-floor", app=HttpApp(routes, MAX_BODY_BYTES))


def spawn_floor(timeout_s: float = 60.0) -> tuple[subprocess.Popen, str]:
    """The floor in its own process (as the extender runs in its own), answering; and its URL."""
    listen = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--listen", listen],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://{listen}", timeout_s)
    except TimeoutError:
        proc.kill()
        proc.wait(10)
        raise
    return proc, f"http://{listen}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="host:port")
    args = parser.parse_args(argv)
    floor_service(args.listen).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
