"""imapd's socket side end to end (src/imap-serve.c, bin/imapd.c): the
greeting, STARTTLS (and what was pipelined after it), implicit TLS,
LOGINDISABLED for a client that is not loopback, the autologout timers
(libfaketime runs imapd's clock fast), IDLE woken by a delivery, the
per-account and per-address connection limits, inetd mode under tcpserver,
LISTEN_FDS, and the systemd units. The protocol itself is tested by the
test_imap_*.py files."""
import imaplib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import time

import pytest

import tls_certs
from conftest import RUN_USER
from util import free_port, wait_for, wait_port

FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
MSG = (b"From: sender@example.com\r\nTo: alice@example.org\r\n"
       b"Subject: imapd serve\r\nMessage-ID: <serve@example.com>\r\n\r\n"
       b"Hello over IMAP.\r\n")


def start_imapd(inst, *args, env=None, port=None):
    port = port or inst.free_port()
    inst._start("imapd", port, args, env)
    return port


def add_user(inst, address, password):
    """What mailuser add does (tested elsewhere), with a SHA-512 hash of
    5000 rounds instead of yescrypt: a login then costs milliseconds, not
    0.4 s, which the tests that log in twenty times need."""
    digest = subprocess.run(["openssl", "passwd", "-6", password], check=True,
                            capture_output=True, text=True).stdout.strip()
    with open(inst.dir / "accounts", "a") as f:
        f.write(f"{address}:{digest}\n")
    for sub in ("tmp", "new", "cur"):
        (inst.maildir(address) / sub).mkdir(parents=True, exist_ok=True)
    inst._own()


@pytest.fixture
def imap(inst):
    add_user(inst, "alice@example.org", "secret")
    inst.run("deliver", "alice@example.org", input=MSG, check=True)
    inst.imap_port = start_imapd(inst)
    return inst


def connect(inst, port=None):
    return imaplib.IMAP4("127.0.0.1", port or inst.imap_port, timeout=30)


def login(inst, port=None):
    c = connect(inst, port)
    c.login("alice@example.org", "secret")
    return c


def raw(port, host="127.0.0.1"):
    s = socket.create_connection((host, port), timeout=30)
    return s, s.makefile("rb")


def test_greeting_login_fetch_logout(imap):
    c = connect(imap)
    assert c.welcome.startswith(b"* OK")
    assert "IMAP4REV1" in c.capabilities and "IDLE" in c.capabilities
    # [imapd] max_message_size follows [smtpd]'s (50M) unless set
    assert "APPENDLIMIT=52428800" in c.capabilities
    # loopback without TLS configured: login offered, STARTTLS not
    assert "LOGINDISABLED" not in c.capabilities
    assert "STARTTLS" not in c.capabilities
    typ, _ = c.login("alice@example.org", "secret")
    assert typ == "OK"
    typ, data = c.select("INBOX")
    assert typ == "OK" and data == [b"1"]
    typ, data = c.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK" and b"Hello over IMAP." in data[0][1]
    assert c.logout()[0] == "BYE"
    log = wait_for(lambda: "logout <alice@example.org> from [127.0.0.1]"
                   in imap.log_text() and imap.log_text())
    assert "login ok for <alice@example.org> from [127.0.0.1]" in log


def test_failed_login_paused_and_counted(imap):
    """A failed login is answered after a pause, and counted by
    ratelimit.c: past [main] max_auth_failures even the right password
    is refused without being looked at."""
    imap.configure(main={"max_auth_failures": "2"})
    port = start_imapd(imap)
    c = connect(imap, port)
    for _ in range(2):
        t = time.monotonic()
        with pytest.raises(imaplib.IMAP4.error,
                           match="AUTHENTICATIONFAILED"):
            c.login("alice@example.org", "wrong")
        assert time.monotonic() - t >= 0.9  # the AUTH_DELAY pause
    c.shutdown()
    assert "login failed for <alice@example.org> from [127.0.0.1]" in \
        imap.log_text()
    c = connect(imap, port)
    with pytest.raises(imaplib.IMAP4.error, match="UNAVAILABLE"):
        c.login("alice@example.org", "secret")
    c.shutdown()
    assert "login ok" not in imap.log_text()


@pytest.fixture
def tls(inst):
    _, ca, cert, key = tls_certs.make()
    inst.configure(tls={"certificate": cert, "key": key})
    add_user(inst, "alice@example.org", "secret")
    inst.run("deliver", "alice@example.org", input=MSG, check=True)
    inst.imap_port = start_imapd(inst)
    inst.ca = ca
    return inst


