"""A small CA, the extender's serving certificate (the admission webhook, which API servers call over
HTTPS, and the verb port) and kube-scheduler's client certificate for the verb port.

For the embedded cluster, the tests and a first install (deploy/make-keys.sh); production clusters may
use cert-manager instead and only point the extender and kube-scheduler at the files.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _leaf(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, common_name: str, usage: x509.ObjectIdentifier,
          names: list[x509.GeneralName], days: int) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate for one use (serving, or a client), signed by ``ca``."""
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
               .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def write_webhook_pki(folder: str | Path, dns_names: list[str], ips: list[str] = (), days: int = 365,
                      client_name: str = "") -> str:
    """Write into ``folder`` a fresh CA (``ca.crt``), a serving certificate it signed for ``dns_names``
    and ``ips`` (``tls.crt``, ``tls.key``) and, with ``client_name``, a client certificate of that name
    (``client.crt``, ``client.key``: kube-scheduler's for the verb port, whose ``client_ca_path`` is
    ``ca.crt``).

    Returns the CA certificate as the base64 PEM a webhook configuration's ``caBundle`` takes.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tessera-webhook-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=days))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    (folder / "ca.crt").write_bytes(ca_pem)
    names = [x509.DNSName(n) for n in dns_names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    leaf, key = _leaf(ca, ca_key, (list(dns_names) or ["webhook"])[0], ExtendedKeyUsageOID.SERVER_AUTH, names, days)
    (folder / "tls.crt").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    _write_key(folder / "tls.key", key)
    if client_name:
        client, client_key = _leaf(ca, ca_key, client_name, ExtendedKeyUsageOID.CLIENT_AUTH, [], days)
        (folder / "client.crt").write_bytes(client.public_bytes(serialization.Encoding.PEM))
        _write_key(folder / "client.key", client_key)
    return base64.b64encode(ca_pem).decode()
