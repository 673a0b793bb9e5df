"""Admission webhooks: the API server calls Mutating/ValidatingWebhookConfigurations as a real one does.

For each create or update of a matching resource it POSTs an ``admission.k8s.io/v1 AdmissionReview``
(``userInfo``: the caller, ``authn.current_user()``; ``oldObject`` on UPDATE) over HTTPS, trusting
only ``clientConfig.caBundle`` (base64 PEM; the system roots when empty), applies a returned
``JSONPatch``, and refuses the request with ``admission webhook "<name>" denied the request:
<message>``. A call that fails (TLS, timeout, bad answer) follows ``failurePolicy``: ``Fail``
answers 500, ``Ignore`` goes on.

``clientConfig.service`` has no cluster DNS here: the server connects to what
``service_resolver(namespace, name, port)`` returns (default ``("127.0.0.1", port)``) and verifies
the certificate for ``<name>.<namespace>.svc``, the name a real API server checks.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import uuid
from typing import Any, Callable
from urllib.parse import urlsplit

import jsonpatch

from tessera.log import get_logger

from .authn import current_user
from .errors import ApiError, internal
from .resources import MUTATING_WEBHOOKS, NAMESPACES, VALIDATING_WEBHOOKS, ResourceInfo
from .selectors import from_label_selector_object

log = get_logger("apiserver")

ServiceResolver = Callable[[str, str, int], tuple[str, int]]


def default_service_resolver(namespace: str, name: str, port: int) -> tuple[str, int]:
    """Services run on this machine: connect to 127.0.0.1 at the service port."""
    return ("127.0.0.1", port)


class WebhookCallError(Exception):
    """The webhook could not be called or answered nonsense (subject to failurePolicy)."""


class Admission:
    """Runs the webhooks configured in the store against one request."""

    def __init__(self, store: Any, service_resolver: ServiceResolver | None = None) -> None:
        self._store = store
        self._resolve = service_resolver or default_service_resolver

    # -------------------------------------------------------------- public

    def mutate(self, info: ResourceInfo, subresource: str, operation: str, obj: dict[str, Any],
               old: dict[str, Any] | None, dry_run: bool) -> dict[str, Any]:
        """Run matching mutating webhooks in order; returns the (possibly patched) object."""
        for hook in self._matching(MUTATING_WEBHOOKS, info, subresource, operation, obj, old):
            obj = self._call(hook, info, subresource, operation, obj, old, dry_run, mutating=True)
        return obj

    def validate(self, info: ResourceInfo, subresource: str, operation: str, obj: dict[str, Any],
                 old: dict[str, Any] | None, dry_run: bool) -> None:
        """Run matching validating webhooks; raises the first denial."""
        for hook in self._matching(VALIDATING_WEBHOOKS, info, subresource, operation, obj, old):
            self._call(hook, info, subresource, operation, obj, old, dry_run, mutating=False)

    # -------------------------------------------------------------- matching

    def _matching(self, kind: ResourceInfo, info: ResourceInfo, subresource: str, operation: str,
                  obj: dict[str, Any], old: dict[str, Any] | None) -> list[dict[str, Any]]:
        if info.group == "admissionregistration.k8s.io":
            return []  # the real server never sends its own webhook configurations to webhooks
        configs, _ = self._store.list(kind)
        out = []
        for _, entry in configs:
            for hook in entry.obj.get("webhooks") or []:
                if self._rule_matches(hook, info, subresource, operation) and self._selectors_match(hook, info, obj, old):
                    out.append(hook)
        return out

    @staticmethod
    def _rule_matches(hook: dict[str, Any], info: ResourceInfo, subresource: str, operation: str) -> bool:
        resource = f"{info.name}/{subresource}" if subresource else info.name
        for rule in hook.get("rules") or []:
            ops = rule.get("operations") or []
            if operation not in ops and "*" not in ops:
                continue
            if info.group not in (rule.get("apiGroups") or []) and "*" not in (rule.get("apiGroups") or []):
                continue
            if info.version not in (rule.get("apiVersions") or []) and "*" not in (rule.get("apiVersions") or []):
                continue
            scope = rule.get("scope", "*")
            if scope == "Namespaced" and not info.namespaced or scope == "Cluster" and info.namespaced:
                continue
            for want in rule.get("resources") or []:
                if want == resource or want == "*/*":
                    return True
                if want == "*" and not subresource:
                    return True
                if want == f"{info.name}/*" and subresource or want == f"*/{subresource}" and subresource:
                    return True
        return False

    def _selectors_match(self, hook: dict[str, Any], info: ResourceInfo, obj: dict[str, Any],
                         old: dict[str, Any] | None) -> bool:
        ns_sel = from_label_selector_object(hook.get("namespaceSelector"))
        if not ns_sel.empty():
            if info.name == "namespaces":
                labels = obj.get("metadata", {}).get("labels")
            elif info.namespaced:
                ns_entry = self._store.get(NAMESPACES, "", obj.get("metadata", {}).get("namespace", ""))
                labels = ns_entry.obj["metadata"].get("labels") if ns_entry else {}
            else:
                labels = None
            if labels is not None and not ns_sel.matches(labels):
                return False
        obj_sel = from_label_selector_object(hook.get("objectSelector"))
        if not obj_sel.empty():
            new_ok = obj_sel.matches(obj.get("metadata", {}).get("labels"))
            old_ok = old is not None and obj_sel.matches(old.get("metadata", {}).get("labels"))
            if not (new_ok or old_ok):
                return False
        return True

    # -------------------------------------------------------------- calling

    def _review(self, info: ResourceInfo, subresource: str, operation: str, obj: dict[str, Any],
                old: dict[str, Any] | None, dry_run: bool) -> dict[str, Any]:
        gvk = {"group": info.group, "version": info.version, "kind": info.kind}
        gvr = {"group": info.group, "version": info.version, "resource": info.name}
        meta = obj.get("metadata") or {}
        request: dict[str, Any] = {
            "uid": str(uuid.uuid4()),
            "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "name": meta.get("name", ""),
            "operation": operation,
            "userInfo": current_user().to_dict(),
            "object": obj,
            "oldObject": old,
            "dryRun": dry_run,
            "options": {"kind": "CreateOptions" if operation == "CREATE" else "UpdateOptions",
                        "apiVersion": "meta.k8s.io/v1"},
        }
        if subresource:
            request["subResource"] = subresource
            request["requestSubResource"] = subresource
        if info.namespaced:
            request["namespace"] = meta.get("namespace", "")
        return {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": request}

    def _endpoint(self, hook: dict[str, Any]) -> tuple[str, int, str, str, str]:
        """(connect host, port, TLS server name, request path, URL for messages)."""
        cc = hook.get("clientConfig") or {}
        timeout = int(hook.get("timeoutSeconds") or 10)
        if cc.get("url"):
            parts = urlsplit(cc["url"])
            host, port = parts.hostname or "", parts.port or 443
            path = (parts.path or "/") + (f"?{parts.query}&" if parts.query else "?") + f"timeout={timeout}s"
            return host, port, host, path, f"{parts.scheme}://{parts.netloc}{path}"
        svc = cc.get("service") or {}
        name, ns, port = svc.get("name", ""), svc.get("namespace", ""), int(svc.get("port") or 443)
        server_name = f"{name}.{ns}.svc"
        path = (svc.get("path") or "/") + f"?timeout={timeout}s"
        host, real_port = self._resolve(ns, name, port)
        return host, real_port, server_name, path, f"https://{server_name}:{port}{path}"

    def _post(self, hook: dict[str, Any], body: bytes) -> dict[str, Any]:
        host, port, server_name, path, url = self._endpoint(hook)
        timeout = float(hook.get("timeoutSeconds") or 10)
        ca = (hook.get("clientConfig") or {}).get("caBundle")
        try:
            ctx = ssl.create_default_context(cadata=base64.b64decode(ca).decode()) if ca else ssl.create_default_context()
            raw = socket.create_connection((host, port), timeout=timeout)
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
            conn.sock = ctx.wrap_socket(raw, server_hostname=server_name)
            try:
                conn.request("POST", path, body, {"Content-Type": "application/json", "Accept": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
            finally:
                conn.close()
        except (OSError, ssl.SSLError, ValueError, http.client.HTTPException) as exc:
            raise WebhookCallError(f'failed to call webhook: Post "{url}": {exc}') from None
        if resp.status != 200:
            raise WebhookCallError(f"received invalid webhook response: HTTP {resp.status}")
        try:
            review = json.loads(data)
        except ValueError as exc:
            raise WebhookCallError(f"received invalid webhook response: {exc}") from None
        if not isinstance(review, dict) or not isinstance(review.get("response"), dict):
            raise WebhookCallError("received invalid webhook response: response is missing")
        return review["response"]

    def _call(self, hook: dict[str, Any], info: ResourceInfo, subresource: str, operation: str,
              obj: dict[str, Any], old: dict[str, Any] | None, dry_run: bool, mutating: bool) -> dict[str, Any]:
        name = hook.get("name", "")
        review = self._review(info, subresource, operation, obj, old, dry_run)
        uid = review["request"]["uid"]
        try:
            response = self._post(hook, json.dumps(review).encode())
            if response.get("uid") != uid:
                raise WebhookCallError(f"expected response.uid={uid!r}, got {response.get('uid')!r}")
        except WebhookCallError as exc:
            if hook.get("failurePolicy", "Fail") == "Ignore":
                log.warning("webhook_call_ignored", webhook=name, error=str(exc))
                return obj
            log.warning("webhook_call_failed", webhook=name, error=str(exc))
            message = f'failed calling webhook "{name}": {exc}'
            raise internal(message, [{"message": message}]) from None
        if not response.get("allowed"):
            log.info("webhook_denied", webhook=name, operation=operation, resource=info.name)
            raise denial(name, response.get("status"))
        if not mutating or not response.get("patch"):
            return obj
        if response.get("patchType") != "JSONPatch":
            raise internal(f'webhook "{name}" returned an unsupported patchType {response.get("patchType")!r}')
        try:
            ops = json.loads(base64.b64decode(response["patch"]))
            patched = jsonpatch.JsonPatch(ops).apply(obj)
        except Exception as exc:  # noqa: BLE001 - a broken patch from a webhook is the webhook's fault
            raise internal(f'admission webhook "{name}" returned a patch that could not be applied: {exc}') from None
        log.info("webhook_mutated", webhook=name, operations=len(ops))
        return patched


def denial(webhook: str, status: dict[str, Any] | None) -> ApiError:
    """The error a real API server builds from a webhook's refusal (webhookerrors.ToStatusErr)."""
    status = status if isinstance(status, dict) else {}
    code = int(status.get("code") or 0)
    if code < 400:
        code = 400
    denied_by = f'admission webhook "{webhook}" denied the request'
    if status.get("message"):
        message = f"{denied_by}: {status['message']}"
    elif status.get("reason"):
        message = f"{denied_by}: {status['reason']}"
    else:
        message = f"{denied_by} without explanation"
    return ApiError(code, status.get("reason") or "", message, status.get("details"))
