"""pop3d end to end: Python's poplib, curl and fetchmail against the built
pop3d on loopback, reading Maildirs filled by the built deliver."""
import os
import poplib
import socket
import subprocess
import threading
import time

import pytest

from util import wait_for


def msg(n, extra=b""):
    return (b"From: sender@example.com\r\nTo: alice@example.org\r\n"
            b"Subject: message %d\r\n\r\nline one of %d\r\n.dotted line\r\n"
            b"line three\r\n%s" % (n, n, extra))


@pytest.fixture
def pop(inst):
    inst.add_user("alice@example.org", "secret")
    inst.add_user("bob@example.org", "hunter2")
    for n in range(1, 4):
        inst.run("deliver", "alice@example.org", input=msg(n), check=True)
    inst.start_pop3d()
    return inst


def login(inst, user="alice@example.org", password="secret"):
    p = poplib.POP3("127.0.0.1", inst.pop3_port, timeout=30)
    p.user(user)
    p.pass_(password)
    return p


def test_capa_and_greeting(pop):
    p = poplib.POP3("127.0.0.1", pop.pop3_port, timeout=30)
    assert p.getwelcome().startswith(b"+OK ")
    caps = p.capa()
    for cap in ("TOP", "UIDL", "USER", "RESP-CODES", "AUTH-RESP-CODE",
                "PIPELINING", "UTF8", "IMPLEMENTATION"):
        assert cap in caps, caps
    assert caps["SASL"] == ["PLAIN"]
    p.quit()


def test_stat_list_retr_sizes(pop):
    p = login(pop)
    count, total = p.stat()
    assert count == 3
    resp, listing, _ = p.list()
    sizes = {int(a): int(b) for a, b in (l.split() for l in listing)}
    assert sum(sizes.values()) == total
    for n in range(1, 4):
        resp, lines, octets = p.retr(n)
        # what poplib read: each line with its CRLF, the stuffing undone:
        # the message's octets, which is what LIST says
        assert octets == sizes[n]
        text = b"\r\n".join(lines) + b"\r\n"
        assert text.endswith(msg(n).split(b"\r\n\r\n", 1)[1])
        assert b"Delivered-To: alice@example.org" in text
        assert int(p.list(n).split()[2]) == sizes[n]
    p.quit()


def test_retr_size_matches_raw_bytes(pop):
    """Counts the raw octets of RETR's response body on the socket."""
    s = socket.create_connection(("127.0.0.1", pop.pop3_port))
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"USER alice@example.org\r\nPASS secret\r\nLIST 2\r\nRETR 2\r\n")
    assert f.readline().startswith(b"+OK")
    assert f.readline().startswith(b"+OK")
    size = int(f.readline().split()[2])
    assert f.readline().startswith(b"+OK %d octets" % size)
    body = b""
    while True:
        line = f.readline()
        if line == b".\r\n":
            break
        body += line[1:] if line.startswith(b"..") else line
    # the octets sent, less the byte-stuffing of RFC 1939 3
    assert len(body) == size
    s.sendall(b"QUIT\r\n")
    assert f.readline().startswith(b"+OK")
    s.close()


def test_top_uidl_noop(pop):
    p = login(pop)
    resp, lines, _ = p.top(1, 1)
    assert b"Subject: message 1" in lines
    assert lines[-1] == b"line one of 1"
    resp, lines, _ = p.top(1, 0)
    assert lines[-1] == b""
    resp, uids, _ = p.uidl()
    uids = [u.split()[1] for u in uids]
    assert len(set(uids)) == 3
    assert p.uidl(2).split()[2] == uids[1]
    assert p.noop().startswith(b"+OK")
    p.quit()
    # stable across sessions (after the retrieved ones moved to cur/)
    p = login(pop)
    assert [u.split()[1] for u in p.uidl()[1]] == uids
    p.quit()


def test_dele_rset(pop):
    p = login(pop)
    p.dele(1)
    assert p.stat()[0] == 2
    with pytest.raises(poplib.error_proto):
        p.retr(1)
    with pytest.raises(poplib.error_proto):
        p.dele(1)
    p.rset()
    assert p.stat()[0] == 3
    p.quit()
    assert len(pop.messages("alice@example.org")) == 3


