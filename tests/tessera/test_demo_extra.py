"""matplotlib is the ``demo`` extra, not a dependency: the image and the hook release carry none of it,
and without it the demo and the replay say how to get their pictures instead of failing."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WITHOUT_MATPLOTLIB = "import sys; sys.modules['matplotlib'] = None\n"


def test_matplotlib_is_the_demo_extra_and_dev_sh_installs_it():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.startswith(("matplotlib", "numpy"))]
    assert [d for d in project["optional-dependencies"]["demo"] if d.startswith("matplotlib")]
    assert 'pip install -q -e ".[demo,test]"' in (REPO / "scripts" / "dev.sh").read_text()


def test_without_matplotlib_the_picture_is_skipped_with_the_reason():
    probe = WITHOUT_MATPLOTLIB + "from tessera.extras import missing_pictures; print(missing_pictures())"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, cwd=REPO)
    assert result.stdout.strip() == "matplotlib is not installed: pip install 'tessera[demo]'", result.stderr
    probe = "from tessera.extras import missing_pictures; print(missing_pictures())"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30,
                          cwd=REPO).stdout.strip() == "None"


def test_replay_png_without_matplotlib_says_how_to_get_it(tmp_path):
    probe = WITHOUT_MATPLOTLIB + "from simcluster.replay import replay_main; sys.exit(replay_main(sys.argv[1:]))"
    result = subprocess.run([sys.executable, "-c", probe, "--png", str(tmp_path / "c.png")], capture_output=True,
                            text=True, timeout=60, cwd=REPO)
    assert result.returncode == 2
    assert "tessera replay: --png: matplotlib is not installed: pip install 'tessera[demo]'" in result.stderr
