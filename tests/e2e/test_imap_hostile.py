"""imapd against hostile input from outside (issue 13, "Security and
limits"): over-long lines, literal sizes that overflow or exceed the
budgets (checked before "+"), deep nesting, huge sequence sets,
path-like mailbox names, a flood of bad commands, STARTTLS injection,
LOGINDISABLED off loopback, the per-user connection limit. After each,
the session is still in step (or closed on purpose) and imapd still
serves everyone else."""
import os
import socket
import ssl
import subprocess
import time

import pytest

import tls_certs
from imap_support import (ALICE, ALICE_PW, BOB, Raw, connect,
                          dovecot_differs, imap, login, make_imap, msg)
from util import free_port, wait_port

LIMIT_BAD = (b"BAD", b"NO")


def alive(inst):
    """imapd still greets a new connection and logs a user in."""
    c = login(inst)
    assert c.select("INBOX")[0] == "OK"
    c.logout()


def answer_of(r, tag):
    """The tagged answer for TAG, or b"BYE" when the server said BYE and
    closed instead."""
    while True:
        line = r.line()
        if not line:
            return b"CLOSED"
        if line.startswith(b"* BYE"):
            assert r.closed()
            return b"BYE"
        if line.startswith(tag + b" "):
            return line[len(tag) + 1:]


def in_step(r, tag=b"z"):
    """The session answers the next command as such."""
    lines, tagged = r.cmd(tag, b"NOOP")
    assert tagged.startswith(tag + b" OK"), (lines, tagged)


def logged_in(inst):
    r = Raw(inst.imap_port)
    assert r.cmd(b"l", b"LOGIN alice@example.org secret")[1].startswith(b"l OK")
    return r


def test_over_long_lines(imap):
    # before login: 8 KiB
    r = Raw(imap.imap_port)
    r.send(b"a NOOP " + b"x" * 9000 + b"\r\n")
    got = answer_of(r, b"a")
    assert got.startswith(LIMIT_BAD) or got in (b"BYE", b"CLOSED"), got
    if got.startswith(LIMIT_BAD):
        in_step(r)
    # after login: 64 KiB; a long but legal line still works
    r = logged_in(imap)
    r.cmd(b"s", b"SELECT INBOX")
    seq = b",".join([b"1", b"2", b"3"] * 10000)  # about 60 KB
    lines, tagged = r.cmd(b"f", b"FETCH " + seq + b" (UID)")
    assert tagged.startswith(b"f OK"), tagged
    r.send(b"g FETCH " + b"1," * 40000 + b"1 (UID)\r\n")
    got = answer_of(r, b"g")
    assert got.startswith(LIMIT_BAD) or got in (b"BYE", b"CLOSED"), got
    if got.startswith(LIMIT_BAD):
        in_step(r)
    # a megabyte without a line end: answered (or closed) long before
    # the end, never buffered
    r = logged_in(imap)
    start = time.monotonic()
    try:
        for _ in range(16):
            r.send(b"h NOOP " + b"y" * 65536)
    except (BrokenPipeError, ConnectionResetError):
        pass
    r.s.settimeout(5)
    try:
        first = r.line()
    except (ConnectionResetError, socket.timeout) as e:
        first = repr(e).encode()
    assert first.startswith((b"h BAD", b"* BAD", b"* BYE", b"h NO")) or first == b"" \
        or dovecot_differs(), first
    assert time.monotonic() - start < 5
    alive(imap)


