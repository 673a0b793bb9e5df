"""A hook release for the host: the Python runtime and only the packages the hook imports.

runc and crun run the hook on the host, outside any container, so ``deploy/node/install-hook.sh``
(the device plugin's init container) copies it there: ``python -m hook.release <folder>``, run by the
image's own Python, fills a new release folder, and the script then switches ``/opt/tessera/current``
to it. The folder holds::

    bin/python3.X           the image's interpreter
    bin/tessera-hook        what the runtime's hook entry runs (a two-line sh script)
    lib/libpython3*.so*     the interpreter's shared library, where it has one
    lib/python3.X/          the standard library (lib-dynload included), less what no hook needs
    lib/python3.X/site-packages/<HOOK_PACKAGES>

Every path in ``bin/tessera-hook`` is relative to the script, so a release runs wherever it lies.
The hook's imports (the stage fast path, and the full parser of ``--help``, ``--config`` and
``install``) stay inside ``HOOK_PACKAGES``; a test runs a release with nothing else on its path.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import sys
import sysconfig

# Top-level import names the hook needs: its own, Tessera's core (grant, records, device IDs, and the
# config package the full parser builds from), PyYAML (config files) and structlog (tessera.log).
HOOK_PACKAGES = ("hook", "tessera", "yaml", "structlog")
# Standard-library entries no hook run imports (installers, GUIs, 2to3, pydoc's topics, the static
# library's build files), and the third-party folders: only HOOK_PACKAGES are copied into those.
STDLIB_LEFT_OUT = ("site-packages", "dist-packages", "ensurepip", "idlelib", "tkinter", "turtledemo", "turtle.py",
                   "lib2to3", "pydoc_data", "test", "tests", "idle_test", "__phello__")

WRAPPER = """#!/bin/sh
# Written by python -m hook.release: this release's Python, isolated (-I: no PYTHONPATH, no user site).
here=${{0%/*}}
LD_LIBRARY_PATH="$here/../lib" exec "$here/{python}" -I -m hook.main "$@"
"""


def _python_name() -> str:
    return f"python{sys.version_info.major}.{sys.version_info.minor}"


def _left_out(_folder: str, names: list[str]) -> set[str]:
    return {n for n in names if n in STDLIB_LEFT_OUT or n.startswith("config-")}


def package_source(name: str) -> str:
    """The file or package folder that ``import name`` loads in this Python."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise LookupError(f"{name} is not importable here: the hook needs it")
    if spec.submodule_search_locations:
        return list(spec.submodule_search_locations)[0]
    if spec.origin is None:
        raise LookupError(f"{name} has no file to copy")
    return spec.origin


def build_release(folder: str) -> list[str]:
    """Fill ``folder`` (new or empty) with a runnable hook release; return lines saying what went in."""
    python = _python_name()
    bin_dir, lib_dir = os.path.join(folder, "bin"), os.path.join(folder, "lib")
    stdlib_dest = os.path.join(lib_dir, python)
    for made in (bin_dir, lib_dir):
        os.makedirs(made, exist_ok=True)
    interpreter = os.path.realpath(sys.executable)
    shutil.copy2(interpreter, os.path.join(bin_dir, python))
    # Beside the interpreter's bin/, as it was installed (not the build's LIBDIR, which a moved install leaves).
    libdir = os.path.join(os.path.dirname(os.path.dirname(interpreter)), "lib")
    for library in sorted(glob.glob(os.path.join(libdir, "libpython3*.so*"))):
        shutil.copy2(library, lib_dir, follow_symlinks=False)
    shutil.copytree(sysconfig.get_path("stdlib"), stdlib_dest, symlinks=True, ignore=_left_out,
                    dirs_exist_ok=True)
    site = os.path.join(stdlib_dest, "site-packages")
    os.makedirs(site, exist_ok=True)
    for name in HOOK_PACKAGES:
        source = package_source(name)
        target = os.path.join(site, os.path.basename(source))
        if os.path.isdir(source):
            shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
    wrapper = os.path.join(bin_dir, "tessera-hook")
    with open(wrapper, "w", encoding="utf-8") as fh:
        fh.write(WRAPPER.format(python=python))
    os.chmod(wrapper, 0o755)
    return [f"hook release: {python} and {', '.join(HOOK_PACKAGES)} in {folder}"]


def main(argv: list[str] | None = None) -> int:
    """``python -m hook.release FOLDER``: build a release in FOLDER."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m hook.release FOLDER", file=sys.stderr)
        return 2
    for line in build_release(args[0]):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
