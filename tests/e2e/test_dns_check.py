"""pillarbox-dns end to end: the records it prints and its verdicts on
live DNS, served by a dnsmasq this module starts with a zone published
right (example.org) and a broken one (broken.test); the --json output
read by Python's json. One instance, one dnsmasq, one DKIM key."""
import json
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time

import pytest

from conftest import Instance
from util import free_port

HOST_ADDR = "127.0.0.9"


def wait_for_dns(port):
    """Until dnsmasq answers a query (an A query for mx.example.org)."""
    query = struct.pack(">HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"".join(
        bytes([len(p)]) + p for p in b"mx.example.org".split(b".")) + \
        b"\0" + struct.pack(">HH", 1, 1)
    deadline = time.monotonic() + 10
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while time.monotonic() < deadline:
            s.sendto(query, ("127.0.0.1", port))
            try:
                if s.recv(512)[:2] == query[:2]:
                    return
            except OSError:
                pass
    raise AssertionError("dnsmasq did not answer")


@pytest.fixture(scope="module")
def site():
    folder = tempfile.mkdtemp(prefix="pillarbox-dns-")
    inst = Instance(folder)
    port = free_port()
    dnsmasq = None
    try:
        out = inst.run("mailuser", "dkim-keygen", "--ed25519", "example.org",
                       "sel", check=True).stdout.decode()
        key = re.search(r"key written to (\S+)", out).group(1)
        record = "".join(re.findall(r'"([^"]*)"', out))
        dnsmasq = subprocess.Popen([
            "/usr/sbin/dnsmasq", "--keep-in-foreground", "--no-resolv",
            "--no-hosts", "--listen-address=127.0.0.1", "--bind-interfaces",
            "--user=root", "--pid-file=", "--port=%d" % port,
            "--local=/example.org/", "--local=/broken.test/",
            "--local=/elsewhere.test/", "--local=/in-addr.arpa/",
            # this host, forward-confirmed
            "--host-record=mx.example.org,%s" % HOST_ADDR,
            "--ptr-record=9.0.0.127.in-addr.arpa,mx.example.org",
            # example.org published right
            "--mx-host=example.org,mx.example.org,10",
            "--txt-record=example.org,v=spf1 mx -all",
            "--txt-record=sel._domainkey.example.org,%s" % record,
            "--txt-record=_dmarc.example.org,v=DMARC1; p=quarantine; "
            "rua=mailto:postmaster@example.org",
            "--txt-record=_smtp._tls.example.org,v=TLSRPTv1; "
            "rua=mailto:postmaster@example.org",
            # broken.test: MX elsewhere, SPF for others, p=none, no key
            "--mx-host=broken.test,mx.elsewhere.test,10",
            "--host-record=mx.elsewhere.test,127.0.0.99",
            "--txt-record=broken.test,v=spf1 ip4:192.0.2.0/24 -all",
            "--txt-record=_dmarc.broken.test,v=DMARC1; p=none",
        ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        inst.configure(
            main={"domains": "example.org, broken.test"},
            delivery={"nameservers": "127.0.0.1:%d" % port},
            # the Ed25519 key stands in for the RSA one: one cheap key
            dkim={"selector": "sel", "key": key})
        wait_for_dns(port)
        inst.record = record
        yield inst
    finally:
        if dnsmasq:
            dnsmasq.terminate()
            dnsmasq.wait()
        shutil.rmtree(folder, ignore_errors=True)


def table(text):
    """{section: {check: (status, rest of the line)}} from the table."""
    out, section = {}, None
    for line in text.splitlines():
        m = re.match(r"== (\S+)", line)
        if m:
            section = out.setdefault(m.group(1), {})
        m = re.match(r"  (OK|WARN|TEMP|MISSING|WRONG) +(\S+(?: [^\s(]\S*)?)"
                     r"(?: \(optional\))? +(.*)", line)
        if m and section is not None:
            section[m.group(2)] = (m.group(1), m.group(3))
    return out


def test_right_zone_passes(site):
    proc = site.run("pillarbox-dns", "example.org")
    text = proc.stdout.decode()
    assert proc.returncode == 0, text + proc.stderr.decode()
    t = table(text)
    assert t["mx.example.org"] == {
        "address": ("OK", "mx.example.org " + HOST_ADDR),
        "ptr " + HOST_ADDR: ("OK", "mx.example.org"),
        "helo": ("OK", "mx.example.org " + HOST_ADDR)}
    assert {k: v[0] for k, v in t["example.org"].items()} == {
        "mx": "OK", "spf": "OK", "dkim sel": "OK", "dmarc": "OK",
        "mta-sts": "MISSING", "tls-rpt": "OK"}
    assert "\nResult: all required records are right\n" in text
    # the records to publish, ready for a zone file
    assert "  example.org. IN MX 10 mx.example.org.\n" in text
    assert '  example.org. IN TXT "v=spf1 mx -all"\n' in text
    assert '  sel._domainkey.example.org. IN TXT "%s"\n' % site.record in text
    assert ('  _dmarc.example.org. IN TXT "v=DMARC1; p=quarantine; '
            'rua=mailto:postmaster@example.org"\n') in text
    assert "  9.0.0.127.in-addr.arpa. IN PTR mx.example.org.\n" in text


def test_broken_zone_json(site):
    proc = site.run("pillarbox-dns", "--json")
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["hostname"] == "mx.example.org"
    assert report["addresses"] == [HOST_ADDR]
    assert report["result"] == "wrong"
    doms = {d["domain"]: d for d in report["domains"]}
    assert list(doms) == ["example.org", "broken.test"]
    checks = {c["check"]: c for c in doms["broken.test"]["checks"]}
    assert {k: c["status"] for k, c in checks.items()} == {
        "mx": "wrong", "spf": "wrong", "dkim sel": "missing",
        "dmarc": "warn", "mta-sts": "missing", "tls-rpt": "missing"}
    assert checks["mx"]["found"] == "mx.elsewhere.test"
    assert checks["mx"]["fix"].startswith(
        "publish broken.test. IN MX 10 mx.example.org.")
    # the MX is elsewhere: the SPF to publish names this host's address
    assert checks["spf"]["expected"] == "v=spf1 ip4:%s -all" % HOST_ADDR
    assert "fail for %s by -all" % HOST_ADDR in checks["spf"]["found"]
    assert checks["dmarc"]["found"] == "v=DMARC1; p=none"
    assert not checks["mta-sts"]["required"]
    assert all(c["fix"] is None for c in doms["example.org"]["checks"]
               if c["status"] == "ok")
    recs = {(r["name"], r["type"]): r for r in doms["broken.test"]["records"]}
    dkim = recs[("sel._domainkey.broken.test", "TXT")]
    assert dkim["value"] == site.record and dkim["strings"] == [site.record]
    assert recs[("_mta-sts.broken.test", "TXT")]["optional"] is True
    assert recs[("broken.test", "TXT")]["value"] == \
        "v=spf1 ip4:%s -all" % HOST_ADDR


def test_given_address_without_ptr(site):
    proc = site.run("pillarbox-dns", "--address", "127.0.0.10",
                    "example.org")
    assert proc.returncode == 1
    t = table(proc.stdout.decode())
    assert t["mx.example.org"]["address"][0] == "WRONG"
    assert t["mx.example.org"]["ptr 127.0.0.10"][0] == "MISSING"
    assert t["example.org"]["spf"][0] == "WRONG"


def test_usage_and_config_errors(site):
    proc = site.run("pillarbox-dns", "--address", "mx.example.org")
    assert proc.returncode == 64
    assert b"not an IP address" in proc.stderr
    proc = site.run("pillarbox-dns", "-c", str(site.dir / "missing.conf"))
    assert proc.returncode == 78
