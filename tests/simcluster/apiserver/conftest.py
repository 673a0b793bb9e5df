"""Fixtures for the API server tests: a running server and real-client handles to it."""

from __future__ import annotations

from typing import Iterator

import pytest
from kubernetes import client

from simcluster.apiserver import ApiServer


@pytest.fixture
def server() -> Iterator[ApiServer]:
    """A fresh API server on a free port."""
    with ApiServer(bookmark_interval=0.3) as srv:
        yield srv


@pytest.fixture
def api_client(server: ApiServer) -> Iterator[client.ApiClient]:
    """The real kubernetes client pointed at ``server``."""
    cfg = client.Configuration(host=server.url)
    with client.ApiClient(cfg) as api:
        yield api


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    """``CoreV1Api`` on the test server."""
    return client.CoreV1Api(api_client)
