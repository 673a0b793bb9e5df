"""The lent GPU machine has no package registry: the check may import, beyond the standard library and
this repository, only the packages ``scripts/gpu-check.sh prepare`` carries (no grpcio, kubernetes or
cryptography). Read in a fresh interpreter that imports the check and every section, as the real run does
(the dry run's stand-ins are not carried code paths there)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import packages_distributions

from checkrun import REPO

PROBE = """
import importlib, json, sys
import gpucheck.main, gpucheck.plugin, gpucheck.mpsclients
from gpucheck.sections import SECTION_NAMES
for name in SECTION_NAMES:
    importlib.import_module("gpucheck.sections." + name)
stdlib = set(sys.stdlib_module_names)
print(json.dumps(sorted({m.split(".")[0] for m, mod in list(sys.modules.items())
                         if getattr(mod, "__file__", None) and m.split(".")[0] not in stdlib})))
"""


def carried() -> set[str]:
    text = (REPO / "scripts" / "gpu-check.sh").read_text()
    (names,) = re.findall(r"^PACKAGES=\(([^)]*)\)", text, re.M)
    return {n.lower().replace("_", "-") for n in names.split()}


def test_every_third_party_module_the_check_imports_is_carried():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, check=True).stdout
    ours = {p.name for p in REPO.iterdir() if (p / "__init__.py").exists()}
    dists = packages_distributions()
    third_party = {m: {d.lower().replace("_", "-") for d in dists.get(m, [m])} for m in json.loads(out)
                   if m not in ours and not m.startswith("_")}
    missing = {m: d for m, d in third_party.items() if not d & carried()}
    assert missing == {}
    assert "grpc" not in third_party and "kubernetes" not in third_party and "cryptography" not in third_party
