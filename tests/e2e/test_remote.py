"""Remote delivery end to end: a real DNS server (dnsmasq) names the MX
hosts, real SMTP servers (aiosmtpd) on 127.0.0.x receive, runq delivers;
libfaketime moves runq 5 hours and 6 days ahead for the delay notice and
the bounce."""
import email
import json
import os
import re
import socket
import subprocess
import threading
import time

import pytest
from aiosmtpd.controller import Controller

from util import free_port, wait_for

FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
MSG = b"From: alice@example.org\r\nSubject: out\r\n\r\nGoing out.\r\n"


class Recorder:
    """An aiosmtpd handler: records what arrives; 'later*' gets 451 and
    'nosuch*' 550 unless told otherwise."""

    def __init__(self):
        self.messages = []
        self.mail_froms = []
        self.accept_later = False

    async def handle_MAIL(self, server, session, envelope, address, options):
        self.mail_froms.append(address)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, options):
        local = address.split("@")[0]
        if local.startswith("later") and not self.accept_later:
            return "451 4.3.0 try again later, please"
        if local.startswith("nosuch"):
            return "550 5.1.1 <%s>: no such user here" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                              envelope.original_content))
        return "250 2.0.0 accepted"

    def rcpts(self):
        return [r for _, rs, _ in self.messages for r in rs]


