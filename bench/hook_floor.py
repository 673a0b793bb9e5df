"""The hook's floors, and the production-style install the hook is measured in.

- ``hook_release``: a hook release as deploy/'s init container makes it (``python -m hook.release``):
  the interpreter, the standard library and only the packages the hook imports, run by
  ``bin/tessera-hook`` (``python -I -m hook.main``). Not the editable install, whose import finder
  adds 19-28 ms to every start.
- ``noop_hook``: the least an OCI hook can be, a small C program that reads the state from stdin
  and exits 0 (``/bin/true`` where no C compiler is found: it exits without reading).
- ``python_startup``: that release's interpreter doing nothing (``-I -c pass``, and ``-I -S``: no
  ``site`` module), the start-up every Python hook pays.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

NOOP_SOURCE = """#include <unistd.h>
int main(void) {
    char buf[4096];
    while (read(0, buf, sizeof buf) > 0) {}
    return 0;
}
"""


def hook_release(folder: Path) -> Path:
    """A hook release of this checkout in ``folder`` (new or empty); its ``bin/tessera-hook``."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    built = subprocess.run([sys.executable, "-m", "hook.release", str(folder)], cwd=str(REPO), env=env,
                           capture_output=True, text=True)
    if built.returncode != 0:
        raise RuntimeError(f"python -m hook.release failed: {built.stderr.strip()}")
    return folder / "bin" / "tessera-hook"


def noop_hook(folder: Path) -> tuple[str, list[str]]:
    """(what it is, argv) of the no-op hook, built in ``folder`` where a C compiler is found."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is not None:
        source, binary = folder / "noop-hook.c", folder / "noop-hook"
        folder.mkdir(parents=True, exist_ok=True)
        source.write_text(NOOP_SOURCE, encoding="utf-8")
        if subprocess.run([cc, "-O2", "-o", str(binary), str(source)], capture_output=True).returncode == 0:
            return "no-op hook (C, reads stdin)", [str(binary)]
    return "no-op hook (/bin/true)", ["/bin/true"]


def python_startup(release: Path) -> dict[str, list[str]]:
    """argv of the release's interpreter doing nothing, by label (run with ``release_env``)."""
    python = next((release / "bin").glob("python3*"))
    return {"python -I -c pass": [str(python), "-I", "-c", "pass"],
            "python -I -S -c pass": [str(python), "-I", "-S", "-c", "pass"]}


def release_env(release: Path) -> dict[str, str]:
    """The environment the release's interpreter needs when run without its wrapper (its shared library)."""
    return {**os.environ, "LD_LIBRARY_PATH": str(release / "lib")}
