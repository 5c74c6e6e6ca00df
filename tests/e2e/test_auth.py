"""The inbound checks end to end (README "Inbound checks"): messages
signed by dkimpy and by Mail::DKIM (libmail-dkim-perl), sent in with swaks from 127.0.0.1 (outside: loopback is
left out of relay_networks), with SPF, DKIM keys, DMARC policies and the
client's PTR served by dnsmasq. Our Authentication-Results is parsed
with python3-authres and its DKIM verdicts compared with
python3-authheaders' on the same octets. One instance, one dnsmasq for the
module: every message is sent in the fixture, and delivered by the
session (the default)."""
import base64
import email
import email.policy
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import authheaders
import authres
import dkim
import pytest

from conftest import Instance
from util import free_port, wait_for

KEY = Path(__file__).resolve().parent.parent / "data" / "dkim" / "rsa2048.pem"
ID = "mx.example.org"

# name -> (MAIL FROM, From domain, sign with d=, tamper after signing)
CASES = {
    "dkim-pass": ("a@sender.test", "sender.test", "sender.test", False),
    "dkim-tampered": ("a@nospf.test", "nospf.test", "nospf.test", True),
    "spf-fail": ("a@nopass.test", "nopass.test", None, False),
    "dmarc-reject": ("a@rejecting.test", "rejecting.test", None, False),
    "dmarc-none": ("a@nopass.test", "nopass.test", None, False),
    "relaxed": ("a@bounce.relaxed.test", "relaxed.test", None, False),
    "strict": ("a@bounce.strict.test", "strict.test", None, False),
    "subdomain": ("a@sub.parent.test", "sub.parent.test", None, False),
    "parent": ("a@sub.parent.test", "parent.test", None, False),
    "spoofed-local": ("a@sender.test", "example.org", None, False),
    "forged-ar": ("a@sender.test", "sender.test", "sender.test", False),
    "mail-dkim-pass": ("a@sender.test", "sender.test", "sender.test", False),
    "mail-dkim-tampered": ("a@nospf.test", "nospf.test", "nospf.test",
                           True),
}
# signed by Mail::DKIM instead of dkimpy
BY_MAIL_DKIM = {"mail-dkim-pass", "mail-dkim-tampered"}
REFUSED = {"dmarc-reject", "strict", "subdomain", "spoofed-local"}

ZONE_TXT = {
    "sender.test": ["v=spf1 ip4:127.0.0.1 -all"],
    "_dmarc.sender.test": ["v=DMARC1; p=reject"],
    "nopass.test": ["v=spf1 -all"],
    "_dmarc.nopass.test": ["v=DMARC1; p=none"],
    "rejecting.test": ["v=spf1 -all"],
    "_dmarc.rejecting.test": ["v=DMARC1; p=reject"],
    "bounce.relaxed.test": ["v=spf1 ip4:127.0.0.1 -all"],
    "_dmarc.relaxed.test": ["v=DMARC1; p=reject"],
    "bounce.strict.test": ["v=spf1 ip4:127.0.0.1 -all"],
    "_dmarc.strict.test": ["v=DMARC1; p=reject; aspf=s"],
    "sub.parent.test": ["v=spf1 -all"],
    "_dmarc.parent.test": ["v=DMARC1; p=none; sp=reject"],
}


def public_record():
    der = subprocess.run(["openssl", "pkey", "-in", str(KEY), "-pubout",
                          "-outform", "DER"], capture_output=True,
                         check=True).stdout
    text = "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()
    return [text[i:i + 250] for i in range(0, len(text), 250)]


# Mail::DKIM::Signer: the PEM key in ARGV[0], d= ARGV[1], the message on
# stdin (line ends made CRLF), the DKIM-Signature field on stdout
MAIL_DKIM_SIGN = r"""
use strict; use warnings;
use Mail::DKIM::Signer; use Mail::DKIM::TextWrap;
my $s = Mail::DKIM::Signer->new(Algorithm => 'rsa-sha256',
    Method => 'relaxed/relaxed', Domain => $ARGV[1], Selector => 'sel',
    KeyFile => $ARGV[0], Headers => 'from:to:subject:message-id');
binmode STDIN; binmode STDOUT;
while (<STDIN>) { s/\r?\n\z/\r\n/; $s->PRINT($_); }
$s->CLOSE;
print $s->signature->as_string, "\r\n";
"""


