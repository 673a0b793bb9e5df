"""The HTTP face: one ``BaseHTTPRequestHandler`` turning REST requests into registry calls.

Every failure, expected or not, leaves as a ``Status`` object; no request can kill the thread
that serves it, nor the server.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import yaml

from tessera.log import get_logger

from . import discovery, errors, openapi, protobuf_bodies
from .authn import acting_as
from .errors import ApiError, success_status
from .patch import APPLY_PATCH, PATCH_TYPES
from .podlogs import serve_pod_log
from .resources import ResourceInfo
from .routing import Route, route
from .streaming import ChunkWriter, stream_watch
from .tables import table, wants_table
from .watch import dumps

log = get_logger("apiserver")

MAX_BODY = 3 * 1024 * 1024


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "t", "yes")


class ApiHandler(BaseHTTPRequestHandler):
    """Serves one connection (HTTP/1.1 keep-alive) of the API server."""

    protocol_version = "HTTP/1.1"
    server_version = "tessera-simcluster"
    disable_nagle_algorithm = True

    # ------------------------------------------------------------ plumbing

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Requests are not logged line by line (structlog events name what mattered)."""

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_OPTIONS(self) -> None:  # noqa: N802
        self._dispatch("OPTIONS")

    def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        head = (
            f"HTTP/1.1 {code} {self.responses.get(code, ('',))[0]}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            f"Cache-Control: no-cache, private\r\nDate: {self.date_time_string()}\r\n"
        )
        if self.close_connection:
            head += "Connection: close\r\n"
        self.wfile.write(head.encode() + b"\r\n" + body)

    def _send_json(self, code: int, obj: Any) -> None:
        self._send(code, dumps(obj))

    def _dispatch(self, method: str) -> None:
        self._body_read = False
        try:
            parts = urlsplit(self.path)
            self.query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            recorder = self.server.recorder()
            if recorder is not None:
                recorder(method, parts.path, self.query, self.headers.get("Authorization") or "")
            with acting_as(self.server.authenticator.authenticate(self.headers.get("Authorization") or "")):
                self._handle(method, route(parts.path))
        except ApiError as exc:
            self._fail(exc)
        except OSError:  # the client went away mid-response
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - nothing may kill the serving thread
            log.exception("request_failed", method=method, path=self.path)
            self._fail(errors.internal(f"{type(exc).__name__}: {exc}"))
        finally:
            if not self._body_read:
                self._discard_body()

    def _fail(self, exc: ApiError) -> None:
        try:
            self._send_json(exc.code, exc.status())
        except OSError:
            self.close_connection = True

    def _discard_body(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if 0 < length <= MAX_BODY:
            self.rfile.read(length)
        elif length > MAX_BODY or self.headers.get("Transfer-Encoding"):
            self.close_connection = True

    def _read_body(self) -> bytes:
        self._body_read = True
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
                if len(data) > MAX_BODY:
                    self.close_connection = True
                    raise errors.too_large()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise errors.bad_request("invalid Content-Length") from None
        if length > MAX_BODY:
            # Drain a moderately large body so the client reads our 413 instead of a broken pipe.
            remaining = length if length <= 16 * MAX_BODY else 0
            while remaining > 0:
                got = self.rfile.read(min(remaining, 1 << 16))
                if not got:
                    break
                remaining -= len(got)
            self.close_connection = True
            raise errors.too_large()
        return self.rfile.read(length) if length > 0 else b""

    def _content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def _parse(self, info: ResourceInfo | None, allow_empty: bool = False) -> Any:
        raw = self._read_body()
        ctype = self._content_type()
        if not raw.strip():
            if allow_empty:
                return None
            raise errors.bad_request("the body of the request is empty")
        if ctype == protobuf_bodies.PROTOBUF:
            return protobuf_bodies.decode(raw, info.kind if info else "object")
        try:
            if ctype in ("application/yaml", "text/yaml", "application/apply-patch+yaml"):
                return yaml.safe_load(raw)
            return orjson.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            kind = info.kind if info else "object"
            version = info.version if info else "v1"
            raise errors.bad_request(
                f'{kind} in version "{version}" cannot be handled as a {kind}: {exc}'
            ) from None

    def _dry_run(self) -> bool:
        value = self.query.get("dryRun")
        if value in (None, ""):
            return False
        if value != "All":
            raise errors.bad_request(f"Invalid dry run value: {value}; valid values are All")
        return True

    # ------------------------------------------------------------ routing

    def _handle(self, method: str, r: Route) -> None:
        if r.kind == "object" or r.kind == "bindings":
            return self._resource(method, r)
        if method != "GET":
            raise errors.method_not_allowed()
        if r.kind == "version":
            return self._send_json(200, discovery.version_info())
        if r.kind == "openapi":
            return self._send(200, *openapi.answer(r.name or "", self.headers.get("Accept")))
        if r.kind == "health":
            return self._send(200, b"ok", "text/plain; charset=utf-8")
        if r.kind == "root":
            return self._send_json(200, {"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v2",
                                                   "/openapi/v3", "/readyz", "/version"]})
        if r.kind == "api":
            return self._send_json(200, discovery.api_versions(self.server.address_text))
        if r.kind == "apis":
            return self._send_json(200, discovery.api_group_list())
        if r.kind == "group":
            doc = discovery.api_group(r.group)
        elif r.kind == "resources":
            doc = discovery.api_resource_list(r.group, r.version)
        else:
            doc = None
        if doc is None:
            raise errors.path_not_found()
        self._send_json(200, doc)

    def _resource(self, method: str, r: Route) -> None:
        reg, info = self.server.registry, r.info
        assert info is not None
        ns = r.namespace or ""
        if r.kind == "bindings":
            if method != "POST":
                raise errors.method_not_allowed()
            body = self._parse(info)
            name = ((body or {}).get("metadata") or {}).get("name", "") if isinstance(body, dict) else ""
            reg.bind(ns, name, body)
            return self._send_json(201, success_status(201))
        if r.legacy_watch or (method == "GET" and r.name is None and _truthy(self.query.get("watch"))):
            if method != "GET":
                raise errors.method_not_allowed()
            return self._watch(r)
        if method == "GET":
            if r.subresource == "log":
                return serve_pod_log(self, self.server.store, ns, r.name or "", self.query)
            if r.name is None:
                return self._list(r)
            entry = self.server.store.require(info, ns, r.name)
            return self._respond_object(200, info, entry)
        if method == "POST":
            if r.subresource == "binding":
                reg.bind(ns, r.name or "", self._parse(info))
                return self._send_json(201, success_status(201))
            if r.subresource == "eviction":
                reg.evict(ns, r.name or "", self._parse(info))
                return self._send_json(201, success_status(201))
            if r.name is not None or (info.namespaced and r.namespace is None):
                raise errors.method_not_allowed()
            self._require_content_type(info)
            entry = reg.create_entry(info, ns, self._parse(info), self._dry_run())
            return self._respond_object(201, info, entry)
        if method == "PUT":
            if r.name is None or r.subresource not in ("", "status"):
                raise errors.method_not_allowed()
            self._require_content_type(info)
            entry = reg.update_entry(info, ns, r.name, self._parse(info), r.subresource, self._dry_run())
            return self._respond_object(200, info, entry)
        if method == "PATCH":
            if r.name is None or r.subresource not in ("", "status"):
                raise errors.method_not_allowed()
            ctype = self._content_type()
            if ctype not in PATCH_TYPES or ctype == APPLY_PATCH:
                raise errors.unsupported_media_type(ctype, [t for t in PATCH_TYPES if t != APPLY_PATCH])
            body = self._parse(info)
            entry = reg.patch_entry(info, ns, r.name, body, ctype, r.subresource, self._dry_run())
            return self._respond_object(200, info, entry)
        if method == "DELETE":
            if r.subresource:
                raise errors.method_not_allowed()
            opts = self._parse(info, allow_empty=True) or {}
            if not isinstance(opts, dict):
                raise errors.bad_request("DeleteOptions must be an object")
            grace = self.query.get("gracePeriodSeconds", opts.get("gracePeriodSeconds"))
            try:
                grace = None if grace in (None, "") else int(grace)
            except (TypeError, ValueError):
                raise errors.bad_request(f"invalid gracePeriodSeconds: {grace!r}") from None
            dry = self._dry_run() or opts.get("dryRun") == ["All"]
            if r.name is None:
                return self._delete_collection(r, grace, dry)
            entry = reg.delete_entry(info, ns, r.name, grace, opts.get("preconditions"), dry)
            return self._respond_object(200, info, entry)
        raise errors.method_not_allowed()

    def _require_content_type(self, info: ResourceInfo) -> None:
        ctype = self._content_type()
        accepted = protobuf_bodies.accepted_media_types(info.kind)
        if ctype and ctype not in (*accepted, "text/yaml", "*/*"):
            self._read_body()
            raise errors.unsupported_media_type(ctype, accepted)

    # ------------------------------------------------------------ responses

    def _respond_object(self, code: int, info: ResourceInfo, entry: Any) -> None:
        version = wants_table(self.headers.get("Accept"))
        if version:
            meta = {"resourceVersion": entry.obj["metadata"].get("resourceVersion", "")}
            return self._send_json(code, table(info, [entry.obj], meta, version, self.query.get("includeObject") or "PartialObjectMetadata"))
        self._send(code, entry.raw)

    def _list(self, r: Route) -> None:
        info = r.info
        assert info is not None
        after = None
        token = self.query.get("continue")
        if token:
            after = _decode_continue(token)
        limit_text = self.query.get("limit") or "0"
        try:
            limit = int(limit_text)
        except ValueError:
            raise errors.bad_request(f"invalid limit: {limit_text!r}") from None
        entries, rv = self.server.registry.select(
            info, r.namespace, self.query.get("labelSelector"), self.query.get("fieldSelector"), after)
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if limit > 0 and len(entries) > limit:
            last = entries[limit - 1].obj["metadata"]
            meta["continue"] = _encode_continue(rv, (last.get("namespace", "") if info.namespaced else "", last["name"]))
            meta["remainingItemCount"] = len(entries) - limit
            entries = entries[:limit]
        version = wants_table(self.headers.get("Accept"))
        if version:
            return self._send_json(200, table(info, [e.obj for e in entries], meta, version,
                                              self.query.get("includeObject") or "PartialObjectMetadata"))
        body = b"".join((
            b'{"kind":"', info.list_kind.encode(), b'","apiVersion":"', info.api_version.encode(),
            b'","metadata":', dumps(meta), b',"items":[', b",".join(e.raw for e in entries), b"]}",
        ))
        self._send(200, body)

    def _delete_collection(self, r: Route, grace: int | None, dry: bool) -> None:
        info = r.info
        assert info is not None
        if info.namespaced and r.namespace is None:
            raise errors.method_not_allowed()
        entries, rv = self.server.registry.select(info, r.namespace, self.query.get("labelSelector"),
                                                  self.query.get("fieldSelector"))
        out = []
        for e in entries:
            meta = e.obj["metadata"]
            try:
                out.append(self.server.registry.delete_entry(info, meta.get("namespace", ""), meta["name"], grace, None, dry).raw)
            except ApiError:
                continue
        body = b"".join((b'{"kind":"', info.list_kind.encode(), b'","apiVersion":"', info.api_version.encode(),
                         b'","metadata":{"resourceVersion":"', str(rv).encode(), b'"},"items":[', b",".join(out), b"]}"))
        self._send(200, body)

    def _watch(self, r: Route) -> None:
        info = r.info
        assert info is not None
        rv_text = self.query.get("resourceVersion") or ""
        send_initial = _truthy(self.query.get("sendInitialEvents"))
        try:
            since = None if rv_text in ("", "0") or send_initial else int(rv_text)
        except ValueError:
            raise errors.bad_request(f"invalid resource version: {rv_text}") from None
        try:
            timeout = float(self.query.get("timeoutSeconds") or 1800)
        except ValueError:
            raise errors.bad_request("invalid timeoutSeconds") from None
        server = self.server
        as_table = wants_table(self.headers.get("Accept")) is not None
        try:
            watcher = server.registry.watch(info, r.namespace, self.query.get("labelSelector"),
                                            self.query.get("fieldSelector"), since)
        except ApiError as exc:
            if exc.code != 410:
                raise
            # The real server answers 200 and one ERROR event carrying the 410 Status.
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            writer = ChunkWriter(self.wfile)
            writer.chunk(b'{"type":"ERROR","object":' + dumps(exc.status()) + b"}\n")
            writer.end()
            return
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            b"Cache-Control: no-cache, private\r\n\r\n"
        )
        log.debug("watch_opened", resource=info.name, namespace=r.namespace, since=since)
        started = time.monotonic()
        sent = stream_watch(
            ChunkWriter(self.wfile), self.connection, server.store, info, watcher, timeout,
            _truthy(self.query.get("allowWatchBookmarks")), server.bookmark_interval,
            server.is_stopping, as_table, initial_events_end=send_initial,
        )
        log.debug("watch_closed", resource=info.name, events=sent, seconds=round(time.monotonic() - started, 3))


def _encode_continue(rv: int, key: tuple[str, str]) -> str:
    start = f"{key[0]}/{key[1]}" if key[0] else key[1]
    doc = {"v": "meta.k8s.io/v1", "rv": rv, "start": start + "\x00", "key": list(key)}
    return base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode()


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        doc = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        key = doc["key"]
        if doc.get("v") != "meta.k8s.io/v1" or not isinstance(key, list) or len(key) != 2:
            raise ValueError("bad continue token")
        return (str(key[0]), str(key[1]))
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise errors.bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)") from None
