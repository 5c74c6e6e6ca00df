"""Test certificates, made with GnuTLS's certtool at test time: a CA and a
server certificate for localhost, mx.example.org and 127.0.0.1."""
import os
import subprocess
import tempfile
from pathlib import Path

_made = None


def make():
    """Returns (folder, ca.pem, server.pem, server.key), made once."""
    global _made
    if _made:
        return _made
    d = Path(tempfile.mkdtemp(prefix="pillarbox-certs-"))
    os.chmod(d, 0o755)
    (d / "ca.tmpl").write_text('cn = "pillarbox test CA"\nca\ncert_signing_key\n'
                               'expiration_days = 2\n')
    (d / "srv.tmpl").write_text(
        'cn = "localhost"\ndns_name = "localhost"\ndns_name = "mx.example.org"\n'
        'ip_address = "127.0.0.1"\ntls_www_server\nencryption_key\n'
        'signing_key\nexpiration_days = 2\n')

    def certtool(*args):
        subprocess.run(["certtool", *args], check=True, capture_output=True)

    certtool("--generate-privkey", "--key-type=ecdsa", "--outfile", str(d / "ca.key"))
    certtool("--generate-self-signed", "--load-privkey", str(d / "ca.key"),
             "--template", str(d / "ca.tmpl"), "--outfile", str(d / "ca.pem"))
    certtool("--generate-privkey", "--key-type=ecdsa", "--outfile", str(d / "srv.key"))
    certtool("--generate-certificate", "--load-privkey", str(d / "srv.key"),
             "--load-ca-certificate", str(d / "ca.pem"), "--load-ca-privkey",
             str(d / "ca.key"), "--template", str(d / "srv.tmpl"),
             "--outfile", str(d / "srv.pem"))
    for f in d.iterdir():
        os.chmod(f, 0o644)  # the unprivileged test user reads the key too
    _made = (d, d / "ca.pem", d / "srv.pem", d / "srv.key")
    return _made