def mail_dkim_sign(msg, domain):
    proc = subprocess.run(["perl", "-e", MAIL_DKIM_SIGN, str(KEY), domain],
                          input=msg, capture_output=True, check=True,
                          timeout=30)
    sig = re.sub(rb"\r?\n", b"\r\n", proc.stdout)
    assert sig.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; "
                          b"c=relaxed/relaxed;"), sig
    return sig


def message(name):
    mailfrom, from_domain, sign, tamper = CASES[name]
    msg = (f"From: Someone <someone@{from_domain}>\r\n"
           f"To: alice@example.org\r\nSubject: {name}\r\n"
           f"Message-ID: <{name}@test>\r\n").encode()
    if name == "forged-ar":
        msg = (f"Authentication-Results: {ID}; dkim=pass\r\n\tdmarc=pass\r\n"
               f"Authentication-Results: other.example; spf=pass\r\n"
               ).encode() + msg
    msg += b"\r\nHello, " + name.encode() + b".\r\n"
    if sign and name in BY_MAIL_DKIM:
        msg = mail_dkim_sign(msg, sign) + msg
    elif sign:
        msg = dkim.sign(msg, b"sel", sign.encode(), KEY.read_bytes(),
                        include_headers=[b"from", b"to", b"subject"]) + msg
    if tamper:
        msg = msg.replace(b"Hello", b"Jello")
    return msg


def swaks(inst, name, msg, *extra):
    path = inst.dir / (name + ".eml")
    path.write_bytes(msg)
    return subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(inst.smtp_port),
         "--helo", "client.sender.test", "--from", CASES.get(name, ("a@x",))[0],
         "--to", "alice@example.org", "--data", "@" + str(path), *extra],
        capture_output=True, text=True, timeout=60)


