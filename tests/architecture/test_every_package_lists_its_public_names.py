"""Each package's ``__init__.py`` is its public face: it says what the package is, lists its public names
in ``__all__``, and every listed name is there (imported from its module at first use where the package
must stay light); no public name hides a module of the same name."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

PACKAGES = ("tessera", "deviceplugin", "extender", "hook", "exporter", "simcluster", "realcluster", "tessera_cli")


@pytest.mark.parametrize("name", PACKAGES)
def test_the_package_lists_its_public_names_and_each_is_there(name):
    package = importlib.import_module(name)
    assert (package.__doc__ or "").strip(), f"{name}/__init__.py says nothing of what {name} is"
    listed = getattr(package, "__all__", [])
    assert listed, f"{name}/__init__.py lists no public names"
    missing = [n for n in listed if getattr(package, n, None) is None]
    assert missing == []
    modules = {m.name for m in pkgutil.iter_modules(package.__path__)}
    assert sorted(set(listed) & modules) == [], "a public name that is also a module's name means two things"


@pytest.mark.parametrize("name", [p for p in PACKAGES if p != "tessera"])
def test_an_unknown_name_is_a_clear_attribute_error(name):
    with pytest.raises(AttributeError, match=f"module '{name}' has no attribute 'no_such_name'"):
        getattr(importlib.import_module(name), "no_such_name")