def test_starttls_then_login(tls):
    c = connect(tls)
    assert "STARTTLS" in c.capabilities
    c.starttls(ssl.create_default_context(cafile=str(tls.ca)))
    caps = c.capabilities
    assert "STARTTLS" not in caps and "LOGINDISABLED" not in caps, caps
    c.login("alice@example.org", "secret")
    assert c.select("INBOX") == ("OK", [b"1"])
    c.logout()


def test_starttls_drops_pipelined_input(tls):
    """Whatever follows STARTTLS in the same packet is dropped before the
    handshake (CVE-2011-0411): it is never answered inside TLS."""
    s, f = raw(tls.imap_port)
    assert f.readline().startswith(b"* OK")
    s.sendall(b"a STARTTLS\r\nb LOGIN alice@example.org secret\r\n")
    assert f.readline().startswith(b"a OK")
    ctx = ssl.create_default_context(cafile=str(tls.ca))
    t = ctx.wrap_socket(s, server_hostname="localhost")
    tf = t.makefile("rb")
    t.sendall(b"c NOOP\r\n")
    line = tf.readline()
    assert line.startswith(b"c OK"), line
    t.sendall(b"d LOGOUT\r\n")
    assert tf.readline().startswith(b"* BYE")
    t.close()


def test_implicit_tls(tls):
    port = start_imapd(tls, "--tls")
    ctx = ssl.create_default_context(cafile=str(tls.ca))
    c = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx, timeout=30)
    assert "STARTTLS" not in c.capabilities
    assert "LOGINDISABLED" not in c.capabilities
    c.login("alice@example.org", "secret")
    assert c.select("INBOX") == ("OK", [b"1"])
    c.logout()
    # a client that does not speak TLS is dropped, and the listener lives
    s, f = raw(port)
    s.sendall(b"a CAPABILITY\r\n")
    assert f.read(1) in (b"", b"\x15")  # EOF, or a TLS alert record
    s.close()
    imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx, timeout=30).logout()


def non_loopback_address():
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True,
                             text=True).stdout.split()
    except OSError:
        return None
    return next((a for a in out if "." in a and not a.startswith("127.")),
                None)


def test_logindisabled_unless_loopback(tls):
    """A peer without an IP address (a socket pair) and one on a
    non-loopback address see LOGINDISABLED until STARTTLS; [tls]
    plaintext_auth = yes lifts it."""
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen([tls.bin("imapd")], stdin=theirs, stdout=theirs,
                            env=tls.env())
    theirs.close()
    ours.settimeout(10)
    f = ours.makefile("rb")
    greeting = f.readline()
    assert b"LOGINDISABLED" in greeting and b"STARTTLS" in greeting, greeting
    ours.sendall(b"a LOGIN alice@example.org secret\r\n")
    assert f.readline().startswith(b"a NO")
    ours.sendall(b"b LOGOUT\r\n")
    assert f.readline().startswith(b"* BYE")
    f.close()
    ours.close()
    assert proc.wait(timeout=10) == 0
    addr = non_loopback_address()
    if addr is None:
        pytest.fail("no non-loopback IPv4 address on this machine")
    port = free_port(addr)
    proc = subprocess.Popen([tls.bin("imapd"), "--listen", f"{addr}:{port}"],
                            env=tls.env())
    tls.procs.append(proc)
    wait_port(port, addr)
    c = imaplib.IMAP4(addr, port, timeout=30)
    assert "LOGINDISABLED" in c.capabilities
    ctx = ssl.create_default_context(cafile=str(tls.ca))
    ctx.check_hostname = False  # the test certificate names 127.0.0.1
    c.starttls(ctx)
    c.login("alice@example.org", "secret")
    c.logout()
    tls.configure(tls={"plaintext_auth": "yes"})
    port = free_port(addr)
    proc = subprocess.Popen([tls.bin("imapd"), "--listen", f"{addr}:{port}"],
                            env=tls.env())
    tls.procs.append(proc)
    wait_port(port, addr)
    c = imaplib.IMAP4(addr, port, timeout=30)
    assert "LOGINDISABLED" not in c.capabilities
    c.login("alice@example.org", "secret")
    c.logout()


def fast_imapd(inst, rate, *args):
    """imapd with its clocks (and poll's timeouts) RATE times as fast."""
    port = inst.free_port()
    inst._start("imapd", port, args, env={
        "LD_PRELOAD": FAKETIME, "FAKETIME": f"+0 x{rate}",
        # an ASan build must come first in the link order; faketime
        # is loaded before it here
        "ASAN_OPTIONS": "verify_asan_link_order=0:detect_leaks=0"})
    return port


