"""pop3d and imapd on one mailbox at the same time (issue 13): a message
deleted by one is gone for the other at its next sync; flags set by
imapd (a rename in cur/) and pop3d's move to cur/ do not hide a message
from the other; neither crashes while both work the same files with
deliver adding more."""
import poplib
import re
import threading
import time

from imap_support import ALICE, ALICE_PW, imap, login, msg


def pop(inst):
    p = poplib.POP3("127.0.0.1", inst.pop3_port, timeout=30)
    p.user(ALICE)
    p.pass_(ALICE_PW)
    return p


def subjects(c, spec="1:*"):
    typ, data = c.fetch(spec, "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK", data
    out = {}
    for item in data:
        if isinstance(item, tuple):
            uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
            out[uid] = item[1].strip().decode()
    return out


def test_delete_in_one_seen_by_the_other(imap):
    imap.start_pop3d()
    c = login(imap)
    assert c.select("INBOX") == ("OK", [b"3"])
    # pop3d deletes message 1 (UID 1)
    p = pop(imap)
    resp, lines, _ = p.retr(1)
    assert b"Subject: message 1" in lines
    p.dele(1)
    p.quit()
    assert c.noop()[0] == "OK"
    assert c.untagged_responses.pop("EXPUNGE", None) == [b"1"]
    assert subjects(c) == {2: "Subject: message 2", 3: "Subject: message 3"}
    # imapd deletes (now) message 1, UID 2: pop3d's next session sees one
    c.store("1", "+FLAGS", "(\\Deleted)")
    c.expunge()
    p = pop(imap)
    assert p.stat()[0] == 1
    assert b"Subject: message 3" in p.retr(1)[1]
    p.quit()
    c.logout()


def test_renames_by_each_side(imap):
    imap.start_pop3d()
    c = login(imap)
    c.select("INBOX")
    p = pop(imap)  # pop3d has listed the three in new/
    # imapd flags them: renamed into cur/ with :2,F
    assert c.store("1:3", "+FLAGS", "(\\Flagged)")[0] == "OK"
    # pop3d still reads and deletes them by their base names
    for n in (1, 2, 3):
        assert b"Subject: message %d" % n in p.retr(n)[1]
    p.dele(2)
    p.quit()
    # imapd's UIDs stay, bodies readable, and pop3d's QUIT (which moves
    # what it retrieved from new/ to cur/) kept imapd's flag
    c.noop()
    got = subjects(c)
    assert got == {1: "Subject: message 1", 3: "Subject: message 3"}, got
    typ, data = c.uid("FETCH", "1,3", "(FLAGS)")
    assert all(b"\\Flagged" in d for d in data), data
    c.logout()


def test_both_at_work_with_deliveries(imap):
    """A second of both servers and deliver on one mailbox: nobody
    crashes, every answer is well-formed, and afterwards both agree."""
    imap.start_pop3d()
    errors = []
    stop = time.monotonic() + 1.0

    def imap_worker():
        try:
            c = login(imap)
            c.select("INBOX")
            i = 0
            while time.monotonic() < stop:
                i += 1
                typ, _ = c.store("1:*", "+FLAGS" if i % 2 else "-FLAGS",
                                 "(\\Flagged $Busy)")
                assert typ == "OK"
                typ, data = c.fetch("1:*", "(UID RFC822.SIZE BODY.PEEK[TEXT])")
                assert typ == "OK", data
                c.noop()
            c.logout()
        except Exception as e:  # reported by the main thread
            errors.append(("imap", e))

    def pop_worker():
        try:
            while time.monotonic() < stop:
                try:
                    p = pop(imap)
                except poplib.error_proto as e:
                    assert b"[IN-USE]" in e.args[0]  # the other pop session
                    time.sleep(0.05)
                    continue
                n = p.stat()[0]
                for k in range(1, n + 1):
                    assert b"Subject: message" in b"\n".join(p.retr(k)[1])
                p.quit()
        except Exception as e:
            errors.append(("pop3", e))

    def deliverer():
        n = 10
        while time.monotonic() < stop:
            imap.run("deliver", ALICE, input=msg(n), check=True)
            n += 1
            time.sleep(0.1)

    threads = [threading.Thread(target=f) for f in
               (imap_worker, imap_worker, pop_worker, deliverer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    for proc in imap.procs:
        assert proc.poll() is None, proc.args  # imapd and pop3d still run
    # both see the same messages
    c = login(imap)
    count = int(c.select("INBOX")[1][0])
    p = pop(imap)
    assert p.stat()[0] == count
    p.quit()
    c.logout()
