"""The hook runs at every container start: it imports nothing heavy and needs no config file."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

from hook.settings import HookSettings, parse_fast
from tessera.config import HookConfig

HEAVY = ("grpc", "kubernetes", "pynvml", "structlog", "yaml", "google.protobuf", "cryptography")


def test_hot_path_imports_nothing_heavy(node):
    _, response = node.allocate("nvidia.com/gpu", [0])
    bundle = node.root / "light"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(node.config("true", [response])))
    state = json.dumps({"id": "light", "pid": 0, "bundle": str(bundle)})
    probe = ("import sys, io; sys.stdin = io.TextIOWrapper(io.BytesIO(sys.argv[1].encode())); "
             "from hook.main import main; rc = main(sys.argv[2:]); "
             "print(sorted(m for m in sys.modules)); sys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", probe, state, "createRuntime", *node.flags("containerd")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    loaded = set(eval(result.stdout))  # noqa: S307 - our own probe's output
    assert len(node.records()) == 1, "the granted container went the whole way"
    for name in HEAVY:
        assert not {m for m in loaded if m == name or m.startswith(name + ".")}, f"hook imported {name}"
    assert "tessera.config" not in loaded, "the hook's hot path reads no config package (it loads YAML)"


def test_settings_mirror_hook_config():
    defaults = HookSettings()
    for field in dataclasses.fields(HookConfig):
        assert hasattr(defaults, field.name), f"HookSettings lacks HookConfig.{field.name}"
        value = getattr(HookConfig(), field.name)
        mine = getattr(defaults, field.name)
        assert (tuple(value) if isinstance(value, list) else value) == mine, field.name


def test_installed_flags_round_trip():
    settings = HookSettings(runtime="crio", state_dir="/s", grant_key_path="/k", allow_privileged=True,
                            mps_user=7, exempt_namespaces=("a", "b"))
    stage, parsed = parse_fast(["poststop", *settings.as_flags()])
    assert stage == "poststop"
    assert [getattr(parsed, n) for n in HookSettings.__slots__] == [getattr(settings, n) for n in HookSettings.__slots__]
    assert parse_fast(["createRuntime", "--config", "/x.yaml"]) is None  # the full parser reads a file
