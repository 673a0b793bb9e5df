"""The node daemons' config file: which one a node uses, and following it as it changes.

The node config lives in a ConfigMap mounted as a folder (``tessera-node-config`` on
``/etc/tessera-config``): ``config.yaml`` is every node's, and each further key ``<name>.yaml`` is a
config a node takes when labelled ``tessera.io/node-config=<name>`` (NVIDIA's config manager's scheme,
with Tessera's label). A label that names no config, or an invalid name, leaves the node on
``config.yaml`` and says why (``node_config_not_found``): the same answer at start and later, so a
restart never changes what a node runs.

The kubelet rewrites a mounted ConfigMap in place (a ``..data`` symlink swap, within about a minute of
an edit), so :class:`NodeConfigWatch` reads the chosen file every few seconds and on every change of
the label; a new text that validates goes to the daemon's ``apply``, one that does not is refused
(``node_config_refused``) and the daemon keeps what it runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from prometheus_client import CollectorRegistry, Gauge

from tessera.config.loader import CONFIG_ENV, config_from_args
from tessera.config.schema import ConfigError
from tessera.config.v1 import TesseraConfig
from tessera.periodic import PeriodicWorker

NODE_CONFIG_LABEL = "tessera.io/node-config"
DEFAULT_NAME = "default"
# A label value, which also cannot climb out of the folder: no '/', starts and ends alphanumeric.
_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")   # fullmatch


@dataclass(frozen=True)
class ChosenConfig:
    """The config file a node uses: ``name`` (the label's value, or ``default``), its ``path`` (None:
    no file, built-in defaults), and ``problem``: why the label's choice was not taken, or None."""

    name: str
    path: str | None
    problem: str | None = None


def node_config_label(node: dict | None) -> str | None:
    """A Node's ``tessera.io/node-config`` label, or None."""
    return (((node or {}).get("metadata") or {}).get("labels") or {}).get(NODE_CONFIG_LABEL) or None


def available_configs(folder: str) -> list[str]:
    """The config names a folder offers (``<name>.yaml`` files, ``config.yaml`` as ``default``)."""
    try:
        entries = os.listdir(folder)
    except OSError:
        return []
    names = []
    for entry in sorted(entries):
        if entry.startswith(".") or not entry.endswith(".yaml"):
            continue  # the kubelet's ..data and timestamped folders
        names.append(DEFAULT_NAME if entry == "config.yaml" else entry[: -len(".yaml")])
    return names


def choose_config_file(default_path: str | None, label: str | None) -> ChosenConfig:
    """The file a node labelled ``label`` uses: ``<folder of default_path>/<label>.yaml`` where it exists,
    else ``default_path`` with the reason."""
    if not label:
        return ChosenConfig(DEFAULT_NAME, default_path)
    where = f"label {NODE_CONFIG_LABEL}={label!r}"
    if default_path is None:
        return ChosenConfig(DEFAULT_NAME, None, f"{where}: no config file is set (--config or TESSERA_CONFIG), "
                                                f"so there is no folder to choose from; built-in defaults used")
    folder = os.path.dirname(os.path.abspath(default_path))
    if not _NAME.fullmatch(label) or label in (DEFAULT_NAME, "config"):
        return ChosenConfig(DEFAULT_NAME, default_path,
                            f"{where} is not a config name (letters, digits, '-', '_', '.'; not 'default' or 'config'); "
                            f"{default_path} used")
    candidate = os.path.join(folder, f"{label}.yaml")
    if not os.path.isfile(candidate):
        offered = ", ".join(available_configs(folder)) or "none"
        return ChosenConfig(DEFAULT_NAME, default_path,
                            f"{where}: no {label}.yaml in {folder} (configs there: {offered}); {default_path} used")
    return ChosenConfig(label, candidate)


class StartedConfig(NamedTuple):
    """What a node daemon starts with: its ``config`` (file and flags), the ``chosen`` file, the ``digest``
    of the text it was read from, and ``default_path``: ``--config`` or ``TESSERA_CONFIG`` (None: neither),
    the file a label's choice sits beside, which the daemon's :class:`NodeConfigWatch` follows from."""

    config: TesseraConfig
    chosen: ChosenConfig
    digest: str
    default_path: str | None


