"""The placement policy names are written once, in the core (``tessera.policy_names``): the config
checks ``extender.policy`` against them, the webhook the pod's annotation, and placement scores
exactly them. No other module of the tree spells the whole list again."""

from __future__ import annotations

import ast
from types import SimpleNamespace

import pytest
from test_layering import REPO, ROOMS, room_files

from extender.placement import POLICIES as PLACEMENT_POLICIES
from extender.placement import PlacementError, PolicyContext, resolve_policy
from extender.placement.policies import SCORERS
from tessera.config import ConfigError, parse_config
from tessera.policy_names import POLICIES

HOME = "tessera/policy_names.py"
NO_ANNOTATION = SimpleNamespace(policy="")  # what resolve_policy reads of a pod that names no policy


def lists_of_every_policy() -> list[str]:
    """``file:line`` of each tuple, list or set literal naming every policy."""
    found = []
    for room in ROOMS:
        for path in room_files(room):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                    words = {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
                    if words >= set(POLICIES):
                        found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def test_the_policy_list_is_spelled_in_one_place():
    assert [where.split(":")[0] for where in lists_of_every_policy()] == [HOME]


def test_placement_scores_exactly_the_names_the_core_lists():
    assert PLACEMENT_POLICIES is POLICIES
    assert set(SCORERS) == set(POLICIES)


@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_the_config_accepts_is_one_placement_applies(policy):
    assert parse_config({"version": "v1", "extender": {"policy": policy}}).extender.policy == policy
    assert resolve_policy(NO_ANNOTATION, policy, PolicyContext()) == policy


def test_a_name_outside_the_list_is_refused_by_config_and_placement():
    with pytest.raises(ConfigError, match="extender.policy"):
        parse_config({"version": "v1", "extender": {"policy": "pack-tight"}})
    with pytest.raises(PlacementError, match="pack-tight"):
        resolve_policy(NO_ANNOTATION, "pack-tight", PolicyContext())
