"""[smtpd] max_use: a session process kept for the next connections
(Postfix's max_use), end to end with smtplib against smtpd --listen: how
many clients one process serves, that a session which saw AUTH ends its
process, that kept processes deliver, reap what they fork and end after
max_idle, and that the default stays a fork per connection."""
import os
import re
import smtplib
import socket
import ssl
import subprocess

import tls_certs
from util import wait_for, wait_port

MSG = b"From: sender@example.com\r\nSubject: kept\r\n\r\nhello\r\n"


def session_pids(inst):
    """The pid of each smtpd session, in the order they connected."""
    return re.findall(r"smtpd\[(\d+)\]: connect from", inst.log_text())


def one_session(inst, rcpts=("alice@example.org",), login=None):
    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as s:
        if login:
            s.login(*login)
        assert s.sendmail("sender@example.com", list(rcpts), MSG) == {}


def runs(pids):
    """Lengths of the runs of equal neighbours: [a, a, b] -> [2, 1]."""
    out = []
    for i, p in enumerate(pids):
        if i and pids[i - 1] == p:
            out[-1] += 1
        else:
            out.append(1)
    return out


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_one_process_serves_max_use_clients(inst):
    """One connection slot and max_use 3: the listener takes the next
    client only once the slot is free, and a kept process frees it and
    says it is ready at once, so the sessions go to processes in runs of
    exactly three (the start's readiness probe, a connection closed
    without QUIT, ends its process: a run of one)."""
    inst.configure(smtpd={"max_use": "3", "max_connections": "1"},
                   main={"delivery": "queue"})
    inst.add_user("alice@example.org", "pw")
    inst.start_smtpd()
    for _ in range(7):
        one_session(inst)
    pids = session_pids(inst)
    assert len(pids) == 8
    assert runs(pids) == [1, 3, 3, 1]
    assert len(set(pids)) == 4
    # a process that served three has ended
    wait_for(lambda: not alive(pids[1]) and not alive(pids[4]), timeout=10)
    # nothing lost: every message is queued, then delivered
    assert len(inst.queued()) == 7
    inst.run("runq", check=True)
    assert len(inst.messages("alice@example.org")) == 7


def test_auth_session_ends_its_process(inst):
    """A password passed through the process: it serves no one else."""
    inst.configure(smtpd={"max_use": "10", "max_connections": "1"},
                   main={"delivery": "queue"})
    inst.add_user("alice@example.org", "pw")
    inst.start_smtpd()
    one_session(inst)
    one_session(inst, login=("alice@example.org", "pw"))
    one_session(inst)
    one_session(inst)
    pids = session_pids(inst)
    assert len(pids) == 5
    assert "AUTH ok for <alice@example.org>" in inst.log_text()
    # the probe alone; plain and AUTH in one process; the next two in a
    # new one
    assert runs(pids) == [1, 2, 2]
    wait_for(lambda: not alive(pids[2]), timeout=10)


def test_kept_processes_deliver_and_reap(inst):
    """The default delivery (in the session's process for local mail, a
    forked attempt for remote mail) with kept processes: everything is
    delivered or queued, and no kept process holds a zombie child."""
    inst.configure(smtpd={"max_use": "50"},
                   delivery={"connect_timeout": "1s"})
    inst.add_user("alice@example.org", "pw")
    inst.start_smtpd()
    for n in range(12):
        # every third has a remote recipient nobody answers for
        rcpts = ["alice@example.org"] + (["bob@nowhere.invalid"]
                                         if n % 3 == 0 else [])
        one_session(inst, rcpts)
    wait_for(lambda: len(inst.messages("alice@example.org")) == 12,
             timeout=20)
    pids = session_pids(inst)
    assert len(pids) == 13
    assert len(set(pids)) < 13  # processes were kept and used again
    listener = str(inst.procs[-1].pid)

    def no_zombies():
        kids = subprocess.run(["ps", "-o", "pid=,stat=", "--ppid", listener],
                              capture_output=True, text=True).stdout.split()
        kept = kids[0::2]
        return all(
            "Z" not in subprocess.run(["ps", "-o", "stat=", "--ppid", k],
                                      capture_output=True,
                                      text=True).stdout for k in kept)
    # the remote attempts end (no such domain) and are reaped
    wait_for(no_zombies, timeout=20)
    wait_for(lambda: inst.log_text().count("bob@nowhere.invalid") >= 4,
             timeout=20)
    # each kept process is back in the listener's process group (its
    # local delivery's deadline took it into one of its own), and holds
    # nothing of its sessions open
    group = os.getpgid(int(listener))
    kept = [p for p in set(pids) if alive(p)]
    assert kept
    for p in kept:
        wait_for(lambda: "poll" in open(f"/proc/{p}/wchan").read(),
                 timeout=5)
        assert os.getpgid(int(p)) == group
        fds = [os.readlink(f"/proc/{p}/fd/{n}")
               for n in os.listdir(f"/proc/{p}/fd")]
        assert not any("queue" in f or "spool" in f or "immediate" in f
                       for f in fds), fds


