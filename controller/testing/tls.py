"""Certificates for test servers on loopback (a CA, then certificates it signs), made by openssl."""

from __future__ import annotations

from pathlib import Path

from controller.testing.processes import run_checked


def make_ca(directory: Path) -> Path:
    """A CA in ``directory`` (ca.pem, ca.key); returns ca.pem."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    run_checked(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-subj", "/CN=shardring test CA", "-keyout", str(ca_key), "-out", str(ca)],
                "openssl (CA)")
    return ca


def issue(directory: Path, name: str, common_name: str = "127.0.0.1",
          extra_names: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """A certificate for loopback (server and client use) signed by the CA in ``directory``;
    returns (<name>.pem, <name>.key). An empty ``common_name`` leaves the subject without one."""
    key, csr, cert = (directory / f"{name}{suffix}" for suffix in (".key", ".csr", ".pem"))
    ext = directory / f"{name}.cnf"
    names = ", ".join(["IP:127.0.0.1", "DNS:localhost", *(f"DNS:{n}" for n in extra_names)])
    ext.write_text(f"subjectAltName = {names}\nbasicConstraints = CA:FALSE\n"
                   "extendedKeyUsage = serverAuth, clientAuth\n")
    subject = f"/CN={common_name}" if common_name else "/O=shardring"
    run_checked(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
                 "-keyout", str(key), "-out", str(csr)], f"openssl ({name} key)")
    run_checked(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(directory / "ca.pem"),
                 "-CAkey", str(directory / "ca.key"), "-CAcreateserial", "-days", "2",
                 "-extfile", str(ext), "-out", str(cert)], f"openssl ({name} certificate)")
    return cert, key