def start_config(parser: argparse.ArgumentParser, args: argparse.Namespace, config: TesseraConfig,
                 label: str | None, section: str, log) -> StartedConfig:
    """The config a node daemon starts with, and the digest of the text it was read from: the file its
    ``tessera.io/node-config`` label names beside the default one, else the default (read again, so the
    digest is of the very text parsed), flags laid over it; a file that is invalid ends the program
    (status 2, one line naming it) as at any start."""
    default_path = args.config or os.environ.get(CONFIG_ENV) or None
    chosen = choose_config_file(default_path, label)
    if chosen.problem:
        log.error("node_config_not_found", label=label, reason=chosen.problem)
    try:
        for _ in range(5):   # the digest of the very text read (the kubelet may swap it in between)
            digest = file_digest(chosen.path)
            read = config_from_args(args, section, chosen.path) if chosen.path else config
            if file_digest(chosen.path) == digest:
                return StartedConfig(read, chosen, digest, default_path)
    except ConfigError as err:
        parser.exit(2, f"{parser.prog}: {err}\n")
    parser.exit(2, f"{parser.prog}: {chosen.path} kept changing while it was read\n")


def restart_in_place(log, event: str) -> None:
    """Run this program's own command line again in this process: a node config changed a key that is
    read at start only. The process id, its container and the kubelet's view of it stay the same."""
    log.info(event, reason="node config", argv=sys.orig_argv)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
    except OSError as exc:   # the kubelet restarts the container instead
        log.error("restart_in_place_failed", reason=str(exc), effect="exiting; the kubelet starts it again")
        sys.stderr.flush()
        os._exit(1)


class RestartPacing:
    """What a node daemon's restarts in place share: the minimum run since its start
    (``node_config_restart_after_s``, so a config that flips back and forth cannot restart it in a loop),
    and ``node_config_restart_waiting`` said once per file and reasons (the watch offers the same file again
    at each look)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._said_waiting: tuple | None = None

    def too_soon(self, least_s: float, who: str) -> list[str]:
        """The reason to wait while ``who`` (``plugin``, ``driver``) has run less than ``least_s``; [] after."""
        ran = time.monotonic() - self.started
        return [f"the {who} started {ran:.0f} s ago; it restarts at most once per {least_s:g} s "
                "(node_config_restart_after_s)"] if ran < least_s else []

    def say_waiting_once(self, log, name: str, digest: str, waiting: list[str], **fields) -> None:
        """Log ``node_config_restart_waiting`` (``name``, ``sha256``, ``fields``, ``waiting_for``) unless
        it was said last for this file's ``digest`` with the same reasons."""
        if (digest, tuple(waiting)) != self._said_waiting:
            log.info("node_config_restart_waiting", name=name, sha256=digest, **fields, waiting_for=waiting)
            self._said_waiting = (digest, tuple(waiting))


def changed_keys(old: TesseraConfig, new: TesseraConfig, sections: tuple[str, ...]) -> list[str]:
    """``section.key`` of every setting that differs between two configs, in those sections."""
    out = []
    for section in sections:
        before, after = getattr(old, section), getattr(new, section)
        out += [f"{section}.{f.name}" for f in dataclasses.fields(before)
                if getattr(before, f.name) != getattr(after, f.name)]
    return out


def file_digest(path: str | None) -> str:
    """The first 12 hex digits of the file's SHA-256 (``none`` for no file; ``unreadable: ...`` when it
    cannot be read), which tells one text of a config from another."""
    if path is None:
        return "none"
    try:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()[:12]
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"


class NodeConfigMetrics:
    """``<prefix>_node_config{name, sha256}`` (1 for the config in use) and ``<prefix>_node_config_refused``
    (1 while the chosen file is refused and the daemon keeps the one in use), in a daemon's registry."""

    def __init__(self, registry: CollectorRegistry, prefix: str) -> None:
        self.in_use = Gauge(f"{prefix}_node_config", "The node config in use (1): its name (the label "
                            "tessera.io/node-config's value, or default) and the first 12 hex digits of its "
                            "file's SHA-256", ["name", "sha256"], registry=registry)
        self.refused = Gauge(f"{prefix}_node_config_refused", "1 while the node's chosen config file is refused "
                             "(invalid or unreadable) and the daemon keeps the one in use", registry=registry)

    def state(self, chosen: ChosenConfig, sha256: str, accepted: bool) -> None:
        """After a config is taken (``accepted``) or refused; ``NodeConfigWatch``'s ``on_state``."""
        if accepted:
            self.in_use.clear()
            self.in_use.labels(chosen.name, sha256).set(1)
        self.refused.set(0 if accepted else 1)