def dnsfunc(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    name = name.rstrip(".")
    if name == "sel._domainkey.sender.test" or \
            name == "sel._domainkey.nospf.test":
        return "".join(public_record())
    return " ".join(ZONE_TXT.get(name, [])) or None


@pytest.fixture(scope="module")
def site():
    folder = tempfile.mkdtemp(prefix="pillarbox-auth-")
    inst = Instance(folder)
    dns_port = free_port()
    record = ",".join(public_record())
    dnsmasq = subprocess.Popen([
        "/usr/sbin/dnsmasq", "--keep-in-foreground", "--no-resolv",
        "--no-hosts", "--listen-address=127.0.0.1", "--bind-interfaces",
        "--user=root", "--pid-file=", "--port=%d" % dns_port,
        "--local=/test/", "--local=/org/",
        "--host-record=client.sender.test,127.0.0.1",
        "--txt-record=sel._domainkey.sender.test," + record,
        "--txt-record=sel._domainkey.nospf.test," + record,
        *["--txt-record=%s,%s" % (n, ",".join(v))
          for n, v in ZONE_TXT.items()],
    ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # delivered as by default, by the session after the client went
        inst.configure(
            smtpd={"relay_networks": "10.0.0.0/8"},
            delivery={"nameservers": "127.0.0.1:%d" % dns_port})
        inst.add_user("alice@example.org", "wonderland")
        inst.start_smtpd()
        inst.sent = {name: message(name) for name in CASES}
        inst.replies = {name: swaks(inst, name, msg)
                        for name, msg in inst.sent.items()}
        inst.replies["submission"] = swaks(
            inst, "submission",
            b"From: alice@example.org\r\nSubject: submission\r\n\r\nhi\r\n",
            "--auth", "PLAIN", "--auth-user", "alice@example.org",
            "--auth-password", "wonderland")
        wait_for(lambda: len(inst.messages("alice@example.org")) ==
                 len(CASES) - len(REFUSED) + 1)
        inst.delivered = {}
        for p in inst.messages("alice@example.org"):
            raw = p.read_bytes()
            m = email.message_from_bytes(raw, policy=email.policy.compat32)
            inst.delivered[m["Subject"]] = (raw, m)
        yield inst
    finally:
        inst.stop()
        dnsmasq.terminate()
        dnsmasq.wait()
        shutil.rmtree(folder, ignore_errors=True)


def ours(site, name):
    """Our Authentication-Results of message NAME, parsed by authres."""
    raw, m = site.delivered[name]
    fields = [v for v in m.get_all("Authentication-Results", [])
              if v.strip().lower().startswith(ID)]
    assert len(fields) == 1, raw[:2000]
    header = authres.AuthenticationResultsHeader.parse(
        "Authentication-Results: " + re.sub(r"\r?\n[ \t]", " ", fields[0]))
    assert header.authserv_id == ID
    return {r.method: r for r in header.results}


def prop(result, ptype, name):
    """A property of one result, as authres parsed it."""
    return {(p.type, p.name): p.value for p in result.properties}.get(
        (ptype, name))


def test_refused_before_the_250_and_others_accepted(site):
    for name, proc in site.replies.items():
        if name in REFUSED:
            assert re.search(r"<\*\* 550 5\.7\.1 ", proc.stdout), \
                (name, proc.stdout[-800:])
        else:
            assert proc.returncode == 0, (name, proc.stdout[-800:])
    assert set(site.delivered) == set(CASES) - REFUSED | {"submission"}
    assert "refused" in site.log_text()


def test_dkim_pass_and_fail_agree_with_authheaders(site):
    for name, want in (("dkim-pass", "pass"), ("dkim-tampered", "fail"),
                       ("mail-dkim-pass", "pass"),
                       ("mail-dkim-tampered", "fail")):
        res = ours(site, name)
        assert res["dkim"].result == want
        assert prop(res["dkim"], "header", "d") == CASES[name][2]
        assert prop(res["dkim"], "header", "s") == "sel"
        b = re.search(rb"\bb=([^;]+)", site.sent[name]).group(1)
        assert re.sub(rb"\s", b"", b).decode().startswith(
            prop(res["dkim"], "header", "b"))
        theirs = authheaders.authenticate_message(
            site.sent[name], ID, ip="127.0.0.1",
            mail_from=CASES[name][0], helo="client.sender.test",
            dnsfunc=dnsfunc)
        assert re.search(r"\bdkim=%s\b" % want, theirs), theirs


def test_spf_iprev_dmarc_results(site):
    res = ours(site, "dkim-pass")
    assert res["spf"].result == "pass"
    assert prop(res["spf"], "smtp", "mailfrom") == "a@sender.test"
    assert res["iprev"].result == "pass"
    assert res["dmarc"].result == "pass"
    assert prop(res["dmarc"], "header", "from") == "sender.test"
    assert prop(res["iprev"], "policy", "iprev") == "127.0.0.1"
    res = ours(site, "spf-fail")
    assert res["spf"].result == "fail"
    assert res["dkim"].result == "none"
    res = ours(site, "dmarc-none")  # p=none: marked, delivered
    assert res["dmarc"].result == "fail"
    assert ours(site, "relaxed")["dmarc"].result == "pass"
    assert ours(site, "parent")["dmarc"].result == "fail"  # p=none


def test_forged_results_of_ours_removed_others_kept(site):
    raw, m = site.delivered["forged-ar"]
    values = m.get_all("Authentication-Results")
    assert len(values) == 2, values
    assert values[1].strip() == "other.example; spf=pass"
    assert b"; dkim=pass\r\n\tdmarc=pass\r\n" not in raw
    assert ours(site, "forged-ar")["dkim"].result == "pass"
    assert "removed 1 Authentication-Results" in site.log_text()


def test_authenticated_submission_is_not_checked(site):
    raw, m = site.delivered["submission"]
    assert m.get_all("Authentication-Results") is None, raw[:1000]
