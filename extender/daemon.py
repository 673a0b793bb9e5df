"""The extender daemon assembled: API client, cache and its watches, the verbs, leader election, the
verb port (HTTPS with client certificates when ``client_ca_path`` is set), the webhook's TLS port and
the optional plain port for probes and Prometheus. ``ExtenderDaemon`` runs in-process (tests, ``tessera
demo``); ``extender.main`` runs it as ``tessera-extender``."""

from __future__ import annotations

import dataclasses
import os
import socket
import uuid

from tessera.config import ExtenderConfig
from tessera.httpserve import HttpService, ServeLimits, TlsFiles
from extender.placement.shapes import shape_counts
from tessera.log import get_logger
from tessera.signingkeys import TrustedKeys, load_trusted_keys

from extender.cache import ClusterCache
from extender.drabook import DraBook
from extender.drascoring import DraScorer
from extender.placement.fragmentation import FragmentationModel, ShapeBook
from extender.http import ExtenderHandler, HttpApp
from extender.informer import Informer
from extender.kubeapi import KubeApi
from extender.leader import LeaseElector
from extender.metrics import ExtenderMetrics
from extender.pendingpods import PendingPods
from extender.placement import PolicyContext
from extender.verbs import ExtenderVerbs
from extender.warmer import ModelWarmer
from extender.webhook import PodAdmission

log = get_logger("extender")
# etcd keeps no object over 1.5 MiB, and an UPDATE's review carries it twice (object and oldObject): a
# larger AdmissionReview is no API server's, and decoding one costs a worker a second.
WEBHOOK_MAX_BODY_BYTES = 4 * 1024 * 1024
PROBE_MAX_BODY_BYTES = 64 * 1024


def typical_shapes(config: ExtenderConfig) -> ShapeBook | FragmentationModel:
    """The fragmentation policy's typical shapes: fixed by ``typical_shapes`` in the config, else
    learned from the last ``shape_window`` pods bound. Raises ShapeError for a shape it cannot read."""
    if not config.typical_shapes:
        return ShapeBook(window=config.shape_window)
    counts = shape_counts(config.typical_shapes)
    log.info("typical_shapes_given", shapes=len(counts), pods=sum(counts.values()))
    return FragmentationModel(counts.items())


def trusted_keys(signing_key, path: str) -> TrustedKeys:
    """The keys the cache verifies assignments with: the signing key's public half, then those in ``path``
    (the previous keys a rotation keeps). Raises AssignmentError or OSError when ``path`` cannot be read."""
    keys = TrustedKeys([signing_key.public_key(), *(load_trusted_keys(path) if path else ())])
    log.info("assignment_keys_trusted", signing_key_id=keys.ids[0], key_ids=list(keys.ids))
    return keys


