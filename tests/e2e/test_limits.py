"""Limits against a hostile client, end to end: connections per client
address (smtpd and pop3d), the immediate delivery attempt that holds no
connection slot and has a total deadline, the rate limit on failed logins
shared by smtpd and pop3d, and nothing of GLib's reaching a client."""
import base64
import re
import poplib
import smtplib
import socket
import subprocess
import threading
import time

import pytest

from util import wait_for

MSG = (b"From: sender@example.com\r\nTo: someone@tarpit.test\r\n"
       b"Subject: to the tarpit\r\n\r\nhello\r\n")


def connect_from(source, port):
    """A connection to 127.0.0.1:PORT from the loopback address SOURCE."""
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    return s


def first_line(sock):
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1024)
        if not chunk:
            break
        data += chunk
    return data


class Tarpit:
    """A mail server that accepts connections and never says a word;
    remembers when each connection was closed by the other side."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = []
        self.closed = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted.append(time.monotonic())
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn):
        with conn:
            while True:
                try:
                    if not conn.recv(1024):
                        break
                except OSError:
                    break
        with self.lock:
            self.closed.append(time.monotonic())

    def close(self):
        self.sock.close()


@pytest.fixture
def tarpit(inst):
    pit = Tarpit()
    inst.configure(routes={"tarpit.test": "127.0.0.1:%d" % pit.port},
                   delivery={"greeting_timeout": "60s"})
    yield pit
    pit.close()


def probe_ended(inst):
    """start_*'s readiness probe is a connection: its session counts
    against the limits until the listener has reaped it, which under the
    sanitizer on a loaded machine can take more than a moment."""
    listener = str(inst.procs[-1].pid)
    wait_for(lambda: not subprocess.run(
        ["ps", "-o", "pid=", "--ppid", listener], capture_output=True,
        text=True).stdout.strip())


def check_per_ip(port, limit, welcome, refusal):
    """LIMIT sessions from 127.0.0.1 are welcomed, one more gets the
    REFUSAL and is closed, another address is still welcome. Returns the
    held connections."""
    held = [connect_from("127.0.0.1", port) for _ in range(limit)]
    for s in held:
        assert first_line(s).startswith(welcome)
    one_more = connect_from("127.0.0.1", port)
    assert first_line(one_more).startswith(refusal)
    assert one_more.recv(100) == b""  # and closed
    other = connect_from("127.0.0.2", port)
    assert first_line(other).startswith(welcome)
    other.close()
    return held


def test_smtpd_connections_per_ip(inst):
    inst.start_smtpd()
    probe_ended(inst)
    held = check_per_ip(inst.smtp_port, 10, b"220 ", b"421 4.7.0 ")
    held.pop().close()
    # the slot is free again once that session has ended
    wait_for(lambda: first_line(connect_from("127.0.0.1", inst.smtp_port))
             .startswith(b"220 "), timeout=5)
    for s in held:
        s.close()
    assert "too many connections from [127.0.0.1]" in inst.log_text()


def test_pop3d_connections_per_ip(inst):
    inst.configure(pop3d={"max_connections_per_ip": "2"})
    inst.start_pop3d()
    probe_ended(inst)
    for s in check_per_ip(inst.pop3_port, 2, b"+OK", b"-ERR [SYS/TEMP] "):
        s.close()


def test_no_per_ip_limit_when_zero(inst):
    inst.configure(smtpd={"max_connections_per_ip": "0"})
    inst.start_smtpd()
    held = [connect_from("127.0.0.1", inst.smtp_port) for _ in range(12)]
    try:
        for s in held:
            assert first_line(s).startswith(b"220 ")
    finally:
        for s in held:
            s.close()


def test_immediate_attempt_holds_no_slot(inst, tarpit):
    """Three messages to a server that never greets, with two connection
    slots: the attempts of the first two must not keep the third out."""
    inst.configure(smtpd={"max_connections": "2"})
    inst.start_smtpd()
    probe_ended(inst)
    start = time.monotonic()
    for n in range(3):
        with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=5) as s:
            assert s.sendmail("sender@example.com", ["someone@tarpit.test"], MSG) == {}
    assert time.monotonic() - start < 5
    # the attempts did run, and are still waiting for the greeting
    wait_for(lambda: len(tarpit.accepted) == 3, timeout=10)
    assert tarpit.closed == []
    assert len(inst.mailq_json()) == 3


def test_immediate_attempt_total_deadline(inst, tarpit):
    inst.configure(delivery={"immediate_timeout": "2s"})
    inst.start_smtpd()
    inst.send(["someone@tarpit.test"], MSG)
    wait_for(lambda: tarpit.accepted, timeout=10)
    wait_for(lambda: tarpit.closed, timeout=10)
    # stopped by the 2 s deadline, long before the 60 s greeting timeout
    assert tarpit.closed[0] - tarpit.accepted[0] < 5
    wait_for(lambda: "immediate delivery stopped after 2s" in inst.log_text(),
             timeout=5)
    (entry,) = inst.mailq_json()  # left for runq, nothing lost
    assert entry["recipients"][0]["address"] == "someone@tarpit.test"


def test_immediate_attempts_are_bounded(inst, tarpit):
    """parallel = 1: one attempt runs, four wait for its slot, the sixth
    message is left for runq; nothing is lost."""
    inst.configure(delivery={"parallel": "1"})
    inst.start_smtpd()
    inst.send(["someone@tarpit.test"], MSG)
    wait_for(lambda: len(tarpit.accepted) == 1, timeout=10)
    for _ in range(5):
        inst.send(["someone@tarpit.test"], MSG)
    wait_for(lambda: "1 attempts running and 4 waiting already, left for "
             "runq" in inst.log_text(), timeout=10)
    time.sleep(0.5)
    assert len(tarpit.accepted) == 1
    assert inst.log_text().count("waiting already, left for runq") == 1
    assert len(inst.mailq_json()) == 6


def test_burst_waits_for_a_slot(inst):
    """A burst larger than parallel is delivered as slots free up, not
    left for the next runq."""
    inst.configure(delivery={"parallel": "1"})
    inst.add_user("alice@example.org", "pw")
    inst.start_smtpd()
    for _ in range(4):
        inst.send(["alice@example.org"], MSG)
    wait_for(lambda: len(inst.messages("alice@example.org")) == 4, timeout=10)
    assert "left for runq" not in inst.log_text()


def delivered_by_session(inst, address):
    """The pids of the processes that delivered to ADDRESS, each checked
    to be a session's (it logged a connect): no process was forked."""
    log = inst.log_text()
    pids = re.findall(r"smtpd\[(\d+)\]: \w+: to=<%s>(?:, orig_to=<[^>]*>)?"
                      r", relay=local, .*status=sent" % re.escape(address),
                      log)
    return pids and all("smtpd[%s]: connect from" % p in log for p in pids)


