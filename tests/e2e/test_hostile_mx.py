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
import time

import pytest

from util import wait_for

FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
MSG = b"From: alice@example.org\r\nSubject: hostile\r\n\r\nHello.\r\n"


class HostileMX:
    """Greets, answers EHLO (PIPELINING when PIPELINING) and MAIL, answers
    the first ANSWER RCPTs with 250 and then closes the connection; with
    STALL it says nothing after the greeting and holds the connection."""

    def __init__(self, answer=0, pipelining=True, stall=False):
        self.answer, self.pipelining, self.stall = answer, pipelining, stall
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
            conn.sendall(b"220 hostile.test ESMTP\r\n")
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
    out = []
    for path in inst.messages("alice@example.org"):
        msg = email.message_from_bytes(path.read_bytes())
        if msg.get_content_type() == "multipart/report":
            out.append(msg)
    return out


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


def children(pid):
    path = "/proc/%d/task/%d/children" % (pid, pid)
    try:
        with open(path) as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def test_a_killed_delivery_process_does_not_stop_the_run(inst, hostile):
    """The delivery to the only destination of a run dies by a signal
    (SIGSEGV, sent from here while the MX stalls): its recipient is
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
        os.kill(child, signal.SIGSEGV)
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
    assert "delivery process for hostile.test killed by signal 11" in text
    log = inst.log_text()
    assert "delivery process for hostile.test killed by signal 11 " \
        "(Segmentation fault): 1 recipient deferred" in log
    assert "status=expired" in log
