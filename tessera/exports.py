"""A package's public names, listed in its ``__init__.py`` and imported from their modules at first use.

So ``import hook`` stays light on the container-start path, and ``python -m simcluster.apiserver.serve``
loads no kubelet, while ``from deviceplugin import main`` and ``simcluster.running`` still work::

    __getattr__, __all__ = public_names("deviceplugin", {"main": "deviceplugin.main", ...})
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing itself is not imported: it costs the hook 7 ms at every container start
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def public_names(package: str, homes: dict[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """A module ``__getattr__`` that imports each name of ``homes`` (name -> its module) at first use,
    and the sorted names for ``__all__``."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(home), name)

    return __getattr__, sorted(homes)
