"""DKIM end to end, checked by verifiers nobody here wrote: keys made by
`mailuser dkim-keygen`, mail signed by smtpd (relay_networks) and by
sendmail, delivered by runq to a local SMTP sink, then verified by dkimpy
(python3-dkim), Mail::DKIM (libmail-dkim-perl, RSA: this version has
no Ed25519) and opendkim-testmsg (opendkim-tools, RSA and Ed25519), our
key records checked against the private keys by opendkim-testkey; and
the other way round, messages signed by dkimpy verified
by `mailuser dkim-verify`, with the key records served by dnsmasq (one
split over several strings). One instance, one dnsmasq, one sink for the
module."""
import base64
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import dkim
import dns.resolver
import pytest
from aiosmtpd.controller import Controller

from conftest import RUN_USER, Instance
from util import free_port

# what smtpd and sendmail sign: folded fields (one right after the
# colon), trailing whitespace, duplicates, an empty body, 8-bit text;
# each with the Date: RFC 5322 requires (opendkim-testmsg refuses a
# message without one: "dkim_chunk(): Syntax error")
DATE = "Date: Wed, 2 Dec 2026 16:00:00 +0000\r\n"
MESSAGES = {
    "folded": (b"From: Alice <alice@example.org>\r\n" + DATE.encode() +
               b"To: bob@remote.test,\r\n"
               b"  carol@remote.test\r\nSubject:\r\n\tfolded right after "
               b"the colon  \r\nX-Dup: one\r\nX-Dup: two\r\n"
               b"Message-ID: <1@example.org>\r\n\r\nbody line   \r\n"
               b"\r\n\r\n"),
    "empty": (b"From: alice@example.org\r\n" + DATE.encode() +
              b"Subject: empty body\r\n\r\n"),
    "eightbit": ("From: alice@example.org\r\n" + DATE +
                 "Subject: caf\u00e9\r\n"
                 "Content-Type: text/plain; charset=utf-8\r\n"
                 "Content-Transfer-Encoding: 8bit\r\n\r\n"
                 "na\u00efve d\u00e9j\u00e0 vu \t \r\n.dot\r\n"
                 ).encode(),
}


class Sink:
    """An aiosmtpd handler that keeps every message's octets: bob's in
    MESSAGES, later's (refused with 451 until told) in LATER."""

    def __init__(self):
        self.messages = []
        self.later = []
        self.accept_later = False

    async def handle_RCPT(self, server, session, envelope, address, options):
        if address.startswith("later@") and not self.accept_later:
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        box = self.later if "later@remote.test" in envelope.rcpt_tos \
            else self.messages
        box.append(envelope.original_content)
        return "250 2.0.0 accepted"


def dnsmasq_zone(keys):
    """dnsmasq's options serving the key records of KEYS."""
    return ["--local=/example.org/",
            # one character-string per item (no shell: no quotes)
            *["--txt-record=%s._domainkey.example.org,%s" % (
                sel, ",".join(strings))
              for sel, (_, strings) in keys.items()]]


def txt_strings(output):
    """The quoted strings of the TXT record mailuser printed."""
    return re.findall(r'"([^"]*)"', output)


