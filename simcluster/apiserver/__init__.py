"""The embedded Kubernetes API server of simcluster.

``ApiServer`` serves the REST API on 127.0.0.1; ``ApiServer.registry`` is the thread-safe
in-process handle (create/get/list/replace/patch/delete/bind/evict with the same semantics);
``ApiError`` is what every failure raises, rendered as a ``Status`` on the wire.
"""

from .errors import ApiError
from .patch import JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH
from .registry import Registry
from .server import ApiServer
from .store import Store

__all__ = ["ApiError", "ApiServer", "JSON_PATCH", "MERGE_PATCH", "Registry", "STRATEGIC_PATCH", "Store"]