def test_autologout_before_login(imap):
    """3 minutes before login: 0.6 s at 300 times the speed."""
    s, f = raw(fast_imapd(imap, 300))
    assert f.readline().startswith(b"* OK")
    t = time.monotonic()
    line = f.readline()
    assert line.startswith(b"* BYE"), line
    assert f.readline() == b""
    assert 0.3 < time.monotonic() - t < 10


def test_autologout_after_login_and_idle_keepalive(imap):
    """After login the timer is [imapd] timeout (here 30m: 1.8 s at 1000
    times the speed); an IDLE session gets "* OK Still here" every 2
    minutes (0.12 s) and the BYE when the timer runs out."""
    port = fast_imapd(imap, 1000)
    s, f = raw(port)
    f.readline()
    s.sendall(b"a LOGIN alice@example.org secret\r\nb SELECT INBOX\r\n")
    while not f.readline().startswith(b"b OK"):
        pass
    t = time.monotonic()
    s.sendall(b"c IDLE\r\n")
    assert f.readline().startswith(b"+")
    lines = []
    while True:
        line = f.readline()
        if not line:
            break
        lines.append(line)
    took = time.monotonic() - t
    assert lines[-1].startswith(b"* BYE"), lines
    keepalives = [l for l in lines if l.startswith(b"* OK Still here")]
    assert len(keepalives) >= 5, lines
    assert 1 < took < 30


def test_timeout_below_30m_refused(inst):
    inst.configure(imapd={"timeout": "10m"})
    proc = inst.run("imapd", "--listen", f"127.0.0.1:{inst.free_port()}")
    assert proc.returncode == 78
    assert b"[imapd] timeout: shorter than 30m" in proc.stderr


def test_idle_woken_by_delivery(imap):
    c = login(imap)
    c.select("INBOX")
    tag = c._new_tag()
    c.send(tag + b" IDLE\r\n")
    assert c.readline().startswith(b"+")
    time.sleep(0.2)
    t = time.monotonic()
    imap.run("deliver", "alice@example.org", input=MSG, check=True)
    line = c.readline()
    assert line == b"* 2 EXISTS\r\n", line
    assert time.monotonic() - t < 1.5
    c.send(b"DONE\r\n")
    while not (line := c.readline()).startswith(tag):
        assert line.startswith(b"* "), line
    assert line.startswith(tag + b" OK"), line
    c.logout()


def test_idle_without_inotify(imap, tmp_path):
    """When inotify cannot be had (the kernel's per-user limit of
    instances: here a preloaded inotify_init1 failing with EMFILE), IDLE
    looks at the folder every 5 s (0.5 s at 10 times the speed)."""
    if not shutil.which("cc"):
        pytest.fail("no C compiler (scripts/deps installs gcc)")
    src = tmp_path / "noinotify.c"
    src.write_text("#include <errno.h>\n"
                   "int inotify_init1(int flags)\n"
                   "{ (void)flags; errno = EMFILE; return -1; }\n")
    shim = tmp_path / "noinotify.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(shim), str(src)],
                   check=True)
    port = imap.free_port()
    imap._start("imapd", port, [], env={
        "LD_PRELOAD": f"{shim} {FAKETIME}", "FAKETIME": "+0 x10",
        "ASAN_OPTIONS": "verify_asan_link_order=0:detect_leaks=0"})
    c = login(imap, port)
    c.select("INBOX")
    tag = c._new_tag()
    c.send(tag + b" IDLE\r\n")
    assert c.readline().startswith(b"+")
    imap.run("deliver", "alice@example.org", input=MSG, check=True)
    assert c.readline() == b"* 2 EXISTS\r\n"
    c.send(b"DONE\r\n")
    while not (line := c.readline()).startswith(tag):
        pass
    assert line.startswith(tag + b" OK"), line
    c.logout()
    assert "inotify: Too many open files (IDLE looks every 5000 ms)" in \
        imap.log_text()