class ExtenderDaemon:
    """Everything one replica runs. ``start()`` returns at once; ``wait_synced()`` waits for the
    first lists; ``stop()`` gives the lease back and stops the listeners and watches."""

    def __init__(self, config: ExtenderConfig, api: KubeApi, signing_key, *, identity: str = "",
                 lease_duration_s: float | None = None, lease_retry_s: float | None = None,
                 shapes: ShapeBook | FragmentationModel | None = None) -> None:
        self.config = config
        self.api = api
        self.identity = identity or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.cache = ClusterCache(config.workload_label, trusted_keys(signing_key, config.trusted_keys_path))
        self.ctx = PolicyContext(shapes=typical_shapes(config) if shapes is None else shapes,
                                 default_policy=config.policy)
        self.metrics = ExtenderMetrics(self.cache, self.ctx)
        self.pending = PendingPods()
        self.dra_book = DraBook() if config.dra_scoring else None
        self.informer = Informer(api, self.cache, self.pending, self.dra_book)
        self.elector = (LeaseElector(api, config.lease_namespace, config.lease_name, self.identity,
                                     lease_duration_s or config.lease_duration_s,
                                     lease_retry_s or config.lease_retry_s) if config.leader_election else None)
        self.warmer = ModelWarmer(self.cache, self.ctx)
        self.verbs = ExtenderVerbs(self.cache, api, signing_key, self.ctx, self.metrics, config.workload_label,
                                   is_leader=self.is_leader, warmer=self.warmer, pending=self.pending,
                                   filter_best_nodes=config.filter_best_nodes,
                                   dra=DraScorer(self.dra_book) if self.dra_book is not None else None)
        routes = {"/filter": self.verbs.filter, "/prioritize": self.verbs.prioritize, "/bind": self.verbs.bind,
                  "/preempt": self.verbs.preempt, "/prioritize-dra": self.verbs.prioritize_dra}
        self.admission = PodAdmission(config.scheduler_name, self.cache.mps_cards,
                                      routed_schedulers=config.routed_schedulers, ledger_writers=config.ledger_writers,
                                      dra_asks=self.dra_book.asks_tessera if self.dra_book is not None else None)
        limits = ServeLimits.from_config(config, max_body_bytes=config.max_body_bytes)
        # Both ports follow their files: a renewed certificate (or client CA) is served without a restart.
        verb_tls = (TlsFiles(config.tls_cert_path, config.tls_key_path, config.client_ca_path)
                    if config.client_ca_path else None)
        self.http = HttpService(config.listen, ExtenderHandler, name="extender-verbs", limits=limits, tls=verb_tls,
                                app=HttpApp(routes, config.max_body_bytes, self.metrics, self.ready))
        self.probes = None
        if config.metrics_listen:  # GET only: no request body worth reading
            probe_limits = dataclasses.replace(limits, max_body_bytes=PROBE_MAX_BODY_BYTES)
            self.probes = HttpService(config.metrics_listen, ExtenderHandler, name="extender-metrics",
                                      limits=probe_limits, app=HttpApp({}, PROBE_MAX_BODY_BYTES, self.metrics, self.ready))
        self.webhook = None
        if config.webhook_listen and config.tls_cert_path and os.path.exists(config.tls_cert_path):
            review_bytes = min(config.max_body_bytes, WEBHOOK_MAX_BODY_BYTES)
            self.webhook = HttpService(config.webhook_listen, ExtenderHandler, name="extender-webhook",
                                       limits=dataclasses.replace(limits, max_body_bytes=review_bytes),
                                       tls=TlsFiles(config.tls_cert_path, config.tls_key_path),
                                       app=HttpApp({"/mutate": self.admission}, review_bytes, None, self.ready))
        else:
            log.warning("webhook_disabled", tls_cert_path=config.tls_cert_path, why="no TLS certificate")
        self.ports = [p for p in (self.http, self.probes, self.webhook) if p is not None]

    def is_leader(self) -> bool:
        return self.elector is None or self.elector.is_leader()

    def ready(self) -> tuple[bool, str]:
        """Ready (HTTP 200 on /healthz) only as the leader with a synced cache."""
        if not self.informer.synced.is_set():
            return False, "cache not synced\n"
        if not self.is_leader():
            return False, "standby: not the leader\n"
        return True, "ok\n"

    @property
    def url(self) -> str:
        """The verb port's URL (https when it asks for client certificates)."""
        host, port = self.http.address
        scheme = "https" if self.http.tls is not None else "http"
        return f"{scheme}://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"

    @property
    def webhook_port(self) -> int | None:
        return self.webhook.address[1] if self.webhook else None

    def start(self) -> "ExtenderDaemon":
        self.informer.start()
        self.warmer.start()
        if self.elector is not None:
            self.elector.start()
        for port in self.ports:
            port.start()
        log.info("extender_listening", url=self.url, webhook_port=self.webhook_port, identity=self.identity,
                 policy=self.config.policy)
        return self

    def wait_synced(self, timeout_s: float = 30.0) -> bool:
        return self.informer.synced.wait(timeout_s)

    def stop(self) -> None:
        if self.elector is not None:
            self.elector.stop()
        for port in self.ports:
            port.shutdown()
        self.informer.stop()
        self.warmer.stop()
        log.info("extender_stopped", identity=self.identity)