@pytest.fixture(scope="module")
def site():
    folder = tempfile.mkdtemp(prefix="pillarbox-dkim-")
    inst = Instance(folder)
    sink = Sink()
    smtp_port = free_port()
    dns_port = free_port()
    ctl = Controller(sink, hostname="127.0.0.2", port=smtp_port)
    ctl.start()
    dnsmasq = None
    try:
        keys = {}
        for sel, flags in (("sel", []), ("sel-ed25519", ["--ed25519"])):
            proc = inst.run("mailuser", "dkim-keygen", *flags,
                            "example.org", sel, check=True)
            out = proc.stdout.decode()
            path = re.search(r"key written to (\S+)", out).group(1)
            keys[sel] = (path, txt_strings(out))
        dnsmasq = subprocess.Popen([
            "/usr/sbin/dnsmasq", "--keep-in-foreground", "--no-resolv",
            "--no-hosts", "--listen-address=127.0.0.1", "--bind-interfaces",
            "--user=root", "--pid-file=", "--port=%d" % dns_port,
            *dnsmasq_zone(keys),
        ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        inst.configure(
            main={"delivery": "queue"},
            delivery={"nameservers": "127.0.0.1:%d" % dns_port},
            routes={"remote.test": "127.0.0.2:%d" % smtp_port},
            dkim={"selector": "sel", "key": keys["sel"][0],
                  "ed25519_key": keys["sel-ed25519"][0]})
        inst.add_user("carol@example.org", "pw")
        inst.start_smtpd()
        for name, msg in MESSAGES.items():
            # the first also to a local user: the same signed octets
            rcpts = ["bob@remote.test"] + (
                ["carol@example.org"] if name == "folded" else [])
            inst.send(rcpts, msg, sender="alice@example.org")
        inst.send(["later@remote.test"], MESSAGES["folded"],
                  sender="alice@example.org")
        proc = inst.run("sendmail", "-i", "bob@remote.test",
                        input=b"From: alice@example.org\nSubject: by "
                              b"sendmail\n\nlocal program\n")
        assert proc.returncode == 0, proc.stderr
        inst.keys = keys
        inst.sink = sink
        inst.dns_port = dns_port
        inst.envelopes = [p.read_text() for p in inst.queued()]
        proc = inst.run("runq", timeout=60)
        assert proc.returncode == 0, proc.stderr
        yield inst
    finally:
        inst.stop()
        if dnsmasq:
            dnsmasq.terminate()
            dnsmasq.wait()
        ctl.stop()
        shutil.rmtree(folder, ignore_errors=True)


def dnsfunc_for(site):
    """dkimpy's key lookups, asked of the module's dnsmasq (dnspython,
    which python3-dkim depends on)."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = site.dns_port

    def dnsfunc(name, timeout=5):
        try:
            answer = resolver.resolve(name.decode(), "TXT", lifetime=timeout)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        return b"".join(answer[0].strings)
    return dnsfunc


def test_keygen_writes_private_files_and_255_octet_strings(site):
    for sel, (path, strings) in site.keys.items():
        st = os.stat(path)
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert pwd.getpwuid(st.st_uid).pw_name == RUN_USER
        assert all(len(s) <= 255 for s in strings)
        assert "".join(strings).startswith("v=DKIM1; k=")
    assert len(site.keys["sel"][1]) > 1  # RSA-2048: split


def test_signed_once_at_acceptance_in_the_envelope(site):
    assert len(site.envelopes) == 5
    for text in site.envelopes:
        assert text.count("prepend DKIM-Signature: v=1; a=rsa-sha256;") == 1
        assert "a=ed25519-sha256;" in text


def dkimpy_verifies(msg, idx, dnsfunc):
    """dkimpy's verdict (it raises on some failures, returns on others)."""
    try:
        return dkim.DKIM(msg).verify(idx=idx, dnsfunc=dnsfunc)
    except dkim.DKIMException:
        return False


def test_dkimpy_verifies_rsa_and_ed25519(site):
    assert len(site.sink.messages) == 4
    dnsfunc = dnsfunc_for(site)
    for msg in site.sink.messages:
        assert dkimpy_verifies(msg, 0, dnsfunc), msg[:600]
        assert dkimpy_verifies(msg, 1, dnsfunc), msg[:600]
        # a changed body fails
        assert not dkimpy_verifies(msg + b"tampered\r\n", 0, dnsfunc)


MAIL_DKIM = r"""
use strict; use warnings;
use Mail::DKIM::Verifier; use Net::DNS::Resolver;
Mail::DKIM::DNS::resolver(Net::DNS::Resolver->new(
    nameservers => ['127.0.0.1'], port => $ARGV[0], recurse => 1));
for my $file (@ARGV[1..$#ARGV]) {
    open(my $fh, '<:raw', $file) or die;
    my $v = Mail::DKIM::Verifier->new();
    while (<$fh>) { s/\r?\n\z/\r\n/; $v->PRINT($_); }
    $v->CLOSE;
    for my $sig ($v->signatures) {
        print $sig->algorithm, " ", $sig->result, "\n";
    }
}
"""


def test_mail_dkim_verifies_rsa(site, tmp_path):
    files = []
    for i, msg in enumerate(site.sink.messages):
        p = tmp_path / ("m%d" % i)
        p.write_bytes(msg)
        files.append(str(p))
    proc = subprocess.run(["perl", "-e", MAIL_DKIM, str(site.dns_port),
                           *files], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().split("\n")
    assert lines.count("rsa-sha256 pass") == len(files), proc.stdout


# opendkim-testmsg has no resolver option: libopendkim asks the servers
# of /etc/resolv.conf, on port 53. So it runs in a network and mount
# namespace of its own (unshare), with loopback up, a resolv.conf naming
# 127.0.0.1 bound over /etc/resolv.conf and a dnsmasq serving the key
# records on port 53 there (daemon mode: it returns once it listens).
# It verifies each file of $MSGS (exit 0: a signature verified) and
# prints "NAME STATUS" a line.
TESTMSG_IN_NAMESPACE = r"""
set -u
ip link set lo up || exit 99
mount --bind "$RESOLV" /etc/resolv.conf || exit 99
/usr/sbin/dnsmasq --no-resolv --no-hosts --listen-address=127.0.0.1 \
    --bind-interfaces --user=root --pid-file="$PIDFILE" --port=53 \
    "$@" || exit 99
for f in "$MSGS"/*; do
    /usr/sbin/opendkim-testmsg < "$f"
    echo "${f##*/} $?"
done
kill "$(cat "$PIDFILE")"
"""


def only_signature(msg, algorithm):
    """MSG without its DKIM-Signature fields of other algorithms."""
    head, sep, body = msg.partition(b"\r\n\r\n")
    fields = re.split(rb"\r\n(?![ \t])", head)
    keep = [f for f in fields if not f.startswith(b"DKIM-Signature:")
            or b"a=%s;" % algorithm in f]
    assert len(keep) == len(fields) - 1
    return b"\r\n".join(keep) + sep + body


def test_opendkim_testmsg_verifies_rsa_and_ed25519(site, tmp_path):
    """Each signature alone (testmsg passes a message when any one
    verifies), and a tampered copy of each that must fail."""
    msgs = tmp_path / "msgs"
    msgs.mkdir()
    want = {}
    for i, msg in enumerate(site.sink.messages):
        for alg in (b"rsa-sha256", b"ed25519-sha256"):
            one = only_signature(msg, alg)
            name = "m%d-%s" % (i, alg.decode())
            (msgs / name).write_bytes(one)
            (msgs / (name + "-tampered")).write_bytes(one + b"tampered\r\n")
            want[name], want[name + "-tampered"] = "0", "70"
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")
    proc = subprocess.run(
        ["unshare", "--net", "--mount", "sh", "-c", TESTMSG_IN_NAMESPACE,
         "sh", *dnsmasq_zone(site.keys)],
        env=dict(os.environ, RESOLV=str(resolv), MSGS=str(msgs),
                 PIDFILE=str(tmp_path / "dnsmasq.pid")),
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    got = dict(line.split() for line in proc.stdout.split("\n") if line)
    assert got == want, proc.stderr
    assert proc.stderr.count("dkim_eom(): Bad signature") == len(want) // 2


def test_opendkim_testkey_checks_our_key_records(site, tmp_path):
    """opendkim-testkey (libunbound) asks the module's dnsmasq, through an
    unbound configuration forwarding everything there, parses both
    records and compares the RSA one with the private key mailuser wrote
    (it compares RSA keys only: "EVP_PKEY_get1_RSA() failed" with an
    Ed25519 one)."""
    unbound = tmp_path / "unbound.conf"
    unbound.write_text("server:\n\tdo-not-query-localhost: no\n"
                       "forward-zone:\n\tname: \".\"\n"
                       "\tforward-addr: 127.0.0.1@%d\n" % site.dns_port)
    conf = tmp_path / "opendkim.conf"
    conf.write_text("ResolverConfiguration %s\n" % unbound)

    def testkey(sel, *key):
        return subprocess.run(
            ["/usr/sbin/opendkim-testkey", "-x", str(conf), "-d",
             "example.org", "-s", sel, *key, "-vvv"],
            capture_output=True, text=True, timeout=30)
    for sel, key in (("sel", ["-k", site.keys["sel"][0]]),
                     ("sel-ed25519", [])):
        proc = testkey(sel, *key)
        assert proc.returncode == 0, proc.stderr
        assert "key OK" in proc.stdout + proc.stderr
        assert "checking key '%s._domainkey.example.org'" % sel in \
            proc.stderr
    # the record against another RSA private key: a mismatch
    other = Path(__file__).resolve().parent.parent / "data" / "dkim" / \
        "rsa2048.pem"
    proc = testkey("sel", "-k", str(other))
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "keys do not match" in proc.stdout + proc.stderr
    # a selector with no record
    proc = testkey("nokey")
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "record not found" in proc.stdout + proc.stderr


def ed25519_seed(pem_path):
    """dkimpy signs Ed25519 with the raw 32-octet seed: the end of the
    PKCS #8 form mailuser writes."""
    text = open(pem_path).read()
    der = base64.b64decode("".join(text.strip().split("\n")[1:-1]))
    return base64.b64encode(der[-32:])


def our_verdicts(site, msg):
    proc = site.run("mailuser", "dkim-verify", input=msg)
    return proc.returncode, proc.stdout.decode().strip().split("\n")


@pytest.mark.parametrize("canon", [(b"relaxed", b"relaxed"),
                                   (b"simple", b"simple"),
                                   (b"relaxed", b"simple")])
def test_we_verify_what_dkimpy_signs(site, canon):
    msg = MESSAGES["folded"]
    rsa = open(site.keys["sel"][0], "rb").read()
    sig = dkim.sign(msg, b"sel", b"example.org", rsa, canonicalize=canon,
                    include_headers=[b"from", b"to", b"subject", b"x-dup"])
    sig += dkim.sign(msg, b"sel-ed25519", b"example.org",
                     ed25519_seed(site.keys["sel-ed25519"][0]),
                     canonicalize=canon, signature_algorithm=b"ed25519-sha256")
    rc, lines = our_verdicts(site, sig + msg)
    assert rc == 0, lines
    assert [l.split()[0] for l in lines] == ["dkim=pass", "dkim=pass"]
    assert "header.d=example.org header.s=sel header.b=" in lines[0]
    assert "header.s=sel-ed25519" in lines[1]
    # tampered: both fail, and the command says so
    rc, lines = our_verdicts(site, sig + msg.replace(b"body", b"bodY"))
    assert rc == 1
    assert [l.split()[0] for l in lines] == ["dkim=fail", "dkim=fail"]


def test_dkim_verify_of_unsigned_and_of_unknown_key(site):
    rc, lines = our_verdicts(site, b"From: a@example.org\r\n\r\nx\r\n")
    assert (rc, lines) == (1, ["dkim=none"])
    rsa = open(site.keys["sel"][0], "rb").read()
    msg = MESSAGES["empty"]
    sig = dkim.sign(msg, b"nokey", b"example.org", rsa)
    rc, lines = our_verdicts(site, sig + msg)
    assert rc == 1
    assert lines[0].startswith('dkim=permerror reason="no key record"')


def test_body_length_tag_is_suspect(site):
    """l= covering the whole body passes; text appended after it (what l=
    allows an attacker to do) gets policy, not pass."""
    msg = MESSAGES["folded"]
    rsa = open(site.keys["sel"][0], "rb").read()
    sig = dkim.sign(msg, b"sel", b"example.org", rsa, length=True)
    assert b"l=" in sig
    rc, lines = our_verdicts(site, sig + msg)
    assert (rc, lines[0].split()[0]) == (0, "dkim=pass")
    rc, lines = our_verdicts(site, sig + msg + b"appended\r\n")
    assert rc == 1
    assert lines[0].startswith('dkim=policy reason="l= leaves part')


def test_a_retry_sends_the_same_octets(site):
    """The signature is made once, at acceptance: the retry after a 451
    sends what the envelope recorded, and it still verifies."""
    [env] = [p for p in site.queued()]
    prepend = re.search(r"^prepend (.*)$", env.read_text(), re.M).group(1)
    prepend = re.sub(r"\\x([0-9A-F]{2})",
                     lambda m: chr(int(m.group(1), 16)), prepend).encode()
    site.sink.accept_later = True
    proc = site.run("runq", "-f", timeout=60)
    assert proc.returncode == 0, proc.stderr
    [msg] = site.sink.later
    assert msg.startswith(prepend)
    assert dkimpy_verifies(msg, 0, dnsfunc_for(site))
    assert dkimpy_verifies(msg, 1, dnsfunc_for(site))


def test_the_local_copy_carries_the_signature_too(site):
    """A message for remote and local recipients: the Maildir copy has
    the envelope's DKIM-Signature fields after Return-Path and
    Delivered-To, and they verify there too (LF line ends)."""
    [path] = site.messages("carol@example.org")
    data = path.read_bytes()
    assert data.startswith(b"Return-Path: <alice@example.org>\n"
                           b"Delivered-To: carol@example.org\n"
                           b"DKIM-Signature: v=1; a=rsa-sha256;")
    rc, lines = our_verdicts(site, data)
    assert rc == 0, lines
    assert [l.split()[0] for l in lines] == ["dkim=pass", "dkim=pass"]