def test_user_connection_limit(imap):
    """[imapd] max_user_connections (default 20): the 21st login of one
    account is refused; a session that ends frees its slot, one killed
    too."""
    imap.configure(imapd={"max_connections_per_ip": "0"})
    port = start_imapd(imap)
    sessions = [login(imap, port) for _ in range(20)]
    extra = connect(imap, port)
    with pytest.raises(imaplib.IMAP4.error, match="LIMIT"):
        extra.login("alice@example.org", "secret")
    assert "max_user_connections (20) reached" in imap.log_text()
    # made by the session, so after the switch to [main] user
    slots = imap.maildir("alice@example.org") / "pillarbox-imapd.slots"
    assert slots.stat().st_uid == pwd.getpwnam(RUN_USER).pw_uid
    assert slots.stat().st_size == 0
    # another account is not affected
    add_user(imap, "bob@example.org", "builder")
    bob = connect(imap, port)
    bob.login("bob@example.org", "builder")
    bob.logout()
    # the slot is given back when the session's process ends, a moment
    # after its BYE
    sessions.pop().logout()
    login_soon(extra)
    # a session whose client vanishes without a word frees its slot
    victim = sessions.pop()
    victim.sock.shutdown(socket.SHUT_RDWR)
    victim.sock.close()
    again = connect(imap, port)
    login_soon(again)
    for c in sessions + [extra, again]:
        c.logout()


def login_soon(c):
    deadline = time.monotonic() + 10
    while True:
        try:
            c.login("alice@example.org", "secret")
            return
        except imaplib.IMAP4.error as e:
            assert "LIMIT" in str(e) and time.monotonic() < deadline, e
            time.sleep(0.1)


def connect_soon(inst, port):
    deadline = time.monotonic() + 10
    while True:
        try:
            return connect(inst, port)
        except imaplib.IMAP4.error as e:
            assert "UNAVAILABLE" in str(e) and time.monotonic() < deadline, e
            time.sleep(0.1)


def test_per_address_limit_and_message_size(imap):
    imap.configure(imapd={"max_connections_per_ip": "2",
                          "max_message_size": "1K"})
    port = start_imapd(imap)
    # the probe connection of start_imapd counts until its process is
    # reaped: retried until then
    a, b = connect_soon(imap, port), connect_soon(imap, port)
    s, f = raw(port)
    assert f.readline().startswith(b"* BYE [UNAVAILABLE]")
    assert f.readline() == b""
    assert "APPENDLIMIT=1024" in a.capabilities
    a.login("alice@example.org", "secret")
    typ, data = a.append("INBOX", None, None,
                         b"Subject: big\r\n\r\n" + b"x" * 1100 + b"\r\n")
    assert typ == "NO" and b"TOOBIG" in data[0], data
    a.logout()
    b.logout()


def test_imapd_under_tcpserver(imap):
    if not shutil.which("tcpserver"):
        pytest.fail("tcpserver is not installed (scripts/deps installs "
                    "ucspi-tcp)")
    port = imap.free_port()
    proc = subprocess.Popen(["tcpserver", "-q", "127.0.0.1", str(port),
                             imap.bin("imapd")], env=imap.env())
    imap.procs.append(proc)
    wait_port(port)
    c = login(imap, port)
    typ, data = c.select("INBOX")
    assert data == [b"1"]
    typ, data = c.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"imapd serve" in data[0][1]
    c.logout()


def test_imapd_listen_fds(imap):
    """systemd Accept=no: the socket arrives as fd 3 with LISTEN_FDS."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    fd = sock.fileno()
    proc = subprocess.Popen(["bash", "-c",
                             'exec 3<&%d; LISTEN_PID=$$ exec "$0"' % fd,
                             imap.bin("imapd")],
                            env=imap.env({"LISTEN_FDS": "1"}), pass_fds=(fd,))
    imap.procs.append(proc)
    sock.close()
    c = login(imap, port)
    assert c.select("INBOX")[0] == "OK"
    c.logout()


def test_systemd_units_verify(tmp_path):
    units = os.path.join(os.path.dirname(__file__), "..", "..", "scripts",
                         "systemd")
    if not shutil.which("systemd-analyze"):
        pytest.fail("systemd-analyze missing (scripts/deps installs systemd)")
    names = ["imapd.socket", "imaps.socket", "imapd@.service.in",
             "imaps@.service.in"]
    for name in names:
        text = open(os.path.join(units, name)).read()
        (tmp_path / name.removesuffix(".in")).write_text(
            text.replace("@SBINDIR@", "/usr/sbin"))
    files = sorted(str(p) for p in tmp_path.iterdir())
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", *files],
                          capture_output=True, text=True)
    bad = [l for l in proc.stderr.splitlines()
           if l and "is not executable" not in l and "No such file" not in l
           and "not loaded, socket cannot be started" not in l]
    assert bad == [], proc.stderr
    sockets = {n: open(os.path.join(units, n)).read()
               for n in ("imapd.socket", "imaps.socket")}
    assert "ListenStream=143" in sockets["imapd.socket"]
    assert "ListenStream=993" in sockets["imaps.socket"]
    assert "imapd --tls" in open(os.path.join(units,
                                              "imaps@.service.in")).read()