@pytest.fixture
def net(inst):
    """dnsmasq with the test zone, SMTP servers on 127.0.0.2 and .3 at one
    port, and the instance configured to use them."""
    dns_port = free_port()
    smtp_port = free_port()
    servers = {}
    for ip in ("127.0.0.2", "127.0.0.3"):
        handler = Recorder()
        ctl = Controller(handler, hostname=ip, port=smtp_port)
        ctl.start()
        servers[ip] = (ctl, handler)
    dnsmasq = subprocess.Popen([
        "/usr/sbin/dnsmasq", "--keep-in-foreground", "--no-resolv",
        "--no-hosts", "--listen-address=127.0.0.1", "--bind-interfaces",
        "--local=/test/", "--user=root", "--pid-file=", "--port=%d" % dns_port,
        "--mx-host=remote.test,mx1.remote.test,10",
        "--host-record=mx1.remote.test,127.0.0.2",
        "--mx-host=backup.test,mx1.backup.test,10",
        "--mx-host=backup.test,mx2.backup.test,20",
        "--host-record=mx1.backup.test,127.0.0.9",
        "--host-record=mx2.backup.test,127.0.0.3",
        "--host-record=implicit.test,127.0.0.3",
        "--dns-rr=nullmx.test,15,000000",
        "--mx-host=slow.test,mx.slow.test,10",
        "--host-record=mx.slow.test,127.0.0.6",
        # seven MX hosts where nothing listens
        *["--mx-host=many.test,mx%d.many.test,%d" % (n, n) for n in range(7)],
        *["--host-record=mx%d.many.test,127.0.0.%d" % (n, 20 + n)
          for n in range(7)],
    ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    inst.configure(main={"delivery": "queue"},
                   delivery={"nameservers": "127.0.0.1:%d" % dns_port,
                             "port": str(smtp_port)},
                   routes={"routed.test": "127.0.0.3:%d" % smtp_port})
    inst.add_user("alice@example.org", "pw")
    inst.add_alias("postmaster: alice@example.org")
    inst.start_smtpd()
    inst.servers = {ip: h for ip, (c, h) in servers.items()}
    inst.smtp_sink_port = smtp_port
    try:
        yield inst
    finally:
        dnsmasq.terminate()
        dnsmasq.wait()
        for ctl, _ in servers.values():
            ctl.stop()


def runq(inst, *args, fake=None):
    env = None
    if fake:
        env = {"LD_PRELOAD": FAKETIME, "FAKETIME": fake,
               "FAKETIME_DONT_FAKE_MONOTONIC": "1",
               "ASAN_OPTIONS": "verify_asan_link_order=0:detect_leaks=1"}
    proc = inst.run("runq", *args, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc


def reports(inst):
    """The delivery reports in alice's Maildir, parsed."""
    out = []
    for path in inst.messages("alice@example.org"):
        msg = email.message_from_bytes(path.read_bytes())
        if msg.get_content_type() == "multipart/report":
            out.append(msg)
    return out


def status_fields(report):
    """The per-recipient fields of the message/delivery-status part."""
    part = next(p for p in report.walk()
                if p.get_content_type() == "message/delivery-status")
    blocks = part.get_payload()
    return [dict(b.items()) for b in blocks[1:]]


def test_delivered_via_mx(net):
    inst = net
    inst.send(["bob@remote.test"], MSG, sender="alice@example.org")
    runq(inst, "-f")
    server = inst.servers["127.0.0.2"]
    assert len(server.messages) == 1
    sender, rcpts, content = server.messages[0]
    assert sender == "alice@example.org" and rcpts == ["bob@remote.test"]
    assert content.endswith(MSG) and b"Received: from " in content
    assert inst.mailq_json() == []
    assert "relay=mx1.remote.test[127.0.0.2]:%d" % inst.smtp_sink_port in inst.log_text()
    assert "status=sent (250 2.0.0 accepted)" in inst.log_text(), inst.log_text()


def test_dot_stuffing_and_size(net):
    inst = net
    body = (b"Subject: dots\r\n\r\n.one\r\n..two\r\n.\r\nend\r\n"
            + (b"y" * 78 + b"\r\n.\r\n") * 2000)
    inst.send(["bob@remote.test"], body, sender="alice@example.org")
    runq(inst, "-f")
    content = inst.servers["127.0.0.2"].messages[0][2]
    assert content.endswith(body)


def test_second_mx_when_first_refuses(net):
    inst = net
    inst.send(["carol@backup.test"], MSG, sender="alice@example.org")
    runq(inst, "-f")
    assert inst.servers["127.0.0.3"].rcpts() == ["carol@backup.test"]
    assert "connect to mx1.backup.test[127.0.0.9]" in inst.log_text()


def test_implicit_mx_and_static_route(net):
    inst = net
    inst.send(["dan@implicit.test", "eve@routed.test"], MSG,
              sender="alice@example.org")
    runq(inst, "-f")
    assert sorted(inst.servers["127.0.0.3"].rcpts()) == [
        "dan@implicit.test", "eve@routed.test"]


@pytest.mark.parametrize("domain,status", [("nullmx.test", "5.1.10"),
                                           ("nxdomain.test", "5.1.2")])
def test_undeliverable_domains_bounce_at_once(net, domain, status):
    inst = net
    inst.send(["x@" + domain], MSG, sender="alice@example.org")
    runq(inst, "-f")
    runq(inst)  # delivers the bounce into alice's Maildir
    (report,) = reports(inst)
    fields = status_fields(report)
    assert fields[0]["Action"] == "failed" and fields[0]["Status"] == status
    assert inst.mailq_json() == []


def test_mixed_outcomes_in_one_transaction(net):
    inst = net
    inst.send(["ok@remote.test", "later@remote.test", "nosuch@remote.test"],
              MSG, sender="alice@example.org")
    runq(inst, "-f")
    server = inst.servers["127.0.0.2"]
    assert server.rcpts() == ["ok@remote.test"]
    (entry,) = inst.mailq_json()
    by = {r["address"]: r for r in entry["recipients"]}
    assert by["ok@remote.test"]["state"] == "sent"
    later = by["later@remote.test"]
    assert later["state"] == "pending" and later["attempts"] == 1
    assert later["last_error"].startswith("451 4.3.0 try again later")
    assert later["next_attempt"] > time.time() + 600
    assert entry["bounce_at"] == entry["arrival"] + 5 * 86400
    # the 550 is bounced at once with the remote reply
    runq(inst)
    (report,) = reports(inst)
    (field,) = status_fields(report)
    assert field["Final-Recipient"] == "rfc822; nosuch@remote.test"
    assert field["Status"] == "5.1.1"
    assert "550 5.1.1 <nosuch@remote.test>: no such user here" in " ".join(
        field["Diagnostic-Code"].split())
    original = [p for p in report.walk()
                if p.get_content_type() == "text/rfc822-headers"]
    assert original and b"Subject: out" in original[0].get_payload(decode=True)
    # not due yet: nothing is tried; then the server takes it
    runq(inst)
    assert server.rcpts() == ["ok@remote.test"]
    server.accept_later = True
    runq(inst, "-f")
    assert sorted(server.rcpts()) == ["later@remote.test", "ok@remote.test"]
    assert inst.mailq_json() == []


def test_delay_notice_once_then_bounce(net):
    inst = net
    inst.send(["later@remote.test"], MSG, sender="alice@example.org")
    runq(inst, "-f")
    assert reports(inst) == []
    runq(inst, fake="+5h")
    (notice,) = reports(inst)
    assert notice["Subject"].startswith("Delayed Mail")
    (field,) = status_fields(notice)
    assert field["Action"] == "delayed" and "Will-Retry-Until" in field
    text = notice.get_payload()[0].get_payload(decode=True).decode()
    assert "451 4.3.0 try again later" in text and "keeps trying until" in text
    runq(inst, "-f", fake="+6h")
    assert len(reports(inst)) == 1  # never a second notice
    assert inst.mailq_json()[0]["notice_sent"] is True
    runq(inst, fake="+6d")
    runq(inst)
    subjects = sorted(r["Subject"] for r in reports(inst))
    assert subjects == ["Delayed Mail (still being retried)",
                        "Undelivered Mail Returned to Sender"]
    bounce = [r for r in reports(inst) if r["Subject"].startswith("Undelivered")][0]
    (field,) = status_fields(bounce)
    assert field["Action"] == "failed"
    assert inst.mailq_json() == []


def test_no_bounce_of_a_bounce(net):
    inst = net
    # a message from <> that fails: reported to postmaster (alice), once
    inst.send(["nosuch@remote.test"], MSG, sender="")
    runq(inst, "-f")
    runq(inst)
    (report,) = reports(inst)
    assert report["To"] == "<postmaster@example.org>"
    for _ in range(3):
        runq(inst, "-f")
    assert len(reports(inst)) == 1
    assert inst.mailq_json() == []


def test_concurrent_runq_deliver_once(net):
    inst = net
    for i in range(10):
        inst.send(["r%d@remote.test" % i], MSG, sender="alice@example.org")
    procs = [subprocess.Popen([inst.bin("runq"), "-f"], env=inst.env())
             for _ in range(3)]
    for p in procs:
        assert p.wait(timeout=60) == 0
    runq(inst, "-f")
    rcpts = inst.servers["127.0.0.2"].rcpts()
    assert sorted(rcpts) == sorted("r%d@remote.test" % i for i in range(10))


def test_silent_host_does_not_hold_up_others(net):
    inst = net
    silent = socket.socket()
    silent.bind(("127.0.0.6", inst.smtp_sink_port))
    silent.listen(8)  # accepts (kernel backlog) but never speaks
    inst.configure(delivery={"greeting_timeout": "3s"})
    try:
        inst.send(["a@slow.test", "b@remote.test"], MSG, sender="alice@example.org")
        start = time.monotonic()
        runq(inst, "-f")
        assert time.monotonic() - start < 20
        assert inst.servers["127.0.0.2"].rcpts() == ["b@remote.test"]
        (entry,) = inst.mailq_json()
        slow = [r for r in entry["recipients"] if r["address"] == "a@slow.test"][0]
        assert slow["state"] == "pending" and slow["last_error"]
    finally:
        silent.close()


def test_bounce_to_undeliverable_sender_ends_with_postmaster(net):
    inst = net
    # the sender does not exist either: bounce -> double bounce -> alice
    inst.send(["nosuch1@remote.test"], MSG, sender="nosuch2@remote.test")
    for _ in range(4):
        runq(inst, "-f")
    (report,) = reports(inst)
    assert report["To"] == "<postmaster@example.org>"
    assert report["From"] == "Mail Delivery System <MAILER-DAEMON@%s>" % inst.hostname
    (field,) = status_fields(report)
    assert field["Final-Recipient"] == "rfc822; nosuch2@remote.test"
    assert inst.mailq_json() == []
    # the bounce went out from <> and was refused; nothing came back
    assert inst.servers["127.0.0.2"].mail_froms == ["nosuch2@remote.test", "<>"]
    log = inst.log_text()
    assert "to=<nosuch2@remote.test>, relay=mx1.remote.test" in log
    assert log.count("sender non-delivery notification") == 2


def test_double_bounce_never_loops_when_postmaster_fails(net):
    inst = net
    # postmaster itself is undeliverable (a remote address that refuses)
    (inst.dir / "aliases").write_text("postmaster: nosuch-pm@remote.test\n")
    inst.send(["nosuch1@remote.test"], MSG, sender="")
    for _ in range(5):
        runq(inst, "-f")
    assert inst.mailq_json() == []
    assert "not reported (it would loop)" in inst.log_text()
    assert inst.log_text().count("sender non-delivery notification") == 1


def test_remote_target_named_twice_gets_one_copy(net):
    """Issue 12 item 10, remote side: bob is named directly and through
    an alias; he gets one copy, carol (only through the alias) hers."""
    inst = net
    inst.add_alias("team@example.org: bob@remote.test, Carol@remote.test")
    inst.add_alias("crew@example.org: carol@REMOTE.test")
    inst.send(["bob@remote.test", "team@example.org", "crew@example.org"],
              MSG, sender="alice@example.org")
    runq(inst, "-f")
    rcpts = sorted(r.lower() for r in inst.servers["127.0.0.2"].rcpts())
    assert rcpts == ["bob@remote.test", "carol@remote.test"], rcpts
    assert inst.mailq_json() == []


def test_at_most_five_addresses_a_delivery(net):
    """A domain naming many hosts costs at most five connection attempts
    a delivery (Postfix's smtp_mx_address_limit)."""
    inst = net
    inst.send(["bob@many.test"], MSG, sender="alice@example.org")
    runq(inst, "-f")
    tries = [l for l in inst.log_text().splitlines()
             if ": connect to mx" in l and "status=" not in l]
    assert len(tries) == 5, tries
    assert [r["address"] for r in inst.mailq_json()[0]["recipients"]] == \
        ["bob@many.test"]


def test_immediate_remote_delivery_by_the_session(net):
    """Under a listener the session's own process, having given its slot
    back, delivers to a remote server itself (no process forked for the
    attempt: the sent line comes from a pid that logged the connect)."""
    inst = net
    inst.stop()
    inst.procs.clear()
    inst.configure(main={"delivery": "background"})
    inst.start_smtpd()
    inst.send(["bob@remote.test", "alice@example.org"], MSG,
              sender="alice@example.org")
    server = inst.servers["127.0.0.2"]
    wait_for(lambda: len(server.messages) == 1, timeout=20)
    wait_for(lambda: inst.mailq_json() == [], timeout=10)
    log = inst.log_text()
    (pid,) = re.findall(r"smtpd\[(\d+)\]: \w+: to=<bob@remote\.test>, "
                        r"relay=mx1\.remote\.test\[127\.0\.0\.2\]", log)
    assert "smtpd[%s]: connect from" % pid in log
    assert inst.messages("alice@example.org")