def test_local_delivery_holds_no_slot(inst, tarpit):
    """Local mail is delivered by the session's own process after its
    client has gone, once it gave its connection slot back: with the one
    attempt slot held by a tarpit and two connection slots, three local
    messages go in at once, their sessions waiting for the attempt slot
    after their clients left; then each delivers in its own process."""
    inst.configure(smtpd={"max_connections": "2"},
                   delivery={"parallel": "1", "immediate_timeout": "3s"})
    inst.add_user("alice@example.org", "pw")
    inst.start_smtpd()
    probe_ended(inst)
    inst.send(["someone@tarpit.test"], MSG)
    wait_for(lambda: len(tarpit.accepted) == 1, timeout=10)
    start = time.monotonic()
    for n in range(3):
        with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=5) as s:
            assert s.sendmail("sender@example.com", ["alice@example.org"],
                              MSG) == {}
    # (a session that kept its slot would have kept the third out until
    # the tarpit's attempt was stopped, 3 s after it began)
    assert time.monotonic() - start < 2.5
    assert inst.messages("alice@example.org") == []  # still waiting
    wait_for(lambda: len(inst.messages("alice@example.org")) == 3, timeout=10)
    assert delivered_by_session(inst, "alice@example.org")
    assert len(inst.mailq_json()) == 1  # the tarpit's, left for runq


