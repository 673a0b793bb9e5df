"""Which config file a node uses: the label's choice beside the default file, and every way a label can be
wrong (a name that does not exist, one that would climb out of the folder, 'default'), each answered
with the default file and the reason."""

from __future__ import annotations

import pytest

from simcluster.volumes import project_texts
from tessera.config.nodeconfig import available_configs, choose_config_file


@pytest.fixture
def folder(tmp_path):
    volume = tmp_path / "node-config"
    project_texts(volume, "v0", {"config.yaml": "version: v1\n", "a100-mig.yaml": "version: v1\n"})
    (tmp_path / "secret.yaml").write_text("version: v1\n")  # beside the folder: never reachable
    return volume


def test_no_label_is_the_default_file(folder):
    chosen = choose_config_file(str(folder / "config.yaml"), None)
    assert (chosen.name, chosen.path, chosen.problem) == ("default", str(folder / "config.yaml"), None)


def test_a_label_names_a_key_of_the_configmap(folder):
    chosen = choose_config_file(str(folder / "config.yaml"), "a100-mig")
    assert (chosen.name, chosen.path, chosen.problem) == ("a100-mig", str(folder / "a100-mig.yaml"), None)


@pytest.mark.parametrize("label, why", [
    ("h100", "no h100.yaml"),
    ("../secret", "not a config name"),
    ("..", "not a config name"),
    ("..data", "not a config name"),
    ("default", "not a config name"),
    ("config", "not a config name"),
    ("a100\n", "not a config name"),
    ("a" * 64, "not a config name"),
])
def test_a_wrong_label_falls_back_to_the_default_file_and_says_why(folder, label, why):
    chosen = choose_config_file(str(folder / "config.yaml"), label)
    assert chosen.name == "default" and chosen.path == str(folder / "config.yaml")
    assert why in chosen.problem and repr(label) in chosen.problem


def test_the_folder_offers_its_keys_not_the_kubelets_own_entries(folder):
    assert available_configs(str(folder)) == ["a100-mig", "default"]
    missing = choose_config_file(str(folder / "config.yaml"), "h100").problem
    assert "configs there: a100-mig, default" in missing


def test_a_label_without_a_config_file_keeps_the_built_in_defaults():
    chosen = choose_config_file(None, "a100-mig")
    assert chosen.path is None and "no config file is set" in chosen.problem