Loader = Callable[[str | None], TesseraConfig]
Apply = Callable[[TesseraConfig, ChosenConfig, str], bool]


class NodeConfigWatch(PeriodicWorker):
    """Follows a node's config: the label's choice and the chosen file's text.

    ``load(path)`` reads and validates a file (flags laid over it, as at start; raises ``ConfigError``);
    ``apply(config, chosen, digest)`` gets each new valid config and answers False when the daemon cannot
    take it yet (it is offered again at each look). ``started`` (with ``started_digest``, the digest of the
    text it was read from) is what the daemon started with, so an unchanged file is not applied again.
    :meth:`set_label` comes from the daemon's Node watch.
    """

    def __init__(self, default_path: str | None, started: ChosenConfig, load: Loader, apply: Apply, *,
                 label: str | None = None, interval_s: float = 5.0, logger=None,
                 on_state: Callable[[ChosenConfig, str, bool], None] | None = None,
                 started_digest: str | None = None) -> None:
        super().__init__("node-config-watch", interval_s, "node_config_check_failed", logger)
        self._default_path = default_path
        self._load, self._apply, self._on_state = load, apply, on_state
        self._label = label
        self._lock = threading.Lock()
        self._current = (started.name, started.path, started_digest or file_digest(started.path))
        self._refused: tuple | None = None
        self._offered: tuple | None = None   # the last text said to be new (said once, offered each look)
        self._stopped = False
        self._said_problem: str | None = started.problem

    @property
    def current(self) -> tuple[str, str | None, str]:
        """(name, path, digest) of the config in use."""
        return self._current

    def set_label(self, label: str | None) -> None:
        """The Node's ``tessera.io/node-config`` label as last seen; a change is looked at now."""
        with self._lock:
            if label == self._label:
                return
            self._log.info("node_config_label_changed", old=self._label, new=label)
            self._label = label
        self.check()

    def tick(self) -> None:
        self.check()

    def stop(self) -> None:
        with self._lock:   # a Node event after this applies nothing to a daemon that is stopping
            self._stopped = True
        super().stop()

    def check(self) -> None:
        """Choose, read and, when it is new and valid, apply the node's config. ``apply`` may answer
        False (not now: the daemon cannot take it yet); the same text is offered again at the next look."""
        with self._lock:
            if self._stopped:
                return
            chosen = choose_config_file(self._default_path, self._label)
            if chosen.problem != self._said_problem:
                if chosen.problem:
                    self._log.error("node_config_not_found", label=self._label, reason=chosen.problem)
                self._said_problem = chosen.problem
            digest = file_digest(chosen.path)
            seen = (chosen.name, chosen.path, digest)
            if seen == self._current:
                return
            if digest.startswith("unreadable"):
                self._refuse(seen, chosen, digest, digest)
                return
            try:
                config = self._load(chosen.path)
            except (ConfigError, OSError) as exc:
                self._refuse(seen, chosen, digest, str(exc))
                return
            if seen != self._offered:
                self._log.info("node_config_changed", name=chosen.name, path=chosen.path, sha256=digest,
                               previous=self._current[0], previous_sha256=self._current[2])
                self._offered = seen
            if self._apply(config, chosen, digest) is False:
                return
            self._current, self._refused = seen, None
            if self._on_state:
                self._on_state(chosen, digest, True)

    def _refuse(self, seen: tuple, chosen: ChosenConfig, digest: str, reason: str) -> None:
        if seen != self._refused:
            self._log.error("node_config_refused", name=chosen.name, path=chosen.path, sha256=digest,
                            reason=reason, kept=self._current[0], kept_sha256=self._current[2])
            self._refused = seen
            if self._on_state:
                self._on_state(chosen, digest, False)