def test_dele_quit(pop):
    p = login(pop)
    p.retr(3)
    p.dele(1)
    p.dele(2)
    assert p.quit().startswith(b"+OK")
    left = pop.messages("alice@example.org")
    assert len(left) == 1
    # the retrieved message moved to cur/ with the seen flag and sizes
    assert left[0].parent.name == "cur" and left[0].name.endswith(":2,S")
    assert ",W=" in left[0].name


def test_dele_then_dropped_connection(pop):
    s = socket.create_connection(("127.0.0.1", pop.pop3_port))
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"USER alice@example.org\r\nPASS secret\r\nDELE 1\r\nDELE 2\r\n")
    for _ in range(4):
        assert f.readline().startswith(b"+OK")
    f.close()
    s.close()
    # the lock is released when the session process notices
    wait_for(lambda: not (pop.maildir("alice@example.org") / ".pop3.lock").exists())
    assert len(pop.messages("alice@example.org")) == 3


def test_second_session_in_use(pop):
    p = login(pop)
    q = poplib.POP3("127.0.0.1", pop.pop3_port, timeout=30)
    q.user("alice@example.org")
    with pytest.raises(poplib.error_proto) as e:
        q.pass_("secret")
    assert b"[IN-USE]" in e.value.args[0]
    p.quit()
    # once the first has quit, the mailbox is free again
    r = login(pop)
    r.quit()


def test_killed_session_lock_is_recovered(pop):
    """A session killed with SIGKILL leaves its lock; its owner is dead,
    so the next login breaks it."""
    import signal
    p = login(pop)
    p.dele(1)
    lock = pop.maildir("alice@example.org") / ".pop3.lock"
    host, pid, _ = lock.read_text().split()
    assert host == socket.gethostname()
    os.kill(int(pid), signal.SIGKILL)
    # reaped by the listener (a zombie still counts as alive)
    wait_for(lambda: not os.path.exists("/proc/%s" % pid))
    assert lock.exists()
    q = login(pop)
    assert q.stat()[0] == 3  # the killed session's DELE never happened
    q.quit()


def test_message_moved_by_local_mua(pop):
    """A local MUA reading the same Maildir moves and flags messages
    under a session: RETR and DELE still reach them."""
    p = login(pop)
    md = pop.maildir("alice@example.org")
    for f in (md / "new").iterdir():
        f.rename(md / "cur" / (f.name + ":2,S"))
    resp, lines, _ = p.retr(2)
    assert b"Subject: message 2" in lines
    p.dele(1)
    p.quit()
    assert len(pop.messages("alice@example.org")) == 2


def test_sha512_account(pop):
    """A SHA-512 hash written by hand (openssl passwd -6) works as well
    as mailuser's yescrypt; a wrong password is still refused."""
    sha = subprocess.run(["openssl", "passwd", "-6", "-stdin"],
                         input=b"carols-secret", capture_output=True,
                         check=True).stdout.strip()
    assert sha.startswith(b"$6$")
    with open(pop.dir / "accounts", "ab") as f:
        f.write(b"carol@example.org:" + sha + b"\n")
    pop.run("deliver", "carol@example.org", input=msg(7), check=True)
    p = login(pop, "carol@example.org", "carols-secret")
    assert p.stat()[0] == 1
    assert b"line one of 7" in b"\r\n".join(p.retr(1)[1])
    p.quit()
    with pytest.raises(poplib.error_proto):
        login(pop, "carol@example.org", "wrong")


def test_wrong_password_and_unknown_user_look_the_same(pop):
    answers = []
    for user, password in (("alice@example.org", "wrong"),
                           ("nobody@example.org", "wrong")):
        p = poplib.POP3("127.0.0.1", pop.pop3_port, timeout=30)
        p.user(user)
        start = time.monotonic()
        with pytest.raises(poplib.error_proto) as e:
            p.pass_(password)
        answers.append((e.value.args[0], time.monotonic() - start))
        p.close()
    assert answers[0][0] == answers[1][0]
    assert answers[0][0].startswith(b"-ERR [AUTH]")
    assert abs(answers[0][1] - answers[1][1]) < 0.5
    assert answers[0][1] >= 0.9