def test_local_delivery_leaves_remote_targets_to_an_attempt(inst, tarpit):
    """An alias with a remote target: the local copy is delivered by the
    session, the remote one by a detached attempt that inherits the
    session's deadline (stopped at immediate_timeout in all)."""
    inst.configure(delivery={"immediate_timeout": "2s"})
    inst.add_user("alice@example.org", "pw")
    inst.add_alias("fwd@example.org: alice, someone@tarpit.test")
    inst.start_smtpd()
    start = time.monotonic()
    inst.send(["fwd@example.org"], MSG)
    wait_for(lambda: tarpit.closed, timeout=10)
    assert tarpit.closed[0] - start < 4
    assert delivered_by_session(inst, "alice@example.org")
    wait_for(lambda: "immediate delivery stopped after 2s" in inst.log_text(),
             timeout=5)
    (entry,) = inst.mailq_json()
    pending = [r["address"] for r in entry["recipients"]
               if r["state"] == "pending"]
    assert pending == ["someone@tarpit.test"]


def test_sendmail_attempt_total_deadline(inst, tarpit):
    """sendmail's attempt, like smtpd's, is stopped at immediate_timeout:
    a local user cannot pile up attempts that wait on a tarpit."""
    inst.configure(delivery={"immediate_timeout": "2s"})
    inst.run("sendmail", "-i", "someone@tarpit.test", input=MSG, check=True)
    wait_for(lambda: tarpit.accepted, timeout=10)
    wait_for(lambda: tarpit.closed, timeout=10)
    assert tarpit.closed[0] - tarpit.accepted[0] < 5
    wait_for(lambda: "immediate delivery stopped after 2s" in inst.log_text(),
             timeout=5)
    (entry,) = inst.mailq_json()
    assert entry["recipients"][0]["address"] == "someone@tarpit.test"


def test_sendmail_attempts_are_bounded(inst, tarpit):
    inst.configure(delivery={"parallel": "1"})
    inst.run("sendmail", "-i", "someone@tarpit.test", input=MSG, check=True)
    wait_for(lambda: len(tarpit.accepted) == 1, timeout=10)
    for _ in range(5):
        inst.run("sendmail", "-i", "someone@tarpit.test", input=MSG,
                 check=True)
    wait_for(lambda: "1 attempts running and 4 waiting already, left for "
             "runq" in inst.log_text(), timeout=10)
    time.sleep(0.5)
    assert len(tarpit.accepted) == 1
    assert len(inst.mailq_json()) == 6


def test_pop3d_empty_mailbox_inetd_no_glib_text_on_the_wire(inst):
    """pop3d with the client's socket as fds 0, 1 and 2 (inetd): RETR 1 on
    an empty mailbox is an -ERR, and nothing else reaches the client, not
    even the log lines of log = stderr."""
    inst.add_user("empty@example.org", "secret")
    # (a socketpair has no IP address: such a peer needs this for a
    # plaintext password, see test_unix_peer.py)
    inst.configure(main={"log": "stderr"}, tls={"plaintext_auth": "yes"})
    ours, theirs = socket.socketpair()
    p = subprocess.Popen([inst.bin("pop3d")], stdin=theirs, stdout=theirs,
                         stderr=theirs, env=inst.env())
    theirs.close()
    ours.settimeout(10)
    ours.sendall(b"USER empty@example.org\r\nPASS secret\r\nRETR 1\r\n"
                 b"TOP 1 0\r\nDELE 1\r\nQUIT\r\n")
    wire = b""
    while True:
        chunk = ours.recv(4096)
        if not chunk:
            break
        wire += chunk
    ours.close()
    assert p.wait(timeout=10) == 0
    lines = wire.split(b"\r\n")
    assert lines[:7] == [lines[0], b"+OK", b"+OK Logged in, 0 messages",
                         b"-ERR No such message", b"-ERR No such message",
                         b"-ERR No such message", b"+OK Bye, 0 deleted"], wire
    assert lines[0].startswith(b"+OK ") and lines[7:] == [b""], wire
    assert b"CRITICAL" not in wire and b"pop3d[" not in wire


def smtp_login(inst, password, source="127.0.0.1"):
    """AUTH PLAIN as alice from SOURCE: the reply code."""
    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=10,
                      source_address=(source, 0)) as s:
        s.ehlo()
        code, _ = s.docmd("AUTH", "PLAIN " + base64.b64encode(
            b"\0alice@example.org\0" + password.encode()).decode())
        return code


