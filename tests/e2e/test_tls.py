"""TLS and AUTH end to end: STARTTLS, STLS, implicit TLS, SMTP AUTH and
submission, with smtplib, poplib, swaks and curl; outbound STARTTLS from
runq to an aiosmtpd that offers it."""
import base64
import os
import smtplib
import socket
import ssl
import subprocess
import poplib

import pytest
from aiosmtpd.controller import Controller

import tls_certs
from util import free_port, wait_for

MSG = b"From: alice@example.org\r\nSubject: tls\r\n\r\nover TLS\r\n"


def client_context(ca):
    ctx = ssl.create_default_context(cafile=str(ca))
    return ctx


@pytest.fixture
def tls(inst):
    _, ca, cert, key = tls_certs.make()
    inst.configure(tls={"certificate": str(cert), "key": str(key)})
    inst.add_user("alice@example.org", "wonderland")
    inst.add_user("bob@example.org", "builder")
    inst.add_alias("postmaster: alice@example.org")
    inst.ca = ca
    return inst


def test_starttls_auth_send(tls):
    inst = tls
    inst.start_smtpd()
    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as s:
        code, ehlo = s.ehlo("client.example.com")
        assert b"STARTTLS" in ehlo
        s.starttls(context=client_context(inst.ca))
        code, ehlo = s.ehlo("client.example.com")
        assert b"STARTTLS" not in ehlo  # not offered twice
        assert b"AUTH PLAIN LOGIN" in ehlo
        s.login("alice@example.org", "wonderland")
        s.sendmail("alice@example.org", ["bob@example.org"], MSG)
    text = wait_for(lambda: inst.messages("bob@example.org"))[0].read_bytes()
    assert b"with ESMTPSA id" in text
    assert "TLS from [127.0.0.1]" in inst.log_text()


