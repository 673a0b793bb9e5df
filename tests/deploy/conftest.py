"""Fixtures: deploy/ rendered once per session (the default install and overlays/production)."""

from __future__ import annotations

import pytest

from manifests import OVERLAYS, kubectl, prepare, render


@pytest.fixture(scope="session")
def deploy_copy(tmp_path_factory):
    """A copy of deploy/ with keys made by make-keys.sh."""
    return prepare(tmp_path_factory.mktemp("deploy"))


@pytest.fixture(scope="session")
def rendered(deploy_copy) -> dict[str, list[dict]]:
    """The rendered objects of each overlay; skipped (with the reason) where kubectl is missing."""
    if kubectl() is None:
        pytest.skip("kubectl is not installed: deploy/ cannot be rendered with kubectl kustomize")
    return {name: render(deploy_copy, path) for name, path in OVERLAYS.items()}