def test_idle_process_ends_after_max_idle(inst):
    inst.configure(smtpd={"max_use": "100", "max_idle": "1s"},
                   main={"delivery": "queue"})
    inst.start_smtpd()
    wait_for(lambda: session_pids(inst), timeout=10)
    pids = session_pids(inst)
    wait_for(lambda: not alive(pids[0]), timeout=10)
    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as s:
        assert s.noop()[0] == 250
    assert session_pids(inst)[-1] != pids[0]


def test_default_is_a_fork_per_connection(inst):
    inst.configure(main={"delivery": "queue"})
    inst.add_user("alice@example.org", "pw")
    inst.start_smtpd()
    for _ in range(4):
        one_session(inst)
    pids = session_pids(inst)
    assert len(pids) == 5
    assert len(set(pids)) == 5


def test_listener_stop_ends_idle_processes(inst):
    inst.configure(smtpd={"max_use": "100"}, main={"delivery": "queue"})
    inst.add_user("alice@example.org", "pw")
    inst.start_smtpd()
    one_session(inst)
    kept = session_pids(inst)[-1]
    wait_for(lambda: "poll" in open(f"/proc/{kept}/wchan").read(), timeout=5)
    inst.stop()
    wait_for(lambda: not alive(kept), timeout=10)
    assert os.path.exists(inst.dir / "log")


def test_kept_process_keeps_no_descriptor(inst):
    """What a kept process has open before its next client is the same
    after one session and after ten: nothing of a session stays open."""
    inst.configure(smtpd={"max_use": "50", "max_connections": "1"},
                   main={"delivery": "queue"})
    inst.add_user("alice@example.org", "pw")
    inst.start_smtpd()

    def fds(pid):
        d = f"/proc/{pid}/fd"
        return sorted(os.readlink(f"{d}/{n}") for n in os.listdir(d))

    one_session(inst)
    pid = session_pids(inst)[-1]
    # the listener has it back (max_connections 1: the next client gets
    # in only then), and it waits for its next connection
    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as s:
        assert s.noop()[0] == 250
    # waiting: in ppoll, with the connection's socket closed
    wait_for(lambda: "poll" in open(f"/proc/{pid}/wchan").read(), timeout=5)
    before = fds(pid)
    for _ in range(10):
        one_session(inst)
    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as s:
        assert s.noop()[0] == 250
    assert set(session_pids(inst)[1:]) == {pid}
    wait_for(lambda: fds(pid) == before, timeout=5)
    assert not any("queue" in f or "spool" in f or "accounts" in f
                   for f in before)


def raw_session(port, lines, quit=True):
    """A session by hand: LINES sent one by one (each reply read), then
    QUIT, or (not QUIT) the connection simply closed."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    f = s.makefile("rb")
    assert f.readline().startswith(b"220 ")
    for line in lines + ([b"QUIT"] if quit else []):
        s.sendall(line + b"\r\n")
        while True:
            reply = f.readline()
            assert reply[:1] in (b"2", b"3", b"4", b"5"), reply
            if reply[3:4] != b"-":
                break
    f.close()
    s.close()


def test_unclean_sessions_end_their_process(inst):
    """Only a session that ended by QUIT with everything it sent parsed
    lets its process serve on: one whose client simply went, or that
    sent a line refused unparsed (too long: it could have been an AUTH),
    ends it."""
    inst.configure(smtpd={"max_use": "10", "max_connections": "1"},
                   main={"delivery": "queue"})
    inst.start_smtpd()
    port = inst.smtp_port
    raw_session(port, [b"EHLO a"])                    # kept
    raw_session(port, [b"EHLO b"], quit=False)        # same, then ends
    raw_session(port, [b"EHLO c"])                    # a new one, kept
    raw_session(port, [b"NOOP " + b"x" * 5000])       # same, then ends
    raw_session(port, [b"EHLO d"])                    # a new one
    pids = session_pids(inst)
    assert runs(pids) == [1, 2, 2, 1]


def test_tls_and_submission_sessions_end_their_process(inst):
    """GnuTLS's buffers held a TLS session's plaintext: that process
    ends; so does every process of the submission port."""
    _, ca, cert, key = tls_certs.make()
    inst.configure(smtpd={"max_use": "10", "max_connections": "1"},
                   main={"delivery": "queue"},
                   tls={"certificate": str(cert), "key": str(key)})
    inst.start_smtpd()
    ctx = ssl.create_default_context(cafile=str(ca))
    raw_session(inst.smtp_port, [b"EHLO a"])
    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as s:
        s.starttls(context=ctx)
        assert s.ehlo("b.example")[0] == 250
    raw_session(inst.smtp_port, [b"EHLO c"])
    pids = session_pids(inst)
    assert runs(pids) == [1, 2, 1]
    sub = inst.free_port()
    proc = subprocess.Popen([inst.bin("smtpd"), "--listen",
                             f"127.0.0.1:{sub}", "--submission"],
                            env=inst.env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    inst.procs.append(proc)
    wait_port(sub)
    for _ in range(3):
        raw_session(sub, [b"EHLO s"])
    later = session_pids(inst)[4:]  # the probe's and the three
    assert len(later) == 4 and len(set(later)) == 4