def test_literal_sizes(imap):
    for size in (b"99999999999", b"18446744073709551616", b"4294967296"):
        # before login: refused before "+", the literal never read
        r = Raw(imap.imap_port)
        r.send(b"a LOGIN {%s}\r\n" % size)
        line = r.line()
        assert not line.startswith(b"+"), (size, line)
        assert line.startswith((b"a BAD", b"a NO", b"* BYE")), (size, line)
        if not line.startswith(b"* BYE"):
            in_step(r)
    # a synchronising literal within the budget works before login
    r = Raw(imap.imap_port)
    r.send(b"a LOGIN {17}\r\n")
    assert r.line().startswith(b"+")
    r.send(b"alice@example.org {6}\r\n")
    assert r.line().startswith(b"+")
    r.send(b"secret\r\n")
    assert r.until(b"a")[1].startswith(b"a OK")
    # after login, APPEND over the limit: no "+", NO [TOOBIG] or BAD, in step
    # (Dovecot sends "+" and checks later)
    if dovecot_differs():
        return
    r.send(b"b APPEND INBOX {99999999999}\r\n")
    line = r.line()
    assert line.startswith((b"b NO", b"b BAD")), line
    in_step(r)
    # a refused literal is not read as commands: its octets would say
    # "x OK" were they run
    r.send(b"c APPEND INBOX (\\Seen) {99999999999}\r\nx NOOP\r\n")
    assert r.line().startswith((b"c NO", b"c BAD"))
    line = r.line()
    assert line.startswith(b"x OK"), line  # "x NOOP" is a command of its own here
    # a non-synchronising literal over the line budget before login ends it
    r = Raw(imap.imap_port)
    r.send(b"a LOGIN {100000+}\r\n" + b"z" * 1000)
    got = answer_of(r, b"a")
    assert got in (b"BYE", b"CLOSED") or got.startswith(b"BAD"), got
    alive(imap)


def test_append_over_max_message_size(inst):
    inst.configure(imapd={"max_message_size": "10K"})
    make_imap(inst, messages=0)
    r = logged_in(inst)
    caps = b"".join(r.cmd(b"c", b"CAPABILITY")[0])
    assert b"APPENDLIMIT=10240" in caps, caps
    r.send(b"a APPEND Drafts {20000}\r\n")
    line = r.line()
    assert line.startswith(b"a NO [TOOBIG]"), line
    in_step(r)
    # LITERAL+ over the limit: refused, the octets never taken as commands
    body = (b"x NOOP\r\n" * 2500)[:20000]
    r.send(b"b APPEND Drafts {20000+}\r\n" + body + b"\r\n")
    got = answer_of(r, b"b")
    assert got.startswith((b"NO", b"BAD")) or got in (b"BYE", b"CLOSED"), got
    if got.startswith((b"NO", b"BAD")):
        in_step(r)
    # within the limit it works
    c = login(inst)
    assert c.append("Drafts", None, None, msg(1))[0] == "OK"
    c.select("Drafts")
    assert c.search(None, "ALL")[1] == [b"1"]
    c.logout()


def test_deep_nesting(imap):
    r = logged_in(imap)
    r.cmd(b"s", b"SELECT INBOX")
    for tag, cmd in ((b"a", b"SEARCH " + b"(" * 2000 + b"ALL" + b")" * 2000),
                     (b"b", b"SEARCH " + b"NOT " * 3000 + b"ALL"),
                     (b"c", b"SEARCH " + b"OR ALL " * 2000 + b"ALL"),
                     (b"d", b"STORE 1 FLAGS " + b"(" * 3000 + b")" * 3000),
                     (b"e", b"FETCH 1 " + b"(" * 3000 + b"UID" + b")" * 3000)):
        lines, tagged = r.cmd(tag, cmd)
        assert tagged.startswith(tag + b" BAD") or tagged.startswith(tag + b" NO") \
            or dovecot_differs(), (tag, tagged)
    in_step(r)
    # nesting within reason is fine
    lines, tagged = r.cmd(b"f", b"SEARCH ((((NOT DELETED))))")
    assert tagged.startswith(b"f OK") and lines == [b"* SEARCH 1 2 3\r\n"]
    alive(imap)


def test_huge_sequence_sets(imap):
    r = logged_in(imap)
    r.cmd(b"s", b"SELECT INBOX")
    start = time.monotonic()
    lines, tagged = r.cmd(b"a", b"UID FETCH 1:4294967295 (UID)")
    assert tagged.startswith(b"a OK") and len(lines) == 3
    # overlapping ranges: each message answered once (else a line of
    # "1:*,1:*,..." would multiply the answers by thousands)
    lines, tagged = r.cmd(b"b", b"UID FETCH 4294967295:1,1:* (FLAGS)")
    assert tagged.startswith(b"b OK") and len(lines) == 3, lines
    lines, tagged = r.cmd(b"c", b"UID STORE 1:4294967295 +FLAGS.SILENT (\\Flagged)")
    assert tagged.startswith(b"c OK")
    many = b",".join(b"%d:%d" % (i, i + 1000000) for i in range(1, 4000000000, 1000003))
    lines, tagged = r.cmd(b"d", b"UID SEARCH UID " + many[:60000].rsplit(b",", 1)[0])
    assert tagged.startswith(b"d OK"), tagged
    lines, tagged = r.cmd(b"e", b"SEARCH 1:4294967295 NOT 2:4294967295")
    assert tagged.startswith(b"e OK") and lines == [b"* SEARCH 1\r\n"]
    assert time.monotonic() - start < 3
    for tag, cmd in ((b"f", b"FETCH 0 FLAGS"), (b"g", b"UID FETCH 4294967296 FLAGS"),
                     (b"h", b"FETCH 1:99999999999999999999 FLAGS"),
                     (b"i", b"FETCH 1:2:3 FLAGS"), (b"j", b"FETCH ,, FLAGS")):
        lines, tagged = r.cmd(tag, cmd)
        assert tagged.startswith(tag + b" BAD") or tagged.startswith(tag + b" NO"), (cmd, tagged)
    in_step(r)
    alive(imap)


def tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_path_like_mailbox_names(imap):
    c = login(imap)
    outside = tree(imap.dir)
    bob_before = tree(imap.maildir(BOB)) if imap.maildir(BOB).exists() else []
    # ("a." is legal: RFC 3501 6.3.3, a trailing separator declares a
    # parent; the folder made is "a")
    allowed = ('"~root"', '"a."')
    bad = ['"../x"', '"../../bob"', '"/etc"', '"a/b"', '".."', '"."', '"a..b"',
           '".a"', '"a."', '"tmp"', '"new"', '"cur"', '"Work.tmp"', '""',
           '"../../../../../../tmp/pwned"', '"~root"', '"INBOX/../../x"',
           '"&Jjo"', '"&AC8-etc"', '"x\\\\y/z"']
    r = logged_in(imap)
    for i, name in enumerate(bad):
        tag = b"t%d" % i
        for cmd in (b"CREATE %s", b"STATUS %s (MESSAGES)", b"RENAME Drafts %s",
                    b"APPEND %s {1}", b"EXAMINE %s", b"DELETE %s"):
            line = cmd % name.encode()
            r.send(b"%s %s\r\n" % (tag, line))
            first = r.line()
            if first.startswith(b"+"):  # APPEND's literal goes ahead
                r.send(b"x\r\n")
                lines, tagged = r.until(tag)
            elif first.startswith(b"* "):
                lines, tagged = r.until(tag)
            else:
                tagged = first
            # the answer carries the command's own tag
            assert tagged.startswith(tag + b" "), (line, tagged)
            ok_ = tagged.startswith(tag + b" OK")
            if ok_ and cmd.startswith(b"EXAMINE"):
                r.cmd(b"w", b"UNSELECT")
            # "~root" and a few others may be legal names: then they
            # must stay inside the account's folder
            if ok_ and name not in allowed and not dovecot_differs():
                raise AssertionError((line, tagged))
        r.cmd(b"u", b'DELETE "~root"')
        r.cmd(b"v", b'RENAME "~root" Drafts')
    # control characters and NUL in a name (a literal)
    for i, raw in enumerate((b"a\x01b", b"a\x00b", b"a\r\nb", b"a\x7fb")):
        r.send(b"n%d CREATE {%d+}\r\n%s\r\n" % (i, len(raw), raw))
        got = answer_of(r, b"n%d" % i)
        assert got.startswith((b"NO", b"BAD")), (raw, got)
    in_step(r)
    # nothing appeared or went outside alice's Maildir; bob's untouched
    after = [p for p in tree(imap.dir) if not p.startswith("spool/example.org/alice")]
    assert after == [p for p in outside if not p.startswith("spool/example.org/alice")]
    assert not os.path.exists("/tmp/pwned") and not os.path.exists("/x")
    if bob_before:
        assert tree(imap.maildir(BOB)) == bob_before
    for p in imap.maildir(ALICE).iterdir():
        assert not p.name.startswith("..") and not p.name.endswith(".")
    # LIST of a pattern that tries to climb: nothing outside
    lines, tagged = r.cmd(b"l", b'LIST "" "../*"')
    assert tagged.startswith((b"l OK", b"l NO", b"l BAD")) and lines == []
    lines, tagged = r.cmd(b"m", b'LIST "/" "*"')
    assert all(b"etc" not in l and b"passwd" not in l for l in lines)
    # a legal odd name comes back quoted (or as a literal)
    assert r.cmd(b"o", b'CREATE "we\\"ird name"')[1].startswith(b"o OK")
    lines, tagged = r.cmd(b"p", b'LIST "" "we*"')
    assert lines and (b'"we\\"ird name"' in lines[0] or lines[0].endswith(b"}\r\n")), lines
    c.logout()
    alive(imap)


