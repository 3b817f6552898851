"""The credentials of a served plant, generated at first use into one owner-only folder.

Why generated: secure by default must not cost the user a setup step. ``make run`` and
``modulecontrol sim serve`` serve OPC UA with Basic256Sha256 SignAndEncrypt and a password
per user without anyone creating certificates or choosing passwords; the client side of the
same run (the drivers of ``run --simulate``, or any program given the ``sim serve --json``
fields) reads them from the same folder.

What is kept (default folder ``runs/pki``, never committed: ``runs/`` is ignored by git):

* ``sim-<TAG>.der`` / ``.pem``: each simulated PEA's certificate and private key;
* ``client.der`` / ``.pem``: the certificate and key the drivers present;
* ``sim-<TAG>-<user>.password``: a random password per user of a PEA whose endpoint names
  no ``password_env`` (an environment variable always wins).

The folder is created 0700 and every file in it 0600, whatever the umask. Files are reused
while valid (a certificate is renewed a day before it expires, or when its key is missing),
so a client that pinned a server certificate keeps trusting it across restarts. Creation is
serialised by a lock file, so two processes starting at once never pair one certificate
with the other's key.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)

from modulecontrol.drivers.opcua import san_uris
from modulecontrol.simulators.opcua_pea import make_certificate

__all__ = ["Credentials"]

_RENEW_BEFORE = _dt.timedelta(days=1)


class Credentials:
    """Certificates, keys and passwords of served modules in ``folder`` (see module doc)."""

    DEFAULT_FOLDER = Path("runs/pki")
    """Where the credentials are kept unless a folder is given (``--pki``)."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = self.DEFAULT_FOLDER if folder is None else Path(folder)

    # -- files ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.name == "posix":
            os.chmod(self.folder, 0o700)  # owner only: it holds private keys and passwords
        import fcntl

        fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _usable(self, cert_path: Path, key_path: Path, uri: str) -> bool:
        """Is the pair on disk valid for a while yet, for ``uri``, owner-only and matching?"""
        try:
            cert = x509.load_der_x509_certificate(cert_path.read_bytes())
            if stat.S_IMODE(key_path.stat().st_mode) & 0o077:
                return False
            key = load_pem_private_key(key_path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError):
            return False
        expires = cert.not_valid_after_utc
        if expires - _dt.datetime.now(_dt.UTC) < _RENEW_BEFORE:
            return False
        if uri not in san_uris(cert):
            return False
        spki = PublicFormat.SubjectPublicKeyInfo
        return bool(key.public_key().public_bytes(Encoding.DER, spki)
                    == cert.public_key().public_bytes(Encoding.DER, spki))

    def certificate(self, name: str, uri: str, *, server: bool) -> tuple[Path, Path]:
        """Certificate (DER) and key (PEM) ``name`` for application ``uri``, made if needed.

        Why one home for every certificate modulecontrol generates: the pair is reused
        while valid (a peer that trusts it keeps trusting it) and created under the folder's
        lock, so concurrent checks or servers sharing a folder never present one
        certificate signed with another's key.
        """
        cert, key = self.folder / f"{name}.der", self.folder / f"{name}.pem"
        with self._locked():
            if not self._usable(cert, key, uri):
                cert, key = make_certificate(self.folder, name, uri, server=server)
        return cert, key

    # -- what servers and clients ask for ---------------------------------------------------
    def server_certificate(self, tag: str) -> tuple[Path, Path]:
        """Certificate (DER) and private key (PEM) of the simulated PEA ``tag``."""
        return self.certificate(f"sim-{tag}", f"urn:modulecontrol:sim:{tag}", server=True)

    def client_certificate(self) -> tuple[Path, Path]:
        """Certificate (DER) and private key (PEM) the drivers of a simulated run present."""
        return self.certificate("client", "urn:modulecontrol:client", server=False)

    def password_file(self, tag: str, user: str) -> Path:
        """The file holding ``user``'s password on PEA ``tag``, generated at first use.

        A file group or others can read is refused rather than used: its password is no
        longer a secret (delete the file to have a new one generated).
        """
        path = self.folder / f"sim-{tag}-{user}.password"
        with self._locked():
            if not path.exists():
                tmp = path.with_name(path.name + ".tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    os.fchmod(fd, 0o600)
                    f.write(secrets.token_urlsafe(24) + "\n")
                os.replace(tmp, path)
        if os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o077:
            raise PermissionError(
                f"{path} is readable by group or others; delete it (a new password is "
                f"generated at the next start) or make it owner-only: chmod 600 {path}")
        return path

    def password(self, tag: str, user: str) -> str:
        """``user``'s password on PEA ``tag`` (generated at first use)."""
        return self.password_file(tag, user).read_text(encoding="utf-8").strip("\r\n")