def pop_login(inst, password, source="127.0.0.1"):
    """USER/PASS as alice from SOURCE: the reply to PASS."""
    s = connect_from(source, inst.pop3_port)
    with s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"USER alice@example.org\r\nPASS " + password.encode() + b"\r\n")
        assert f.readline().startswith(b"+OK")
        return f.readline()


def test_failed_logins_limited_across_connections_and_daemons(inst):
    inst.add_user("alice@example.org", "secret")
    inst.configure(main={"max_auth_failures": "3"})
    inst.start_smtpd()
    inst.start_pop3d()
    # three failures in three connections, over both protocols
    assert smtp_login(inst, "wrong1") == 535
    assert pop_login(inst, "wrong2").startswith(b"-ERR [AUTH]")
    assert smtp_login(inst, "wrong3") == 535
    # now even the right password is not tried, on either daemon
    assert smtp_login(inst, "secret") == 454
    assert pop_login(inst, "secret").startswith(b"-ERR [SYS/TEMP]")
    p = poplib.POP3("127.0.0.1", inst.pop3_port, timeout=10)
    token = base64.b64encode(b"\0alice@example.org\0secret").decode()
    with pytest.raises(poplib.error_proto, match=r"SYS/TEMP"):
        p._shortcmd("AUTH PLAIN " + token)
    p.close()
    # another client is not affected
    assert smtp_login(inst, "secret", source="127.0.0.2") == 235
    assert pop_login(inst, "secret", source="127.0.0.2").startswith(b"+OK")
    log = inst.log_text()
    assert "[127.0.0.1]: 3 failed logins" in log
    assert "AUTH ok for <alice@example.org> from [127.0.0.1]" not in log
    assert "login ok for <alice@example.org> from [127.0.0.1]" not in log


def test_login_limit_window_ends(inst):
    inst.add_user("alice@example.org", "secret")
    inst.configure(main={"max_auth_failures": "1",
                         "auth_failure_window": "4s"})
    inst.start_pop3d()
    assert pop_login(inst, "wrong").startswith(b"-ERR [AUTH]")
    failed = time.monotonic()  # the failure counted before its reply came
    assert pop_login(inst, "secret").startswith(b"-ERR [SYS/TEMP]")
    # the window (from the failure) ends, and so does the block
    time.sleep(max(0, failed + 4.5 - time.monotonic()))
    assert pop_login(inst, "secret").startswith(b"+OK")


def test_no_login_limit_when_zero(inst):
    inst.add_user("alice@example.org", "secret")
    inst.configure(main={"max_auth_failures": "0"})
    inst.start_pop3d()
    for n in range(3):
        assert pop_login(inst, "wrong").startswith(b"-ERR [AUTH]")
    assert pop_login(inst, "secret").startswith(b"+OK")
    assert not (inst.queue / "auth-failures").exists()


def test_inetd_session_ends_before_its_attempt(inst, tarpit):
    """Under inetd the session process is what the super-server counts:
    it ends at QUIT, while its detached attempt waits on the tarpit; a
    local recipient of the same message is delivered by that attempt."""
    inst.add_user("alice@example.org", "secret")
    # a socketpair has no IP address: trusted only when configured so
    inst.configure(smtpd={"trust_local_socket": "yes"})
    ours, theirs = socket.socketpair()
    p = subprocess.Popen([inst.bin("smtpd")], stdin=theirs, stdout=theirs,
                         env=inst.env())
    theirs.close()
    ours.settimeout(10)
    f = ours.makefile("rb")
    assert f.readline().startswith(b"220 ")
    ours.sendall(b"HELO c\r\nMAIL FROM:<a@example.com>\r\n"
                 b"RCPT TO:<alice@example.org>\r\nRCPT TO:<x@tarpit.test>\r\n"
                 b"DATA\r\n")
    for _ in range(5):
        f.readline()
    ours.sendall(MSG + b".\r\nQUIT\r\n")
    assert f.readline().startswith(b"250 ")
    assert f.readline().startswith(b"221 ")
    assert p.wait(timeout=5) == 0
    wait_for(lambda: inst.messages("alice@example.org"), timeout=10)
    wait_for(lambda: tarpit.accepted, timeout=10)
    assert tarpit.closed == []
    ours.close()