def ehlo_starttls(raw, after=b"", before=lambda: None):
    """EHLO and STARTTLS on a plain socket, up to STARTTLS's 220: AFTER
    rides in the same packet as STARTTLS, BEFORE is called just before
    STARTTLS is sent."""
    f = raw.makefile("rb")
    assert f.readline().startswith(b"220 ")
    raw.sendall(b"EHLO x\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    before()
    raw.sendall(b"STARTTLS\r\n" + after)
    assert f.readline().startswith(b"220 ")
    f.close()


def test_starttls_injection_discarded(tls):
    inst = tls
    inst.start_smtpd()
    raw = socket.create_connection(("127.0.0.1", inst.smtp_port), timeout=30)
    # the NOOP rides in the same packet as STARTTLS (CVE-2011-0411)
    ehlo_starttls(raw, after=b"NOOP\r\n")
    ctx = client_context(inst.ca)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    s.sendall(b"EHLO x\r\n")
    first = s.recv(4096)
    # the first answer inside TLS is EHLO's, never the injected NOOP's
    assert first.startswith(b"250-"), first
    s.close()


def test_starttls_forgets_auth(tls):
    """RFC 3207 4.2: AUTH given in plaintext (here allowed: loopback) does
    not survive STARTTLS. Loopback is left out of relay_networks so that
    only the identity could allow the relay."""
    inst = tls
    inst.configure(smtpd={"relay_networks": "10.0.0.0/8"},
                   main={"delivery": "queue"})
    inst.start_smtpd()
    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as s:
        s.ehlo("client.example.com")
        s.login("alice@example.org", "wonderland")
        s.starttls(context=client_context(inst.ca))
        code, ehlo = s.ehlo("client.example.com")
        assert b"AUTH PLAIN LOGIN" in ehlo  # offered again: not logged in
        assert s.mail("alice@example.org")[0] == 250
        code, text = s.rcpt("someone@elsewhere.test")
        assert code == 554 and text.startswith(b"5.7.1 ")
        s.rset()
    assert not inst.queued()


def test_implicit_tls_smtp(tls):
    inst = tls
    inst.start_smtpd("--tls")
    with smtplib.SMTP_SSL("127.0.0.1", inst.smtp_port, timeout=30,
                          context=client_context(inst.ca)) as s:
        code, ehlo = s.ehlo("c")
        assert b"STARTTLS" not in ehlo
        s.sendmail("x@example.com", ["alice@example.org"], MSG)
    text = wait_for(lambda: inst.messages("alice@example.org"))[0].read_bytes()
    assert b"with ESMTPS id" in text


def test_submission_requires_auth_and_own_sender(tls):
    inst = tls
    inst.start_smtpd("--submission")
    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as s:
        s.ehlo("c")
        code, text = s.mail("alice@example.org")
        assert code == 530 and text.startswith(b"5.7.0")
        s.rset()
        s.starttls(context=client_context(inst.ca))
        s.ehlo("c")
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.login("alice@example.org", "wrong")
        assert e.value.smtp_code == 535
        s.login("alice@example.org", "wonderland")
        code, text = s.mail("bob@example.org")
        assert code == 553 and b"not owned" in text
        s.rset()
        # an alias of the user is the user's
        assert s.mail("postmaster@example.org")[0] == 250
        assert s.rcpt("someone@elsewhere.test")[0] == 250  # may relay
        s.rset()
        assert s.mail("alice@example.org")[0] == 250


def test_auth_login_and_failures_limited(tls):
    inst = tls
    inst.start_smtpd()
    s = socket.create_connection(("127.0.0.1", inst.smtp_port), timeout=30)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"EHLO c\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    s.sendall(b"AUTH LOGIN\r\n")
    assert f.readline().startswith(b"334 VXNlcm5hbWU6")
    s.sendall(base64.b64encode(b"bob@example.org") + b"\r\n")
    assert f.readline().startswith(b"334 UGFzc3dvcmQ6")
    s.sendall(base64.b64encode(b"builder") + b"\r\n")
    assert f.readline().startswith(b"235 ")
    s.close()
    s = socket.create_connection(("127.0.0.1", inst.smtp_port), timeout=30)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"EHLO c\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    bad = base64.b64encode(b"\0bob@example.org\0nope")
    for _ in range(3):
        s.sendall(b"AUTH PLAIN " + bad + b"\r\n")
        assert f.readline().startswith(b"535 5.7.8")
    assert f.readline().startswith(b"421 ")


def test_swaks_tls_auth(tls):
    inst = tls
    inst.start_smtpd()
    proc = subprocess.run(
        ["swaks", "--server", "127.0.0.1:%d" % inst.smtp_port, "--tls",
         "--auth", "PLAIN", "--auth-user", "alice@example.org",
         "--auth-password", "wonderland", "--from", "alice@example.org",
         "--to", "bob@example.org", "--tls-verify", "--tls-ca-path",
         str(inst.ca), "--tls-sni", "localhost"],
        capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    wait_for(lambda: inst.messages("bob@example.org"))


def test_curl_ssl_reqd_smtp_and_pop3(tls, tmp_path):
    inst = tls
    inst.start_smtpd()
    inst.start_pop3d()
    mail = tmp_path / "m.txt"
    mail.write_bytes(MSG)
    proc = subprocess.run(
        ["curl", "-s", "--ssl-reqd", "--cacert", str(inst.ca),
         "--resolve", "localhost:%d:127.0.0.1" % inst.smtp_port,
         "smtp://localhost:%d" % inst.smtp_port, "--mail-from",
         "alice@example.org", "--mail-rcpt", "bob@example.org",
         "-u", "alice@example.org:wonderland", "-T", str(mail)],
        capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    wait_for(lambda: inst.messages("bob@example.org"))
    proc = subprocess.run(
        ["curl", "-s", "--ssl-reqd", "--cacert", str(inst.ca),
         "--resolve", "localhost:%d:127.0.0.1" % inst.pop3_port,
         "-u", "bob@example.org:builder",
         "pop3://localhost:%d/1" % inst.pop3_port],
        capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert b"over TLS" in proc.stdout


def test_pop3_stls_and_implicit(tls):
    inst = tls
    inst.run("deliver", "alice@example.org", input=MSG, check=True)
    inst.start_pop3d()
    p = poplib.POP3("127.0.0.1", inst.pop3_port, timeout=30)
    assert "STLS" in p.capa()
    p.stls(context=client_context(inst.ca))
    assert "STLS" not in p.capa()
    p.user("alice@example.org")
    p.pass_("wonderland")
    assert p.stat()[0] == 1
    p.quit()
    port = inst.free_port()
    inst.pop3_port = port
    inst.start_pop3d("--tls")
    p = poplib.POP3_SSL("127.0.0.1", port, timeout=30,
                        context=client_context(inst.ca))
    p.user("alice@example.org")
    p.pass_("wonderland")
    assert b"over TLS" in b"\n".join(p.retr(1)[1])
    p.quit()


def test_bad_certificate_files_are_config_errors(inst, tmp_path):
    inst.configure(tls={"certificate": str(tmp_path / "missing.pem"),
                        "key": str(tmp_path / "missing.key")})
    proc = subprocess.run([inst.bin("smtpd"), "--listen", "127.0.0.1:%d" % free_port()],
                          env=inst.env(), capture_output=True, timeout=30)
    assert proc.returncode == 78 and b"missing.pem" in proc.stderr
    _, ca, cert, key = tls_certs.make()
    inst.configure(tls={"certificate": str(cert), "key": str(ca)})
    proc = subprocess.run([inst.bin("pop3d"), "--listen", "127.0.0.1:%d" % free_port()],
                          env=inst.env(), capture_output=True, timeout=30)
    assert proc.returncode == 78 and b"[tls]" in proc.stderr


def children(pid):
    """The pids whose parent is PID."""
    kids = []
    for d in os.listdir("/proc"):
        try:
            stat = open(f"/proc/{d}/stat").read()
        except (OSError, ValueError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(d))
    return kids


def maps_gnutls(pid):
    """Does process PID map libgnutls (or one of the libraries only it
    pulls in)?"""
    maps = open(f"/proc/{pid}/maps").read()
    return any(lib in maps for lib in ("libgnutls", "libp11-kit", "libhogweed"))


def session_child(listener):
    """The one session child of LISTENER (wait_port's probe has gone)."""
    return wait_for(lambda: len(children(listener.pid)) == 1
                    and children(listener.pid))[0]


def test_gnutls_not_mapped_without_tls(inst):
    """Issue 14: without [tls], neither a listener nor its sessions map
    GnuTLS (it is not linked: tls.c loads it when TLS is needed)."""
    listener = inst.start_smtpd()
    assert not maps_gnutls(listener.pid)
    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as s:
        assert b"STARTTLS" not in s.ehlo("client.example.com")[1]
        assert not maps_gnutls(session_child(listener))
    pop3d = inst.start_pop3d()
    p = poplib.POP3("127.0.0.1", inst.pop3_port, timeout=30)
    assert "STLS" not in p.capa()
    assert not maps_gnutls(session_child(pop3d))
    p.quit()
    assert not maps_gnutls(pop3d.pid)


def test_tls_listener_loads_gnutls_once(tls):
    """With [tls], a listener parses the files at start, so its children
    inherit GnuTLS instead of each loading it at STARTTLS (README: that
    would cost a STARTTLS session ~15 times what a plain one saves)."""
    inst = tls
    listener = inst.start_smtpd()
    assert maps_gnutls(listener.pid)
    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as s:
        s.starttls(context=client_context(inst.ca))
        assert s.noop()[0] == 250


def inetd(inst, name, *args):
    """NAME started as inetd would: one session on a socket as fds 0
    and 1. Returns the process and our end of the socket."""
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen([inst.bin(name), *args], stdin=theirs,
                            stdout=theirs, stderr=subprocess.PIPE,
                            env=inst.env())
    theirs.close()
    inst.procs.append(proc)
    return proc, ours


def test_inetd_session_maps_gnutls_at_starttls(tls):
    """The inetd style: GnuTLS is loaded at STARTTLS, not at start, and
    the key read at start (as root) is parsed then."""
    inst = tls
    proc, sock = inetd(inst, "smtpd")

    def not_yet():
        assert not maps_gnutls(proc.pid)

    ehlo_starttls(sock, before=not_yet)
    s = client_context(inst.ca).wrap_socket(sock, server_hostname="localhost")
    assert maps_gnutls(proc.pid)
    s.sendall(b"EHLO x\r\n")
    assert s.recv(4096).startswith(b"250-")
    s.sendall(b"QUIT\r\n")
    assert proc.wait(timeout=30) == 0
    proc, sock = inetd(inst, "pop3d")
    f = sock.makefile("rb")
    assert f.readline().startswith(b"+OK")
    sock.sendall(b"CAPA\r\n")
    capa = [f.readline()]
    while capa[-1] != b".\r\n":
        capa.append(f.readline())
    assert b"STLS\r\n" in capa
    assert not maps_gnutls(proc.pid)
    sock.sendall(b"QUIT\r\n")
    assert f.readline().startswith(b"+OK")
    assert proc.wait(timeout=30) == 0


def test_inetd_bad_key_reported_at_starttls(inst):
    """In the inetd style a key that does not parse is found at STARTTLS:
    the plain session works, STARTTLS fails and the log names the file."""
    d, _, cert, _ = tls_certs.make()
    inst.configure(tls={"certificate": str(cert), "key": str(d / "ca.key")})
    proc, sock = inetd(inst, "smtpd")
    f = sock.makefile("rb")
    assert f.readline().startswith(b"220 ")
    sock.sendall(b"EHLO x\r\nSTARTTLS\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    assert f.readline().startswith(b"220 ")
    sock.sendall(b"\x16\x03\x01\x00\x05hello")
    try:
        assert f.read() == b""  # closed
    except ConnectionResetError:  # closed, our hello unread
        pass
    proc.wait(timeout=30)
    assert wait_for(lambda: "ca.key does not match" in inst.log_text())


class Sink:
    def __init__(self):
        self.got = []

    async def handle_DATA(self, server, session, envelope):
        self.got.append((envelope.rcpt_tos, session.ssl is not None))
        return "250 2.0.0 ok"


def outbound(inst, tls_server, **delivery):
    _, ca, cert, key = tls_certs.make()
    port = free_port()
    kwargs = {}
    if tls_server:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(cert), str(key))
        kwargs["tls_context"] = ctx
    sink = Sink()
    ctl = Controller(sink, hostname="127.0.0.1", port=port, **kwargs)
    ctl.start()
    inst.configure(main={"delivery": "queue"},
                   routes={"remote.test": "127.0.0.1:%d" % port},
                   delivery=delivery)
    inst.add_user("alice@example.org", "pw")
    inst.send(["bob@remote.test"], MSG, sender="alice@example.org")
    proc = inst.run("runq", "-f")
    ctl.stop()
    assert proc.returncode == 0, proc.stderr
    return sink


def test_runq_starttls_opportunistic(inst):
    sink = outbound(inst, True)
    assert sink.got == [(["bob@remote.test"], True)]
    assert "tls=unverified" in inst.log_text()


def test_runq_starttls_verified(inst):
    _, ca, _, _ = tls_certs.make()
    sink = outbound(inst, True, tls_ca_file=str(ca),
                    require_verified_tls="remote.test")
    assert sink.got == [(["bob@remote.test"], True)]
    assert "tls=verified" in inst.log_text()


def test_runq_required_tls_defers_without_starttls(inst):
    sink = outbound(inst, False, require_tls="remote.test")
    assert sink.got == []
    (entry,) = inst.mailq_json()
    rcpt = entry["recipients"][0]
    assert rcpt["state"] == "pending" and rcpt["dsn"] == "4.7.5"
    assert "does not offer STARTTLS" in rcpt["last_error"]
