"""Peers without an IP address: smtpd and pop3d started on a connected
AF_UNIX socket pair (what systemd's ListenStream=/path with Accept=yes, a
local proxy or ssh hand them) are neither loopback nor in relay_networks,
so they may not relay and may not send passwords in plaintext. sendmail
-bs, a pipe to the local program that ran it, keeps its own rules."""
import base64
import os
import socket
import subprocess

import pytest

MSG = b"Subject: unix\r\n\r\nhi\r\n"


def replies(f, n):
    """N whole replies (multi-line ones joined), as lists of lines."""
    out = []
    for _ in range(n):
        lines = []
        while True:
            line = f.readline()
            assert line, "connection closed"
            lines.append(line)
            if line[3:4] != b"-":
                break
        out.append(lines)
    return out


class Session:
    """A daemon serving one session on the other end of a socketpair."""

    def __init__(self, inst, name):
        ours, theirs = socket.socketpair()
        self.proc = subprocess.Popen([inst.bin(name)], stdin=theirs,
                                     stdout=theirs, env=inst.env())
        theirs.close()
        ours.settimeout(10)
        self.sock = ours
        self.f = ours.makefile("rb")

    def say(self, line, n=1):
        self.sock.sendall(line + b"\r\n")
        return replies(self.f, n)

    def close(self):
        self.f.close()
        self.sock.close()
        assert self.proc.wait(timeout=10) == 0


@pytest.fixture
def unix(inst):
    inst.configure(main={"delivery": "queue"})
    inst.add_user("alice@example.org", "wonderland")
    return inst


def auth_plain():
    return b"AUTH PLAIN " + base64.b64encode(b"\0alice@example.org\0wonderland")


def queued(inst):
    return sorted((inst.queue / "env").iterdir())


def activated_smtpd(inst, tmp_path):
    """smtpd under socket activation (LISTEN_FDS) on an AF_UNIX listening
    socket, as systemd's ListenStream=/path with Accept=no: its path."""
    path = str(tmp_path / "smtp.sock")
    lsock = socket.socket(socket.AF_UNIX)
    lsock.bind(path)
    lsock.listen(8)
    os.set_inheritable(lsock.fileno(), True)
    p = subprocess.Popen(
        ["bash", "-c",
         f'exec 3<&{lsock.fileno()}; LISTEN_PID=$$ LISTEN_FDS=1 exec "$0"',
         inst.bin("smtpd")], env=inst.env(), pass_fds=[lsock.fileno()])
    inst.procs.append(p)
    lsock.close()
    return path


def test_smtpd_unix_peer_is_not_trusted(unix):
    s = Session(unix, "smtpd")
    assert replies(s.f, 1)[0][0].startswith(b"220 ")
    (ehlo,) = s.say(b"EHLO client")
    assert not any(b"AUTH" in l for l in ehlo)
    assert s.say(auth_plain())[0][0].startswith(b"538 5.7.11 ")
    assert s.say(b"MAIL FROM:<a@example.com>")[0][0].startswith(b"250 ")
    (rcpt,) = s.say(b"RCPT TO:<victim@elsewhere.test>")
    assert rcpt[0].startswith(b"554 5.7.1 ")
    # a local recipient is still welcome: this is an ordinary client
    assert s.say(b"RCPT TO:<alice@example.org>")[0][0].startswith(b"250 ")
    assert s.say(b"DATA")[0][0].startswith(b"354 ")
    s.sock.sendall(MSG + b".\r\n")
    assert replies(s.f, 1)[0][0].startswith(b"250 ")
    s.say(b"QUIT")
    s.close()
    (env,) = queued(unix)
    assert b"elsewhere.test" not in env.read_bytes()
    data = (unix.queue / "msg" / env.name).read_bytes()
    assert data.startswith(b"Received: from client (local)\r\n")


def test_smtpd_socket_activation_on_a_unix_socket(unix, tmp_path):
    """systemd's ListenStream=/path, Accept=no: the accept loop's children
    see no IP address either."""
    path = activated_smtpd(unix, tmp_path)
    with socket.socket(socket.AF_UNIX) as c:
        c.settimeout(10)
        c.connect(path)
        f = c.makefile("rb")
        assert replies(f, 1)[0][0].startswith(b"220 ")
        c.sendall(b"EHLO client\r\n" + auth_plain() +
                  b"\r\nMAIL FROM:<a@example.com>\r\n"
                  b"RCPT TO:<victim@elsewhere.test>\r\nQUIT\r\n")
        ehlo, auth, mail, rcpt, quit = replies(f, 5)
        assert not any(b"AUTH" in l for l in ehlo)
        assert rcpt[0].startswith(b"554 5.7.1 ")
        assert auth[0].startswith(b"538 5.7.11 ")
        f.close()


def test_unix_peers_are_not_one_client(unix, tmp_path):
    """Peers without an address are not counted as one client against
    max_connections_per_ip (one of them could lock out all the others);
    max_connections still bounds them."""
    unix.configure(smtpd={"max_connections_per_ip": "2",
                          "max_connections": "4"})
    path = activated_smtpd(unix, tmp_path)
    clients = []
    try:
        for _ in range(4):
            c = socket.socket(socket.AF_UNIX)
            c.settimeout(10)
            c.connect(path)
            clients.append(c)
            assert c.makefile("rb").readline().startswith(b"220 ")
    finally:
        for c in clients:
            c.close()


def test_smtpd_unix_peer_trusted_when_configured(unix):
    unix.configure(smtpd={"trust_local_socket": "yes"})
    s = Session(unix, "smtpd")
    replies(s.f, 1)
    (ehlo,) = s.say(b"EHLO client")
    assert any(b"AUTH PLAIN" in l for l in ehlo)
    s.say(b"MAIL FROM:<a@example.com>")
    assert s.say(b"RCPT TO:<x@elsewhere.test>")[0][0].startswith(b"250 ")
    s.say(b"QUIT")
    s.close()


def test_sendmail_bs_still_relays(unix):
    # run as root here: a trusted local program, which may relay
    session = (b"EHLO localhost\r\nMAIL FROM:<root@example.org>\r\n"
               b"RCPT TO:<someone@elsewhere.test>\r\nDATA\r\n" + MSG +
               b".\r\nQUIT\r\n")
    proc = unix.run("sendmail", "-bs", input=session)
    out = proc.stdout.decode()
    assert proc.returncode == 0 and "250 2.1.5" in out and "250 2.0.0" in out
    (env,) = queued(unix)
    assert b"someone@elsewhere.test" in env.read_bytes()


def test_pop3d_unix_peer_no_plaintext_password(unix):
    s = Session(unix, "pop3d")
    assert s.f.readline().startswith(b"+OK")
    s.sock.sendall(b"USER alice@example.org\r\n")
    assert s.f.readline().startswith(b"-ERR [AUTH] ")
    s.sock.sendall(b"QUIT\r\n")
    assert s.f.readline().startswith(b"+OK")
    s.close()
