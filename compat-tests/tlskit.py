"""Test certificates made with the openssl command line: a certificate authority,
a broker certificate for 127.0.0.1, and client certificates whose subjects are
their principals. Standard library only."""

import pathlib
import subprocess


def _run(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


class Pki:
    def __init__(self, directory: pathlib.Path, name="ca"):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca_key = self.dir / f"{name}.key"
        self.ca = self.dir / f"{name}.pem"
        _run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=Test CA {name}",
             "-keyout", str(self.ca_key), "-out", str(self.ca), cwd=self.dir)

    def issue(self, name, subject, server=False):
        """Issues a certificate; returns (cert path, key path)."""
        key, csr, cert = self.dir / f"{name}.key", self.dir / f"{name}.csr", self.dir / f"{name}.pem"
        _run("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", str(key), "-out", str(csr),
             cwd=self.dir)
        ext = self.dir / f"{name}.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n" if server
                       else "extendedKeyUsage=clientAuth\n")
        _run("x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey", str(self.ca_key), "-CAcreateserial",
             "-days", "2", "-extfile", str(ext), "-out", str(cert), cwd=self.dir)
        return cert, key