def test_flood_of_bad_commands(imap):
    r = Raw(imap.imap_port, timeout=10)
    start = time.monotonic()
    junk = b"".join([b"\x00\xff\xfe garbage %d\r\n" % i for i in range(500)] +
                    [b"a%d BOGUS\r\n" % i for i in range(500)])
    try:
        r.send(junk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    answers, closed = 0, False
    try:
        while True:
            line = r.line()
            if not line:
                closed = True
                break
            answers += 1
            if line.startswith(b"* BYE"):
                continue
            assert b" BAD" in line or line.startswith(b"* BAD"), line
            if answers >= 1000:
                break
    except ConnectionResetError:
        closed = True
    # either every command was answered BAD, or the connection was ended
    assert closed or answers == 1000
    assert time.monotonic() - start < 10
    # the same after login
    r = logged_in(imap)
    try:
        r.send(b"".join(b"b%d FROB\r\n" % i for i in range(1000)))
    except (BrokenPipeError, ConnectionResetError):
        pass
    alive(imap)


def test_starttls_injection(inst):
    _, ca, cert, key = tls_certs.make()
    inst.configure(tls={"certificate": str(cert), "key": str(key)})
    make_imap(inst)
    raw = socket.create_connection(("127.0.0.1", inst.imap_port), timeout=10)
    f = raw.makefile("rb")
    assert f.readline().startswith(b"* OK")
    # the CAPABILITY rides in the same packet as STARTTLS
    raw.sendall(b"a STARTTLS\r\nb LOGIN alice@example.org secret\r\n")
    line = f.readline()
    assert line.startswith(b"a OK"), line
    f.close()
    ctx = ssl.create_default_context(cafile=str(ca))
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    s.sendall(b"c NOOP\r\n")
    first = b""
    while not first.endswith(b"\r\n"):
        first += s.recv(4096)
    # the first answer inside TLS is NOOP's, never the injected LOGIN's
    assert first.startswith(b"c OK"), first
    s.sendall(b"d SELECT INBOX\r\n")
    out = b""
    while b"\r\nd " not in out and not out.startswith(b"d "):
        out += s.recv(4096)
    assert b"d BAD" in out or b"d NO" in out  # not logged in
    s.close()


def non_loopback_address():
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True)
    for a in out.stdout.split():
        if "." in a and not a.startswith("127."):
            return a
    return None


def test_logindisabled_off_loopback(inst):
    addr = non_loopback_address()
    if not addr:
        pytest.skip("this machine has no IPv4 address but loopback")
    make_imap(inst)
    port = free_port(addr)
    proc = subprocess.Popen([inst.bin("imapd"), "--listen", "%s:%d" % (addr, port)],
                            env=inst.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    inst.procs.append(proc)
    wait_port(port, addr)
    s = socket.create_connection((addr, port), timeout=10)
    f = s.makefile("rb")
    greeting = f.readline()
    s.sendall(b"a CAPABILITY\r\n")
    caps = f.readline()
    assert f.readline().startswith(b"a OK")
    assert b"LOGINDISABLED" in caps and b"AUTH=PLAIN" not in caps, caps
    s.sendall(b"b LOGIN alice@example.org secret\r\n")
    assert f.readline().startswith(b"b NO"), "LOGIN in the clear off loopback"
    s.sendall(b"c AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldA==\r\n")
    assert f.readline().startswith((b"c NO", b"c BAD"))
    s.close()


def test_per_user_connection_limit(inst):
    inst.configure(imapd={"max_user_connections": "2"})
    make_imap(inst)
    a, b = login(inst), login(inst)
    c = connect(inst)
    with pytest.raises(Exception):
        c.login(ALICE, ALICE_PW)
        c.select("INBOX")
    # another user is not affected; a slot frees when a session ends
    d = login(inst, BOB, "hunter2")
    d.logout()
    a.logout()
    time.sleep(0.3)
    e = login(inst)
    assert e.select("INBOX")[0] == "OK"
    for x in (b, e):
        x.logout()
