"""``extender/placement/`` is the pure placement model: it imports no module that reaches a network, the
Kubernetes API, a thread or a process, and no module of the extender's server (the rest of
``extender/``). The pod's request parser (``tessera.podrequest``, ``tessera.quantity``) is input it reads,
not the server. Read from the import graph of every placement module, and checked again at run time
on what importing them loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from test_layering import REPO, imported_modules

PLACEMENT = "extender/placement"
# The model's own modules: the check below is empty (and proves nothing) if they are not where it looks.
MODEL = {"nodestate", "fleet", "fit", "fragmentation", "policies", "scoring", "namelists", "grants", "shapes"}
# Network, Kubernetes, concurrency, processes and the file system, by top-level module name.
IO_MODULES = {
    "socket", "ssl", "http", "urllib", "urllib3", "requests", "socketserver", "asyncio", "select",
    "selectors", "grpc", "kubernetes", "threading", "_thread", "concurrent", "multiprocessing",
    "subprocess", "signal", "os", "pathlib", "shutil", "tempfile", "glob", "io", "prometheus_client",
}
# What placement may read of the extender besides itself: the pod's request as parsed.
EXTENDER_INPUTS: set[str] = set()  # extender modules placement may read (none: its inputs are in the core)


def placement_files(repo: Path = REPO) -> list[Path]:
    return sorted((repo / PLACEMENT).rglob("*.py"))


def impure_imports(repo: Path = REPO) -> list[str]:
    """``file imports module`` for each placement import of an I/O module or of the extender's server."""
    wrong = []
    for path in placement_files(repo):
        for name in sorted(imported_modules(path, repo)):
            top = name.split(".")[0]
            server = top == "extender" and not (name.startswith("extender.placement") or name in EXTENDER_INPUTS)
            if top in IO_MODULES or server:
                wrong.append(f"{path.relative_to(repo)} imports {name}")
    return wrong


def test_the_placement_model_is_where_the_check_looks():
    assert {p.stem for p in placement_files()} >= MODEL | {"__init__"}


def test_placement_imports_no_io_module_and_no_server_module():
    assert impure_imports() == []


def test_loading_placement_loads_no_network_kubernetes_or_thread_module():
    modules = ", ".join(f"extender.placement.{m}" for m in sorted(MODEL))
    probe = ("import sys; before = set(sys.modules); import " + modules + "; "
             "print('\\n'.join(sorted(set(sys.modules) - before)))")
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    tops = {name.split(".")[0] for name in loaded.stdout.split()}
    assert tops & IO_MODULES == set()
    server = {n for n in loaded.stdout.split() if n.startswith("extender.")
              and not n.startswith("extender.placement") and n not in EXTENDER_INPUTS}
    assert server == set()


def test_the_check_sees_a_thread_and_a_server_import(tmp_path):
    (tmp_path / PLACEMENT).mkdir(parents=True)
    (tmp_path / PLACEMENT / "bad.py").write_text(
        "import threading\nfrom tessera.podrequest import pod_request\n"
        "def f():\n    from extender.cache import ClusterCache\n")
    assert impure_imports(tmp_path) == [f"{PLACEMENT}/bad.py imports extender.cache",
                                        f"{PLACEMENT}/bad.py imports threading"]
