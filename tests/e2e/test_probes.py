"""Outside probes, run as an attacker would run them: nmap's
smtp-open-relay script against smtpd, and testssl.sh (and Python's ssl)
against the four TLS ports: smtpd's STARTTLS, smtpd --tls, pop3d's STLS
and pop3d --tls. Their verdicts are parsed, not trusted blindly: the relay
probe must have run its tests and been refused (and find the relay a
trusted network is given), and testssl's JSON findings must hold no weak
protocol, cipher, renegotiation or compression."""
import contextlib
import json
import poplib
import shutil
import smtplib
import ssl
import subprocess
import warnings

import pytest

import tls_certs


def tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: scripts/deps installs it")
    return path


@pytest.fixture
def relay_probe(inst):
    # The probe runs from 127.0.0.1, which the default relay_networks
    # (127.0.0.0/8) trusts: with it the test would only show that we
    # relay for our own networks. Here the networks are elsewhere, so
    # nmap is the untrusted outsider it pretends to be.
    inst.configure(smtpd={"relay_networks": "10.0.0.0/8"},
                   main={"delivery": "queue"})
    inst.add_user("alice@example.org", "wonderland")
    return inst


def nmap_relay(port, *args):
    proc = subprocess.run(
        [tool("nmap"), "-n", "-Pn", "-sT", "-p", str(port), "-d",
         "--script", "+smtp-open-relay",  # +: whatever the port's number
         "--script-args", "smtp-open-relay.domain=relay.test", *args,
         "127.0.0.1"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_nmap_smtp_open_relay(relay_probe):
    inst = relay_probe
    inst.start_smtpd()
    out = nmap_relay(inst.smtp_port)
    assert "smtp-open-relay: Server doesn't seem to be an open relay, " \
        "all tests failed" in out, out
    assert "open relay (" not in out
    # nmap never sends DATA, but nothing may wait in the queue either
    assert not inst.queued()


def test_nmap_submission_needs_auth(relay_probe):
    inst = relay_probe
    inst.start_smtpd("--submission")
    out = nmap_relay(inst.smtp_port)
    assert "Server isn't an open relay, authentication needed" in out, out
    assert not inst.queued()


def test_nmap_detects_a_relay(relay_probe):
    """The control: from a trusted network the same probe finds the relay
    it is meant to find, so its "not an open relay" above means something."""
    inst = relay_probe
    inst.configure(smtpd={"relay_networks": "127.0.0.0/8"})
    inst.start_smtpd()
    out = nmap_relay(inst.smtp_port)
    assert "smtp-open-relay: Server is an open relay (" in out, out


# testssl.sh's verdicts. Its JSON findings carry a severity: OK and INFO
# are sound (DEBUG is a note: on an implicit TLS port it cannot name the
# service), LOW (e.g. "obsolete CBC ciphers offered"), MEDIUM, HIGH and
# CRITICAL ("NOT ok", "VULNERABLE") are not, and WARN means a check could
# not be made. The only WARN allowed is about the scanner's own openssl.
SCANNER_WARNINGS = {"engine_problem"}
NOT_OFFERED = ["SSLv2", "SSLv3", "TLS1", "TLS1_1", "cipherlist_NULL",
               "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW",
               "cipherlist_3DES_IDEA", "cipherlist_AVERAGE"]


def tls_ports(inst):
    """Starts smtpd and pop3d on their four TLS ports; returns the ports
    of smtpd --tls and pop3d --tls (the others are inst's own)."""
    _, _, cert, key = tls_certs.make()
    inst.configure(tls={"certificate": str(cert), "key": str(key)})
    smtps, pop3s = inst.free_port(), inst.free_port()
    inst.start_smtpd()
    inst._start("smtpd", smtps, ["--tls"])
    inst.start_pop3d()
    inst._start("pop3d", pop3s, ["--tls"])
    return smtps, pop3s


def check_findings(name, findings):
    by_id = {f["id"]: f for f in findings}
    bad = [f for f in findings
           if f["severity"] not in ("OK", "INFO", "DEBUG")
           and f["id"] not in SCANNER_WARNINGS]
    assert not bad, f"{name}: {bad}"
    for key in NOT_OFFERED:
        assert by_id[key]["finding"].startswith("not offered"), \
            f"{name}: {by_id[key]}"
    assert by_id["TLS1_2"]["finding"] == "offered"
    assert by_id["TLS1_3"]["finding"].startswith("offered")
    assert by_id["cipherlist_STRONG"]["finding"] == "offered"
    assert by_id["secure_client_renego"]["finding"] == "not vulnerable"
    assert by_id["CRIME_TLS"]["finding"].startswith("not vulnerable")


def start_testssl(name, args, port, out):
    cmd = [tool("testssl"), "--quiet", "--color", "0", "--warnings",
           "batch", "--nodns", "none", "--connect-timeout", "10",
           "--openssl-timeout", "10", *args, "-p", "-s", "-R", "-C",
           "--jsonfile", str(out), f"127.0.0.1:{port}"]
    return name, out, subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT)


def handshake(connect, port, tls11=False, ciphers=None):
    """A TLS handshake by Python's ssl through CONNECT(port, context);
    returns the version agreed on, or the reason OpenSSL gives for the
    server's refusal."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if tls11:  # OpenSSL itself refuses TLS 1.1 above security level 0
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():  # deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    if ciphers:
        ctx.set_ciphers(ciphers)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    try:
        return connect(port, ctx)
    except ssl.SSLError as e:
        return e.reason


def smtp_starttls(port, ctx):
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.starttls(context=ctx)
        assert s.sock.compression() is None
        return s.sock.version()


def pop3_implicit(port, ctx):
    p = poplib.POP3_SSL("127.0.0.1", port, context=ctx, timeout=10)
    try:
        assert p.sock.compression() is None
        return p.sock.version()
    finally:
        with contextlib.suppress(OSError):  # a failed wrap took the fd
            p.close()


def smtp_implicit(port, ctx):
    with smtplib.SMTP_SSL("127.0.0.1", port, context=ctx, timeout=10) as s:
        assert s.sock.compression() is None
        return s.sock.version()


def pop3_stls(port, ctx):
    p = poplib.POP3("127.0.0.1", port, timeout=10)
    try:
        p.stls(context=ctx)
        assert p.sock.compression() is None
        return p.sock.version()
    finally:
        with contextlib.suppress(OSError):  # a failed wrap took the fd
            p.close()


CBC_ONLY = "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:" \
    "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384"


def test_tls_ports(inst, tmp_path):
    """testssl.sh (-p protocols, -s cipher categories, -R renegotiation,
    -C compression) on each of the four TLS ports, the same verdicts
    required of each. The four runs go at once: each is 40 to 50 s of
    CPU, half of it testssl's own start-up, and together they keep both
    cores busy. Meanwhile Python's ssl checks the same ports: TLS 1.1
    and CBC-only clients refused by the server's alert, TLS 1.2 (AEAD)
    and 1.3 agreed, no compression."""
    smtps, pop3s = tls_ports(inst)
    runs = [start_testssl("smtp STARTTLS", ["--starttls", "smtp"],
                          inst.smtp_port, tmp_path / "smtp.json"),
            start_testssl("smtp implicit TLS", [], smtps,
                          tmp_path / "smtps.json"),
            start_testssl("pop3 STLS", ["--starttls", "pop3"],
                          inst.pop3_port, tmp_path / "pop3.json"),
            start_testssl("pop3 implicit TLS", [], pop3s,
                          tmp_path / "pop3s.json")]
    try:
        for connect, port in ((smtp_implicit, smtps),
                              (pop3_stls, inst.pop3_port),
                              (smtp_starttls, inst.smtp_port),
                              (pop3_implicit, pop3s)):
            # the refusals are the server's alerts, not our OpenSSL's
            assert [handshake(connect, port, tls11=True),
                    handshake(connect, port, ciphers=CBC_ONLY),
                    handshake(connect, port, ciphers="ECDHE+AESGCM"),
                    handshake(connect, port)] == [
                        "TLSV1_ALERT_PROTOCOL_VERSION",
                        "SSLV3_ALERT_HANDSHAKE_FAILURE", "TLSv1.2",
                        "TLSv1.3"], connect.__name__
        for name, out, proc in runs:
            text = proc.communicate(timeout=600)[0].decode(errors="replace")
            assert proc.returncode == 0, f"{name}: {text}"
            check_findings(name, json.loads(out.read_text()))
    finally:
        for _, _, proc in runs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
