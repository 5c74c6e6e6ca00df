"""A hostile remote MX: a small socket server on loopback, reached
through a [routes] entry, that hangs up in the middle of a transaction
(after MAIL's reply, or after some RCPT replies) or stalls until the
delivery process is killed. runq must survive each (exit 0), defer every
recipient that got no answer, and still expire and bounce later."""
import email
import os
import signal
import socket
import subprocess
import threading

import pytest

from test_remote import FAKETIME, reports, runq
from util import wait_for

MSG = b"From: alice@example.org\r\nSubject: hostile\r\n\r\nHello.\r\n"


class HostileMX:
    """Greets, answers EHLO (PIPELINING when PIPELINING) and MAIL, answers
    the first ANSWER RCPTs with 250 and then closes the connection; with
    STALL it says nothing after the greeting and holds the connection;
    with DRIP the greeting has DRIP more lines, each 0.6 s after the
    one before."""

    def __init__(self, answer=0, pipelining=True, stall=False, drip=0):
        self.answer, self.pipelining, self.stall = answer, pipelining, stall
        self.drip = drip
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.closing = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,),
                             daemon=True).start()

    def _serve(self, conn):
        with conn, conn.makefile("rb") as f:
            try:
                for _ in range(self.drip):  # a line every 0.6 s
                    conn.sendall(b"220-hostile.test still greeting\r\n")
                    if self.closing.wait(0.6):
                        return
                conn.sendall(b"220 hostile.test ESMTP\r\n")
            except OSError:
                return  # the client gave up
            if self.stall:
                self.closing.wait(60)
                return
            rcpts = 0
            for line in f:
                verb = line[:4].upper()
                if verb == b"EHLO":
                    conn.sendall(b"250-hostile.test\r\n250 PIPELINING\r\n"
                                 if self.pipelining else b"250 hostile.test\r\n")
                elif verb == b"MAIL":
                    conn.sendall(b"250 2.1.0 ok\r\n")
                elif verb == b"RCPT":
                    if rcpts >= self.answer:
                        return  # hang up before this reply
                    rcpts += 1
                    conn.sendall(b"250 2.1.5 ok\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return

    def close(self):
        self.closing.set()
        self.sock.close()


@pytest.fixture
def hostile(inst):
    servers = []

    def make(**kw):
        mx = HostileMX(**kw)
        servers.append(mx)
        inst.configure(main={"delivery": "queue"},
                       routes={"hostile.test": "127.0.0.1:%d" % mx.port})
        inst.start_smtpd()
        return mx

    inst.add_user("alice@example.org", "pw")
    inst.add_alias("postmaster: alice@example.org")
    yield make
    for mx in servers:
        mx.close()


def recipients(inst):
    (entry,) = inst.mailq_json()
    return {r["address"]: r for r in entry["recipients"]}


RCPTS = ["r1@hostile.test", "r2@hostile.test", "r3@hostile.test"]


@pytest.mark.parametrize("answer,pipelining", [(0, True), (2, True),
                                               (0, False), (1, False)])
def test_hangup_during_rcpts_defers_and_later_bounces(inst, hostile, answer,
                                                      pipelining):
    mx = hostile(answer=answer, pipelining=pipelining)
    inst.send(RCPTS, MSG, sender="alice@example.org")
    runq(inst, "-f")
    assert mx.connections >= 1
    by = recipients(inst)
    for address in RCPTS:
        r = by[address]
        assert r["state"] == "pending" and r["attempts"] == 1, r
        assert r["last_error"] == "lost connection during the transaction"
        assert r["dsn"] == "4.4.2"
    # the run goes on later: expiry bounces all three to the sender
    runq(inst, fake="+6d")
    runq(inst)
    (bounce,) = reports(inst)
    assert bounce["Subject"] == "Undelivered Mail Returned to Sender"
    assert inst.mailq_json() == []


def test_a_reply_dripped_line_by_line_is_held_to_one_deadline(inst, hostile):
    """A server that sends a reply one line at a time, each well within
    the timeout, cannot stretch a stage past it (100 lines could make a
    5 minute timeout 8 hours): the whole greeting has greeting_timeout."""
    mx = hostile(drip=6)  # 3.6 s of greeting, 0.6 s between lines
    inst.configure(delivery={"greeting_timeout": "2s"})
    inst.send(["r1@hostile.test"], MSG, sender="alice@example.org")
    runq(inst, "-f")
    assert mx.connections >= 1
    r = recipients(inst)["r1@hostile.test"]
    assert r["state"] == "pending" and r["attempts"] == 1, r
    # given up at the greeting: never got as far as the RCPT
    assert r["last_error"].endswith(
        " said: lost connection or no SMTP greeting"), r


def children(pid):
    path = "/proc/%d/task/%d/children" % (pid, pid)
    try:
        with open(path) as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def test_a_killed_delivery_process_does_not_stop_the_run(inst, hostile):
    """The delivery to the only destination of a run dies by a signal
    (SIGKILL, sent from here while the MX stalls; a SIGSEGV would do
    the same, but a sanitizer build turns it into an exit): its recipient is
    deferred, and the same run goes on to expire the message (6 days
    later, by faketime) and to deliver the bounce to the sender."""
    hostile(stall=True)
    inst.send(["x@hostile.test"], MSG, sender="alice@example.org")
    env = inst.env({"LD_PRELOAD": FAKETIME, "FAKETIME": "+6d",
                    "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                    "ASAN_OPTIONS": "verify_asan_link_order=0:detect_leaks=1"})
    proc = subprocess.Popen([inst.bin("runq"), "-f"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        (child,) = wait_for(lambda: children(proc.pid), timeout=10)
        os.kill(child, signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert inst.mailq_json() == []
    (bounce,) = reports(inst)
    text = " ".join(bounce.as_string().split())
    assert "x@hostile.test" in text
    assert "delivery process for hostile.test killed by signal 9" in text
    log = inst.log_text()
    assert "delivery process for hostile.test killed by signal 9 " \
        "(Killed): 1 recipient deferred" in log
    assert "status=expired" in log


@pytest.mark.parametrize("damage", ["garbage", "oversized"])
def test_unreadable_envelope_is_set_aside_and_reported(inst, hostile, damage):
    """An envelope that cannot be read (a bad record, or over the size
    limit) never ends silently: runq sets the entry aside with its data,
    says so (log, exit status 65, mailq), and postmaster gets a notice
    with the queue id, what could be read and the message's header."""
    hostile(answer=0)
    inst.send(["x@hostile.test"], MSG, sender="bob@example.net")
    (qid,) = [e["id"] for e in inst.mailq_json()]
    env = inst.queue / "env" / qid
    text = env.read_bytes()
    if damage == "garbage":
        text += b"no such record\n"
    else:  # past the fixed limit (about 7.9 MB)
        text += (b"attempt 1 mx " + b"x" * 1000 + b"\n") * 8200
    env.write_bytes(text)
    inst._own()
    proc = inst.run("runq", timeout=60)
    assert proc.returncode == 65, proc.stderr
    assert b"unreadable envelope set aside" in proc.stderr
    corrupt = inst.queue / "corrupt"
    assert sorted(p.name for p in corrupt.iterdir()) == [qid + ".env",
                                                         qid + ".msg"]
    assert (corrupt / (qid + ".msg")).read_bytes().endswith(MSG)
    assert not env.exists() and not (inst.queue / "msg" / qid).exists()
    log = inst.log_text()
    assert "%s: envelope unreadable" % qid in log
    assert {"id": qid, "corrupt": True} in inst.mailq_json()
    listing = inst.run("mailq").stdout.decode()
    assert qid + "!  (unreadable envelope: set aside in corrupt/)" in listing
    # the notice was delivered to postmaster (alice) in the same run
    (notice,) = [email.message_from_bytes(p.read_bytes())
                 for p in inst.messages("alice@example.org")]
    assert notice["Subject"] == \
        "Queue entry %s set aside: its envelope is unreadable" % qid
    assert notice["To"] == "<postmaster@example.org>"
    body = notice.get_payload()[0].get_payload()
    assert "corrupt/%s.msg" % qid in body
    assert "sender: <bob@example.net>" in body
    assert "recipient: <x@hostile.test> (pending)" in body
    headers = notice.get_payload()[1].get_payload()
    assert "Subject: hostile" in str(headers)
    # told once: the next run has nothing to report
    assert inst.run("runq").returncode == 0
    assert len(inst.messages("alice@example.org")) == 1


def test_long_deferrals_keep_the_envelope_small(inst, hostile):
    """A server that defers with long replies, again and again, cannot
    grow the envelope past its bound: the first and the last attempts are
    kept, the replies cut."""
    mx = hostile()
    long = b"451 4.3.0 " + b"\x01very long reply " * 200

    def serve(conn):
        with conn, conn.makefile("rb") as f:
            conn.sendall(b"220 hostile.test ESMTP\r\n")
            for line in f:
                verb = line[:4].upper()
                if verb == b"EHLO":
                    conn.sendall(b"250 hostile.test\r\n")
                elif verb == b"MAIL":
                    conn.sendall(b"250 ok\r\n")
                elif verb == b"RCPT":
                    conn.sendall(long + b"\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"503 no\r\n")
    mx._serve = serve
    rcpts = ["r%d@hostile.test" % i for i in range(20)]
    inst.send(rcpts, MSG, sender="bob@example.net")
    for _ in range(16):
        runq(inst, "-f")
    (qid,) = [e["id"] for e in inst.mailq_json()]
    size = (inst.queue / "env" / qid).stat().st_size
    assert size < 20 * 6 * 1024, size  # 16 attempts kept: about 240 KB
    r = recipients(inst)["r7@hostile.test"]
    assert r["attempts"] == 16 and r["last_error"].startswith("451 4.3.0")
    assert r["last_error"].endswith("...")
