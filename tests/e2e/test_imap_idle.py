"""IDLE (RFC 2177) end to end: a message delivered by the built smtpd
wakes an idling imapd session with `* n EXISTS` within a second of the
file landing in new/ (a raw socket, timed), and imaplib2's IDLE, a client
nobody here wrote, wakes on another session's APPEND and EXPUNGE."""
import threading
import time

import imaplib2

from imap_support import ALICE, ALICE_PW, Raw, imap, login, msg


def test_idle_woken_by_smtpd_delivery(imap):
    imap.start_smtpd()
    r = Raw(imap.imap_port)
    assert r.cmd(b"a", b"LOGIN alice@example.org secret")[1].startswith(b"a OK")
    assert r.cmd(b"b", b"SELECT INBOX")[1].startswith(b"b OK")
    r.send(b"c IDLE\r\n")
    assert r.line().startswith(b"+ ")
    got = {}

    def reader():
        while True:
            line = r.line()
            if not line:
                return
            if line.rstrip() == b"* 4 EXISTS":
                got["exists"] = time.monotonic()
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    new = imap.maildir(ALICE) / "new"
    before = set(new.iterdir())
    imap.send([ALICE], msg(4))
    end = time.monotonic() + 20
    while set(new.iterdir()) == before and time.monotonic() < end:
        time.sleep(0.005)
    landed = time.monotonic()
    assert set(new.iterdir()) != before, "smtpd did not deliver"
    t.join(5)
    assert "exists" in got, "no * 4 EXISTS while idling"
    delay = got["exists"] - landed
    print("IDLE: * 4 EXISTS %.3f s after the file landed in new/" % delay)
    assert delay < 1.0
    # DONE ends IDLE with the tagged OK; the session goes on
    r.send(b"DONE\r\n")
    lines, tagged = r.until(b"c")
    assert tagged.startswith(b"c OK"), (lines, tagged)
    lines, tagged = r.cmd(b"d", b"FETCH 4 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert tagged.startswith(b"d OK") and b"Subject: message 4" in b"".join(lines)
    r.cmd(b"e", b"LOGOUT")


def test_imaplib2_idle_wakes_on_another_sessions_changes(imap):
    m = imaplib2.IMAP4("127.0.0.1", imap.imap_port, timeout=20)
    try:
        m.login(ALICE, ALICE_PW)
        m.select("INBOX")
        other = login(imap)
        for change in ("append", "expunge"):
            woke = threading.Event()
            m.idle(timeout=20, callback=lambda args: woke.set())
            time.sleep(0.2)  # IDLE is under way
            start = time.monotonic()
            if change == "append":
                assert other.append("INBOX", None, None, msg(9))[0] == "OK"
            else:
                other.select("INBOX")
                other.store("1", "+FLAGS", "(\\Deleted)")
                other.expunge()
            assert woke.wait(5), change
            assert time.monotonic() - start < 2.0
            if change == "append":
                assert m.response("EXISTS")[1][-1] == b"4"
            else:
                assert m.response("EXPUNGE")[1][-1] == b"1"
        other.logout()
        typ, data = m.search(None, "ALL")
        assert typ == "OK" and data[0].split() == [b"1", b"2", b"3"]
    finally:
        m.logout()