def test_too_many_failures_close(pop):
    s = socket.create_connection(("127.0.0.1", pop.pop3_port))
    s.settimeout(20)
    f = s.makefile("rb")
    f.readline()
    for _ in range(3):
        s.sendall(b"USER alice@example.org\r\nPASS nope\r\n")
        assert f.readline().startswith(b"+OK")
        assert f.readline().startswith(b"-ERR [AUTH]")
    assert f.readline().startswith(b"-ERR")
    assert f.readline() == b""  # closed


def test_auth_plain(pop):
    import base64
    p = poplib.POP3("127.0.0.1", pop.pop3_port, timeout=30)
    token = base64.b64encode(b"\0bob@example.org\0hunter2").decode()
    assert p._shortcmd("AUTH PLAIN " + token).startswith(b"+OK")
    assert p.stat() == (0, 0)
    p.quit()
    p = poplib.POP3("127.0.0.1", pop.pop3_port, timeout=30)
    assert p._shortcmd("AUTH PLAIN").startswith(b"+")
    assert p._shortcmd(token).startswith(b"+OK")
    p.quit()


def test_malformed_and_long_lines(pop):
    s = socket.create_connection(("127.0.0.1", pop.pop3_port))
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"BOGUS\r\n" + b"USER " + b"x" * 10000 + b"\r\nNOOP\r\n")
    assert f.readline().startswith(b"-ERR Unknown command")
    assert f.readline().startswith(b"-ERR Line too long")
    assert f.readline().startswith(b"+OK")
    s.sendall(b"USER alice@example.org\r\nPASS secret\r\nRETR 99\r\nRETR x\r\n"
              b"TOP 1\r\nLIST 0\r\nQUIT\r\n")
    assert f.readline().startswith(b"+OK")
    assert f.readline().startswith(b"+OK")
    for _ in range(4):
        assert f.readline().startswith(b"-ERR")
    assert f.readline().startswith(b"+OK")
    s.close()


def test_curl_list_and_retrieve(pop):
    url = "pop3://127.0.0.1:%d/" % pop.pop3_port
    out = subprocess.run(["curl", "-s", "-u", "alice@example.org:secret", url],
                         capture_output=True, timeout=30)
    assert out.returncode == 0
    assert len(out.stdout.strip().splitlines()) == 3
    out = subprocess.run(["curl", "-s", "-u", "alice@example.org:secret",
                          url + "2"], capture_output=True, timeout=30)
    assert out.returncode == 0 and b"Subject: message 2" in out.stdout


def test_fetchmail_downloads_everything(pop, tmp_path):
    mbox = tmp_path / "mbox"
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        "poll 127.0.0.1 service %d protocol pop3 auth password\n"
        "  user 'alice@example.org' there with password 'secret' is 'root' here\n"
        "  no sslcertck fetchall\n"
        "  mda \"/bin/sh -c 'cat >> %s'\"\n" % (pop.pop3_port, mbox))
    rc.chmod(0o600)
    out = subprocess.run(["fetchmail", "-f", str(rc), "--nodetach", "-N",
                          "--pidfile", str(tmp_path / "pid"), "--nosyslog",
                          "--flush"],
                         capture_output=True, timeout=60,
                         env=dict(os.environ, HOME=str(tmp_path),
                                  FETCHMAILHOME=str(tmp_path)))
    assert out.returncode == 0, out.stdout + out.stderr
    text = mbox.read_bytes()
    assert text.count(b"Subject: message ") == 3
    # --flush: fetchall then deleted from the server
    assert pop.messages("alice@example.org") == []


def test_big_maildir_login_stat_list(inst):
    """10,000 messages: login, STAT and LIST must not open every one."""
    inst.add_user("carol@example.org", "pw")
    md = inst.maildir("carol@example.org")
    inst.run("deliver", "carol@example.org", input=msg(0), check=True)
    (first,) = inst.messages("carol@example.org")
    data = first.read_bytes()
    base = first.name.split(",", 1)[1]
    for i in range(10000):
        (md / "new" / ("1700000000.M%dP1Q%d.big,%s" % (i, i, base))).write_bytes(data)
    inst.start_pop3d()
    start = time.monotonic()
    p = login(inst, "carol@example.org", "pw")
    count, total = p.stat()
    resp, listing, _ = p.list()
    elapsed = time.monotonic() - start
    p.quit()
    assert count == 10001 and len(listing) == 10001
    print("10,001-message Maildir: login+STAT+LIST in %.3f s" % elapsed)
    assert elapsed < 2.0
