"""The control plane's certificates, made with ``cryptography``: one CA that signs every serving and
client certificate (the API server's, each component's and each node's client identity), and the
service-account signing key pair.

Kubernetes reads a client certificate's common name as the user and its organizations as the groups:
``CN=system:node:<name>, O=system:nodes`` is a kubelet to the Node authorizer, ``O=system:masters`` an admin.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 30


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its key, as files."""

    cert: Path
    key: Path


class CertificateAuthority:
    """A CA in ``folder`` (``ca.crt``, ``ca.key``) that issues certificates into the same folder."""

    def __init__(self, folder: str | Path, name: str = "tessera-realcluster-ca") -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.timezone.utc)
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self._cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                      .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
                      .not_valid_before(now - datetime.timedelta(minutes=5))
                      .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
                      .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                      .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                   content_commitment=False, key_encipherment=False,
                                                   data_encipherment=False, key_agreement=False,
                                                   encipher_only=False, decipher_only=False), critical=True)
                      .sign(self._key, hashes.SHA256()))
        self.cert = self.folder / "ca.crt"
        self.key = self.folder / "ca.key"
        self.cert.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        _write_private(self.key, _pem_key(self._key))

    @property
    def pem(self) -> bytes:
        """The CA certificate, PEM (a webhook's ``caBundle`` once base64-encoded)."""
        return self.cert.read_bytes()

    def issue(self, stem: str, common_name: str, *, organizations: tuple[str, ...] = (), client: bool = True,
              server: bool = False, dns_names: tuple[str, ...] = (), ips: tuple[str, ...] = ()) -> KeyPair:
        """``<stem>.crt`` and ``<stem>.key``: a certificate for ``common_name`` (and ``organizations``,
        the groups Kubernetes reads), for client and/or server use, with the given subject alternative names."""
        now = datetime.datetime.now(datetime.timezone.utc)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
        subject.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        usages = ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else []) + ([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
        builder = (x509.CertificateBuilder().subject_name(x509.Name(subject)).issuer_name(self._cert.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage(usages), critical=False))
        names = [x509.DNSName(n) for n in dns_names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        pair = KeyPair(self.folder / f"{stem}.crt", self.folder / f"{stem}.key")
        pair.cert.write_bytes(builder.sign(self._key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
        _write_private(pair.key, _pem_key(key))
        return pair


def write_service_account_keys(folder: str | Path) -> KeyPair:
    """The key pair kube-apiserver signs service-account tokens with (``sa.key``) and checks them
    against (``sa.pub``); the controller-manager signs with the same key. ``cert`` is the public key."""
    folder = Path(folder)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pair = KeyPair(folder / "sa.pub", folder / "sa.key")
    pair.cert.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo))
    _write_private(pair.key, _pem_key(key))
    return pair
