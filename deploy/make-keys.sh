#!/bin/sh
# Make the per-cluster keys deploy/ needs, with Tessera's own code (no hand-written crypto):
#   deploy/keys/extender.key, extender.pub      the extender's Ed25519 pair (simcluster/extenders.py ensure_signing_key)
#   deploy/keys/webhook/tls.crt, tls.key         the extender's serving certificate: the webhook and the verb port
#   deploy/keys/webhook/ca.crt, ca.b64           the CA that signed it and kube-scheduler's (tessera/pki.py)
#   deploy/keys/webhook/client.crt, client.key   kube-scheduler's client certificate for the verb port
# Run it once per cluster from the repository (a Python with Tessera installed: PYTHON=.venv/bin/python),
# or from the image:
#   docker run --rm -u "$(id -u)" -v "$PWD/deploy/keys:/keys" tessera:0.1.0 sh /opt/tessera-deploy/make-keys.sh /keys
# An existing signing key is kept (a new one would void every assignment already written): rotate it
# in three steps instead, applying the keys after each (README, Rotating the signing key; tessera/keyrotation.py):
#   make-keys.sh --rotate [KEYS_DIR]          a new pair: trusted beside the old one (extender.pub), not yet signing
#   make-keys.sh --promote [KEYS_DIR]         the new key signs (extender.key); the old one stays trusted
#   make-keys.sh --drop-previous [KEYS_DIR]   once no live pod holds an old-key assignment: trust the new key only
#   make-keys.sh --show [KEYS_DIR]            the key ids: which signs, which is staged, which are trusted
#   usage: make-keys.sh [KEYS_DIR] [NAMESPACE]     (default: the keys folder beside this script, tessera-system)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}
[ -x "$here/../.venv/bin/python" ] && [ -z "${PYTHON:-}" ] && python="$here/../.venv/bin/python"
case "${1:-}" in
  --rotate|--promote|--drop-previous|--show)
    step=${1#--}
    [ "$step" = rotate ] && step=stage
    exec "$python" -m tessera.keyrotation "$step" "${2:-$here/keys}" ;;
  -*) echo "make-keys.sh: unknown option $1 (--rotate, --promote, --drop-previous, --show)" >&2; exit 2 ;;
esac
keys=${1:-$here/keys}
namespace=${2:-tessera-system}
"$python" - "$keys" "$namespace" <<'PY'
import sys
from pathlib import Path

from simcluster.extenders import ensure_signing_key
from tessera.pki import write_webhook_pki

keys, namespace = Path(sys.argv[1]), sys.argv[2]
private, public = ensure_signing_key(keys)
private.chmod(0o600)
service = f"tessera-extender.{namespace}.svc"
ca = write_webhook_pki(keys / "webhook", [service, f"{service}.cluster.local"], client_name="tessera-scheduler")
(keys / "webhook" / "ca.b64").write_text(ca)  # no newline: it is the caBundle as is
print(f"wrote {private}, {public} and {keys / 'webhook'}/tls.crt, tls.key, ca.crt, ca.b64, client.crt, client.key "
      f"for {service}")
PY
