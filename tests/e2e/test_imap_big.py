"""imapd's memory does not grow with message size (issue 13: "memory
stays flat for a 50 MB message"): a 16 MB message APPENDed, FETCHed
whole and in part, and SEARCHed, while the session process's peak
resident set (VmHWM in /proc) is watched."""
import os
import time

from imap_support import ALICE, Raw, add_fast_user, start_imapd

SIZE = 16 * 1024 * 1024
LINE = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-=+*\r\n"


def children(pid):
    out = []
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/stat" % d) as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d))
        except (OSError, IndexError, ValueError):
            pass
    return out


def peak_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM for %d" % pid)


def test_big_message_memory_flat(inst):
    inst.configure(imapd={"max_message_size": "32M"})
    add_fast_user(inst, ALICE, "secret")
    # no ASan quarantine (it would keep every freed chunk and look like
    # growth); the plain build is unaffected by the variable
    listener = start_imapd(inst, env={"ASAN_OPTIONS": "detect_leaks=0:quarantine_size_mb=1"})
    body = b"Subject: big\r\n\r\n" + LINE * (SIZE // len(LINE))
    r = Raw(inst.imap_port, timeout=60)
    assert r.cmd(b"a", b"LOGIN alice@example.org secret")[1].startswith(b"a OK")
    (session,) = children(listener.pid)
    base = peak_kb(session)
    r.send(b"b APPEND INBOX {%d}\r\n" % len(body))
    assert r.line().startswith(b"+")
    for at in range(0, len(body), 1 << 20):
        r.send(body[at:at + (1 << 20)])
    r.send(b"\r\n")
    assert r.until(b"b")[1].startswith(b"b OK [APPENDUID")
    assert r.cmd(b"c", b"SELECT INBOX")[1].startswith(b"c OK")
    # the whole message, read as it streams (the literal is not kept)
    r.send(b"d FETCH 1 (RFC822.SIZE BODY.PEEK[])\r\n")
    head = r.line()
    assert b"RFC822.SIZE %d " % len(body) in head and head.endswith(b"{%d}\r\n" % len(body)), head
    left, same = len(body), True
    while left:
        chunk = r.f.read(min(left, 1 << 20))
        same &= chunk == body[len(body) - left:len(body) - left + len(chunk)]
        left -= len(chunk)
    assert same
    assert r.until(b"d")[1].startswith(b"d OK")
    lines, tagged = r.cmd(b"e", b"FETCH 1 (BODY.PEEK[TEXT]<15000000.100>)")
    assert tagged.startswith(b"e OK") and lines[1] == body[16 + 15000000:16 + 15000100]
    start = time.monotonic()
    lines, tagged = r.cmd(b"f", b"SEARCH BODY \"-=+*\" NOT BODY \"needle\"")
    assert tagged.startswith(b"f OK") and lines == [b"* SEARCH 1\r\n"], lines
    grown = peak_kb(session) - base
    print("16 MB message: session peak grew by %d KB (SEARCH %.2f s)"
          % (grown, time.monotonic() - start))
    assert grown < 4 * 1024, grown  # a quarter of the message
    r.cmd(b"g", b"LOGOUT")
