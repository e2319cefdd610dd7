"""Certificates for the TLS tests, made by the tests themselves with the `cryptography` package.

Everything is X.509 v3 with the extensions real deployments carry (basic constraints, key usage,
extended key usage, key identifiers), because rustls refuses v1 certificates. Keys are ECDSA
P-256: quick to make, and what a modern deployment uses.

`Pki.create(directory)` writes one set of files:

| file                          | what it is                                                       |
|-------------------------------|------------------------------------------------------------------|
| ca.pem / ca.key               | the test CA: signs the server certificate and the client ones    |
| server.pem / server.key       | CN=localhost, SAN localhost, 127.0.0.1, ::1                      |
| other-key.key                 | a key that does not fit server.pem                               |
| client.pem / client.key       | CN=device-1, signed by the CA                                    |
| revoked.pem / revoked.key     | CN=device-revoked, signed by the CA (the CRL test revokes it)    |
| expired.pem / expired.key     | CN=device-expired, valid from 10 days ago to 1 day ago           |
| slash.pem / slash.key         | CN=a/b                                                           |
| wildcard.pem / wildcard.key   | CN=*.example.com                                                 |
| stranger.pem / stranger.key   | CN=device-1, signed by another CA (other-ca.pem)                 |
| ca2.pem, server2.pem/.key     | a second CA and a server certificate it signed (reload test)     |
| empty.crl                     | the CA's revocation list naming nobody                           |
| revoking.crl                  | the CA's revocation list naming revoked.pem                      |
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime.datetime.now(datetime.timezone.utc)


@dataclasses.dataclass
class Issuer:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ironsight tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str) -> Issuer:
    key = new_key()
    cert = (x509.CertificateBuilder()
            .subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return Issuer(cert, key)


def issue(ca: Issuer, cn: str, server: bool = False, days_from: int = -1,
          days_to: int = 30) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A leaf certificate for `cn` signed by `ca`, valid from `days_from` to `days_to` days from
    now. A server certificate names localhost, 127.0.0.1 and ::1."""
    key = new_key()
    builder = (x509.CertificateBuilder()
               .subject_name(_name(cn)).issuer_name(ca.cert.subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(NOW + datetime.timedelta(days=days_from))
               .not_valid_after(NOW + datetime.timedelta(days=days_to))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False,
                                            crl_sign=False, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                     else ExtendedKeyUsageOID.CLIENT_AUTH]),
                              critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca.key.public_key()), critical=False))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1"))]), critical=False)
    return builder.sign(ca.key, hashes.SHA256()), key


def crl(ca: Issuer, revoked: list[x509.Certificate], number: int) -> bytes:
    """A PEM revocation list of `ca` naming `revoked`, valid for a day."""
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca.cert.subject)
               .last_update(NOW - datetime.timedelta(minutes=5))
               .next_update(NOW + datetime.timedelta(days=1))
               .add_extension(x509.CRLNumber(number), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca.key.public_key()), critical=False))
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(NOW - datetime.timedelta(minutes=1))
            .build())
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@dataclasses.dataclass
class Pki:
    """The paths of one set of test certificates (see the module's table)."""
    dir: Path

    def path(self, name: str) -> str:
        return str(self.dir / name)

    def pair(self, name: str) -> tuple[str, str]:
        """(certificate, key) paths of a leaf: pair("client") -> client.pem, client.key."""
        return self.path(f"{name}.pem"), self.path(f"{name}.key")

    @classmethod
    def create(cls, directory: Path) -> "Pki":
        directory.mkdir(parents=True, exist_ok=True)
        ca, other_ca, ca2 = make_ca("ironsight test CA"), make_ca("another CA"), \
            make_ca("ironsight test CA 2")
        write_cert(ca.cert, directory / "ca.pem")
        write_key(ca.key, directory / "ca.key")
        write_cert(other_ca.cert, directory / "other-ca.pem")
        write_cert(ca2.cert, directory / "ca2.pem")
        leaves = {
            "server": (ca, "localhost", True, -1, 30),
            "server2": (ca2, "localhost", True, -1, 30),
            "client": (ca, "device-1", False, -1, 30),
            "revoked": (ca, "device-revoked", False, -1, 30),
            "expired": (ca, "device-expired", False, -10, -1),
            "slash": (ca, "a/b", False, -1, 30),
            "wildcard": (ca, "*.example.com", False, -1, 30),
            "stranger": (other_ca, "device-1", False, -1, 30),
        }
        made = {}
        for name, (issuer, cn, server, start, end) in leaves.items():
            cert, key = issue(issuer, cn, server, start, end)
            write_cert(cert, directory / f"{name}.pem")
            write_key(key, directory / f"{name}.key")
            made[name] = cert
        write_key(new_key(), directory / "other-key.key")
        (directory / "empty.crl").write_bytes(crl(ca, [], 1))
        (directory / "revoking.crl").write_bytes(crl(ca, [made["revoked"]], 2))
        return cls(directory)
