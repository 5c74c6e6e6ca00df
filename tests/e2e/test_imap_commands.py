"""imapd end to end with Python's imaplib: every command of RFC 3501 and
of the extensions of issue 13 in the states where it is valid (and
refused where it is not), against the built imapd on loopback, on
Maildirs filled by the built deliver; the files on disk checked where
the contract (DESIGN.md "IMAP folders") says what they must be."""
import base64
import imaplib
import re
import ssl
import time

import pytest

import tls_certs
from imap_support import (ALICE, ALICE_PW, BOB, BOB_PW, SPECIAL, Raw,
                          add_fast_user, connect,
                          dovecot_differs, files, folder_path, imap, login,
                          msg, start_imapd)

# imaplib knows no ID command; it is valid in every state (RFC 2971)
imaplib.Commands.setdefault("ID", ("NONAUTH", "AUTH", "SELECTED"))

CAPS = ["IMAP4REV1", "IDLE", "UIDPLUS", "MOVE", "LITERAL+", "NAMESPACE", "ID",
        "ENABLE", "UNSELECT", "CHILDREN", "LIST-EXTENDED", "SPECIAL-USE",
        "LIST-STATUS", "ESEARCH", "STATUS=SIZE", "SASL-IR"]


def ok(answer):
    typ, data = answer
    assert typ == "OK", answer
    return data


def answer(call, *args):
    """The status of a command that may be answered BAD (which imaplib
    raises as an exception)."""
    try:
        return call(*args)[0]
    except imaplib.IMAP4.error as e:
        assert "BAD" in str(e) or "error" in str(e), e
        return "BAD"


def listing(c, *args):
    """LIST's answers as {name: set of attributes}."""
    out = {}
    for line in ok(c.list(*args)):
        if line is None:
            continue
        m = re.match(rb'\(([^)]*)\) (?:"\."|NIL) (.*)$', line)
        assert m, line
        name = m.group(2).decode()
        out[name.strip('"')] = {a.lower() for a in m.group(1).decode().split()}
    return out


def untagged(c, name):
    return c.untagged_responses.get(name, [])


def test_greeting_capability_noop_logout(imap):
    r = Raw(imap.imap_port)
    assert r.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 "), r.greeting
    caps, tagged = r.cmd(b"a1", b"CAPABILITY")
    assert tagged.startswith(b"a1 OK")
    (line,) = caps
    words = line.upper().split()
    assert words[:2] == [b"*", b"CAPABILITY"] and b"IMAP4REV1" in words
    # loopback may log in without TLS: no LOGINDISABLED, AUTH=PLAIN offered
    assert b"LOGINDISABLED" not in words and b"AUTH=PLAIN" in words
    # no certificate configured: no STARTTLS offered
    assert b"STARTTLS" not in words
    assert r.cmd(b"a2", b"NOOP")[1].startswith(b"a2 OK")
    r.cmd(b"l", b"LOGIN alice@example.org secret")
    (line,), tagged = r.cmd(b"c", b"CAPABILITY")
    words = line.upper().split()
    for cap in CAPS:
        assert cap.encode() in words, (cap, line)
    assert any(w.startswith(b"APPENDLIMIT=") for w in words) or dovecot_differs()
    lines, tagged = r.cmd(b"a3", b"LOGOUT")
    assert lines[0].startswith(b"* BYE") and tagged.startswith(b"a3 OK")
    assert r.closed()


def test_login_ok_carries_capabilities(imap):
    r = Raw(imap.imap_port)
    lines, tagged = r.cmd(b"a", b'LOGIN "alice@example.org" "secret"')
    assert tagged.startswith(b"a OK [CAPABILITY IMAP4rev1 ") or (
        dovecot_differs() and tagged.startswith(b"a OK")), tagged
    # after login: no AUTH= and no LOGIN again
    assert r.cmd(b"b", b"LOGIN alice@example.org secret")[1].startswith(
        (b"b BAD", b"b NO"))
    r.cmd(b"c", b"LOGOUT")


def test_failed_logins_look_the_same_and_three_close(imap):
    """A wrong password and an unknown user get the same answer after
    the same pause; the third failure ends the connection."""
    r = Raw(imap.imap_port, timeout=20)
    answers = []
    for i, user in enumerate((b"alice@example.org", b"nobody@example.org")):
        start = time.monotonic()
        lines, tagged = r.cmd(b"a%d" % i, b"LOGIN %s wrong" % user)
        answers.append((tagged[3:], time.monotonic() - start))
    assert answers[0][0].startswith(b"NO [AUTHENTICATIONFAILED]"), answers
    assert answers[0][0] == answers[1][0]
    assert answers[0][1] >= 0.5 and abs(answers[0][1] - answers[1][1]) < 0.5
    lines, tagged = r.cmd(b"a2", b"AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUub3JnAG5vcGU=")
    assert tagged.startswith(b"a2 NO"), tagged
    assert r.closed() or dovecot_differs()


def test_authenticate_plain_with_and_without_sasl_ir(imap):
    c = connect(imap)
    typ, _ = c.authenticate("PLAIN", lambda _: b"\0%s\0%s" % (
        BOB.encode(), BOB_PW.encode()))
    assert typ == "OK" and c.state == "AUTH"
    assert ok(c.select("INBOX")) == [b"0"]
    c.logout()
    # SASL-IR: the initial response on the command line
    r = Raw(imap.imap_port)
    token = base64.b64encode(b"\0alice@example.org\0secret")
    lines, tagged = r.cmd(b"a", b"AUTHENTICATE PLAIN " + token)
    assert tagged.startswith(b"a OK"), tagged
    # cancelled exchange: "*" ends it with BAD, the session goes on
    r2 = Raw(imap.imap_port)
    r2.send(b"x AUTHENTICATE PLAIN\r\n")
    assert r2.line().startswith(b"+")
    r2.send(b"*\r\n")
    assert r2.line().startswith(b"x BAD")
    assert r2.cmd(b"y", b"NOOP")[1].startswith(b"y OK")
    r.close()
    r2.close()


def test_commands_refused_in_the_wrong_state(imap):
    # a connection each: a few bad commands in a row may end one
    for cmd in (b"SELECT INBOX", b"LIST \"\" *", b"FETCH 1 FLAGS",
                b"STATUS INBOX (MESSAGES)", b"APPEND INBOX {1+}\r\nx"):
        r = Raw(imap.imap_port)
        lines, tagged = r.cmd(b"n", cmd)
        assert tagged.startswith((b"n BAD", b"n NO")), (cmd, tagged)
        assert r.cmd(b"m", b"NOOP")[1].startswith(b"m OK")
        r = Raw(imap.imap_port)
    r.cmd(b"l", b"LOGIN alice@example.org secret")
    for cmd in (b"FETCH 1 FLAGS", b"STORE 1 +FLAGS (\\Seen)", b"EXPUNGE",
                b"CLOSE", b"SEARCH ALL", b"UID FETCH 1 FLAGS", b"MOVE 1 Trash"):
        lines, tagged = r.cmd(b"a", cmd)
        assert tagged.startswith((b"a BAD", b"a NO")), (cmd, tagged)
    lines, tagged = r.cmd(b"u", b"FROBNICATE")
    assert tagged.startswith(b"u BAD")
    assert r.cmd(b"z", b"NOOP")[1].startswith(b"z OK")
    r.close()


def test_select_examine(imap):
    c = login(imap)
    assert ok(c.select("INBOX")) == [b"3"]
    uidvalidity = int(untagged(c, "UIDVALIDITY")[0])
    assert uidvalidity > 0
    assert untagged(c, "UIDNEXT") == [b"4"]
    assert untagged(c, "RECENT") == [b"3"]
    assert b"\\Seen" in untagged(c, "FLAGS")[0]
    assert b"\\*" in untagged(c, "PERMANENTFLAGS")[0]
    assert untagged(c, "READ-WRITE") is not None
    # EXAMINE: read-only, STORE refused, nothing changes on disk
    before = files(imap.maildir(ALICE))
    assert ok(c.select("inbox", readonly=True)) == [b"3"]
    assert "READ-ONLY" in c.untagged_responses
    assert int(untagged(c, "UIDVALIDITY")[0]) == uidvalidity
    # refused, or accepted without effect (RFC 3501 leaves it open)
    assert answer(c.store, "1", "+FLAGS", "(\\Seen)") in ("NO", "BAD", "OK")
    c.fetch("1", "(BODY[TEXT])")  # not \Seen under EXAMINE
    assert files(imap.maildir(ALICE)) == before
    typ, _ = c.select("No.Such.Folder")
    assert typ == "NO" and c.state == "AUTH"
    c.logout()


def test_recent_seen_by_exactly_one_session(imap):
    c1, c2 = login(imap), login(imap)
    ok(c1.select("INBOX"))
    ok(c2.select("INBOX"))
    recent = [untagged(c, "RECENT")[0] for c in (c1, c2)]
    assert sorted(recent) == [b"0", b"3"], recent
    for c in (c1, c2):
        c.logout()


def test_list_special_use_children_namespace(imap):
    c = login(imap)
    boxes = listing(c)
    assert "INBOX" in boxes
    for name, use in SPECIAL.items():
        assert use.lower() in boxes[name], (name, boxes)
        # created on first login, as Maildir++ folders
        path = folder_path(imap, ALICE, name)
        assert dovecot_differs() or (path / "cur").is_dir() and (path / "maildirfolder").exists()
    # the hierarchy separator, from LIST "" ""
    assert ok(c.list('""', '""'))[0].startswith(b'(\\Noselect) "." ""')
    # LIST-EXTENDED selection (SPECIAL-USE): only those five
    typ, data = c._simple_command("LIST", '(SPECIAL-USE)', '""', '"*"')
    assert typ == "OK"
    special = c.untagged_responses.pop("LIST", [])
    assert sorted(re.search(rb'"\." "?([^"]*)"?$', l).group(1).decode()
                  for l in special) == sorted(SPECIAL)
    ok(c.create("Work.Reports"))
    ok(c.create("Work.Old"))
    boxes = listing(c, '""', '"*"')
    assert "\\haschildren" in boxes["Work"]
    assert "\\hasnochildren" in boxes["Work.Reports"]
    # % stops at the separator; * does not
    top = listing(c, '""', '"%"')
    assert "Work" in top and "Work.Reports" not in top
    assert set(listing(c, '""', '"Work.%"')) == {"Work.Reports", "Work.Old"}
    assert set(listing(c, '""', '"W*s"')) == {"Work.Reports"}
    # LIST-STATUS
    typ, data = c._simple_command("LIST", '""', '"*"', "RETURN",
                                  "(CHILDREN STATUS (MESSAGES UNSEEN))")
    assert typ == "OK"
    status = b" ".join(c.untagged_responses.pop("STATUS", []))
    assert re.search(rb'"?INBOX"? \(MESSAGES 3 UNSEEN 3\)', status), status
    c.untagged_responses.pop("LIST", None)
    # NAMESPACE: personal "" with ".", no others
    typ, data = c.namespace()
    assert typ == "OK" and data[0] == b'(("" ".")) NIL NIL', data
    c.logout()


def test_create_rename_delete_subscribe(imap):
    c = login(imap)
    md = imap.maildir(ALICE)
    ok(c.create("Projects.Alpha"))
    assert (md / ".Projects.Alpha" / "maildirfolder").exists()
    assert (md / ".Projects.Alpha" / "new").is_dir()
    typ, data = c.create("Projects.Alpha")
    assert typ == "NO"
    # a name in modified UTF-7 is kept as it is on disk
    ok(c.create("Caf&AOk-"))
    assert (md / ".Caf&AOk-").is_dir()
    ok(c.subscribe("Projects.Alpha"))
    # Dovecot's format: "V\t2\n\n", then a name per line, levels
    # separated by tabs (the older one-name-a-line is read too)
    subs = (md / "subscriptions").read_bytes()
    assert b"Projects\tAlpha\n" in subs or b"Projects.Alpha\n" in subs, subs
    lsub = [l for l in ok(c.lsub('""', '"*"')) if l]
    assert any(l.rstrip(b'"').endswith(b"Projects.Alpha") for l in lsub), lsub
    typ, data = c._simple_command("LIST", "(SUBSCRIBED)", '""', '"Proj*"')
    assert typ == "OK"
    assert any(b"\\Subscribed" in l and l.rstrip(b'"').endswith(b"Projects.Alpha")
               for l in c.untagged_responses.pop("LIST", [])), data
    ok(c.append("Projects.Alpha", None, None, msg(9)))
    ok(c.rename("Projects.Alpha", "Projects.Beta"))
    assert not (md / ".Projects.Alpha").exists()
    assert len(files(md / ".Projects.Beta")) == 1
    assert ok(c.select("Projects.Beta")) == [b"1"]
    ok(c.unselect() if hasattr(c, "unselect") else c.close())
    ok(c.unsubscribe("Projects.Alpha"))
    lsub = [l for l in ok(c.lsub('""', '"*"')) if l]
    assert not any(l.rstrip(b'"').endswith(b"Projects.Alpha") for l in lsub), lsub
    # a parent with children: deleting it keeps the children
    ok(c.delete("Projects.Beta"))
    assert not (md / ".Projects.Beta").exists()
    for name in ("INBOX", "No.Such"):
        typ, _ = c.delete(name)
        assert typ == "NO", name
    typ, _ = c.rename("No.Such", "Other")
    assert typ == "NO"
    typ, _ = c.rename("Drafts", "Sent")  # target exists
    assert typ == "NO"
    # RENAME INBOX: its messages move, INBOX stays (empty) (RFC 3501 6.3.5;
    # Dovecot refuses it on Maildir with [CANNOT])
    if dovecot_differs():
        return
    ok(c.rename("INBOX", "Old"))
    assert len(files(md / ".Old")) == 3 and files(md) == []
    assert ok(c.select("INBOX")) == [b"0"]
    c.logout()


def test_status_without_select(imap):
    c = login(imap)
    typ, data = c.status("INBOX", "(MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN SIZE)")
    assert typ == "OK"
    m = dict(re.findall(rb"([A-Z]+) (\d+)", data[0]))
    assert m[b"MESSAGES"] == b"3" and m[b"UIDNEXT"] == b"4"
    assert m[b"UNSEEN"] == b"3" and m[b"RECENT"] == b"3"
    sizes = ok(c.select("INBOX"))
    fetched = ok(c.fetch("1:*", "(RFC822.SIZE)"))
    total = sum(int(re.search(rb"RFC822.SIZE (\d+)", l).group(1)) for l in fetched)
    assert int(m[b"SIZE"]) == total
    typ, data = c.status("Trash", "(MESSAGES UIDNEXT)")
    assert typ == "OK" and b"MESSAGES 0" in data[0]
    typ, _ = c.status("No.Such", "(MESSAGES)")
    assert typ == "NO"
    c.logout()


def test_append_appenduid_and_bytes(imap):
    c = login(imap)
    body = msg(42, extra=b"a line\r\n.\r\nlast\r\n")
    typ, data = c.append("Drafts", "(\\Draft \\Seen)",
                         imaplib.Time2Internaldate(1700000000), body)
    assert typ == "OK"
    m = re.search(rb"\[APPENDUID (\d+) (\d+)\]", data[0])
    assert m, data
    uidvalidity, uid = int(m.group(1)), int(m.group(2))
    drafts = folder_path(imap, ALICE, "Drafts")
    (name,) = files(drafts)
    assert name.endswith(":2,DS") and (drafts / "cur" / name).exists()
    # on disk with LF line ends (Maildir), the same octets with CRLF on the wire
    assert (drafts / "cur" / name).read_bytes() == body.replace(b"\r\n", b"\n")
    assert ok(c.select("Drafts")) == [b"1"]
    assert int(untagged(c, "UIDVALIDITY")[0]) == uidvalidity
    data = ok(c.uid("FETCH", str(uid), "(BODY.PEEK[] INTERNALDATE RFC822.SIZE FLAGS)"))
    assert data[0][1] == body
    assert b'INTERNALDATE "14-Nov-2023 22:13:20 +0000"' in data[0][0] or \
        b"14-Nov-2023" in data[0][0]
    assert b"RFC822.SIZE %d" % len(body) in data[0][0]
    # into a folder that does not exist: TRYCREATE
    typ, data = c.append("Nowhere", None, None, body)
    assert typ == "NO" and b"TRYCREATE" in data[0]
    # the same with a non-synchronising literal (LITERAL+, as mbsync
    # sends it): its octets are read and dropped, the answer is the same
    # and the session goes on (RFC 7888 4)
    r = Raw(imap.imap_port)
    r.cmd(b"l", b"LOGIN alice@example.org secret")
    lines, tagged = r.cmd(b"a", b"APPEND Nowhere {5+}\r\nhello")
    assert tagged.startswith(b"a NO [TRYCREATE]"), (lines, tagged)
    assert r.cmd(b"b", b"NOOP")[1].startswith(b"b OK")
    r.close()
    # into the selected folder: the new message is announced
    ok(c.append("Drafts", None, None, msg(43)))
    ok(c.noop())
    assert b"2" in untagged(c, "EXISTS")
    c.logout()


def test_fetch_items(imap):
    c = login(imap)
    ok(c.select("INBOX"))
    raw = msg(2)
    data = ok(c.fetch("2", "(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)"))
    head = data[0] if isinstance(data[0], bytes) else data[0][0]
    assert re.search(rb"UID 2\b", head) and b"FLAGS (\\Recent)" in head
    assert b'"message 2"' in head and b'"<m2@example.com>"' in head
    assert b'(("Sender" NIL "sender" "example.com"))' in head
    size = int(re.search(rb"RFC822.SIZE (\d+)", head).group(1))
    full = ok(c.fetch("2", "(BODY.PEEK[])"))[0][1]
    assert len(full) == size and full.endswith(raw)
    assert full.startswith(b"Return-Path:") and b"\n" not in full.replace(b"\r\n", b"")
    header = ok(c.fetch("2", "(BODY.PEEK[HEADER])"))[0][1]
    text = ok(c.fetch("2", "(BODY.PEEK[TEXT])"))[0][1]
    assert header + text == full and header.endswith(b"\r\n\r\n")
    fields = ok(c.fetch("2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT DATE)])"))[0][1]
    assert fields == (b"Subject: message 2\r\n"
                      b"Date: Wed, 02 Dec 2026 09:02:00 +0000\r\n\r\n")
    nots = ok(c.fetch("2", "(BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT)])"))[0][1]
    assert b"Subject:" not in nots and b"Message-ID:" in nots
    part = ok(c.fetch("2", "(BODY.PEEK[1])"))[0][1]
    assert part == text
    partial = ok(c.fetch("2", "(BODY.PEEK[]<5.10>)"))
    assert partial[0][1] == full[5:15] and b"BODY[]<5>" in partial[0][0]
    beyond = ok(c.fetch("2", "(BODY.PEEK[TEXT]<%d.100>)" % (len(text) - 3)))
    assert beyond[0][1] == text[-3:]
    data = ok(c.fetch("2", "(BODYSTRUCTURE BODY)"))
    head = data[0] if isinstance(data[0], bytes) else data[0][0]
    assert b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" %d 2 NIL NIL NIL NIL)' \
        % len(text) in head, head
    # RFC822 forms; RFC822.TEXT and BODY[] set \Seen (not .PEEK)
    data = ok(c.fetch("1", "(RFC822.HEADER)"))
    assert data[0][1].startswith(b"Return-Path:") and data[0][1].endswith(b"\r\n\r\n")
    data = ok(c.fetch("1", "(RFC822.TEXT)"))
    assert data[0][1] == b"line one of 1\r\nneedle1 in the body\r\n"
    assert b"\\Seen" in b"".join(x if isinstance(x, bytes) else x[0]
                                 for x in ok(c.fetch("1", "(FLAGS)")))
    data = ok(c.fetch("3", "(RFC822)"))
    assert data[0][1].endswith(msg(3))
    # macros
    for macro, want in (("FAST", [b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE"]),
                        ("ALL", [b"ENVELOPE"]), ("FULL", [b"BODY ("])):
        data = ok(c.fetch("3", macro))
        head = data[0] if isinstance(data[0], bytes) else data[0][0]
        for w in want:
            assert w in head, (macro, head)
    # the \Seen of message 1 and 3 is on disk, in the Maildir info
    names = files(imap.maildir(ALICE))
    assert sum(n.endswith(":2,S") for n in names) == 2, names
    # a message number out of range
    assert answer(c.fetch, "9", "(FLAGS)") in ("NO", "BAD")
    assert answer(c.fetch, "1", "(NOSUCHITEM)") == "BAD"
    c.logout()


def test_store_flags_and_keywords(imap):
    c = login(imap)
    ok(c.select("INBOX"))
    data = ok(c.store("1", "+FLAGS", "(\\Flagged \\Seen)"))
    assert b"\\Flagged" in data[0] and b"\\Seen" in data[0]
    ok(c.store("2", "FLAGS", "(\\Answered $Work)"))
    data = ok(c.store("2", "-FLAGS", "(\\Answered)"))
    assert b"\\Answered" not in data[0] and b"$Work" in data[0]
    data = ok(c.store("3", "+FLAGS.SILENT", "(\\Deleted)"))
    assert not any(d and b"3 (FLAGS" in d for d in data), data
    data = ok(c.uid("STORE", "1:3", "+FLAGS", "(\\Draft)"))
    assert len([d for d in data if d]) == 3
    names = {n.split(":2,")[0]: n.split(":2,")[1] for n in files(imap.maildir(ALICE))}
    assert sorted(names.values()) == sorted(["DFS", "Da", "DT"]), names
    kw = (imap.maildir(ALICE) / "dovecot-keywords").read_text()
    assert kw.splitlines() == ["0 $Work"]
    # PERMANENTFLAGS/FLAGS now include the keyword for a new SELECT
    ok(c.select("INBOX"))
    assert b"$Work" in untagged(c, "FLAGS")[0]
    assert answer(c.store, "1", "+FLAGS", "(\\Recent)") in ("NO", "BAD")
    assert answer(c.store, "1", "+FLAGS", "(\\Bogus)") in ("NO", "BAD")
    c.logout()
    # flags survive a new session
    c = login(imap)
    ok(c.select("INBOX"))
    data = ok(c.fetch("1:3", "(FLAGS)"))
    assert b"$Work" in data[1] and b"\\Deleted" in data[2]
    c.logout()


def test_search(imap):
    c = login(imap)
    imap.run("deliver", ALICE, input=msg(4, subject=b"=?utf-8?q?caf=C3=A9?= menu",
                                         extra=b"x" * 3000), check=True)
    ok(c.select("INBOX"))
    ok(c.store("1", "+FLAGS", "(\\Seen \\Flagged)"))
    ok(c.store("2", "+FLAGS", "($Work)"))

    def search(*criteria, uid=False):
        data = ok(c.uid("SEARCH", *criteria) if uid else c.search(None, *criteria))
        return [int(x) for x in data[0].split()]

    assert search("ALL") == [1, 2, 3, 4]
    assert search("UNSEEN") == [2, 3, 4] and search("SEEN") == [1]
    assert search("FLAGGED") == [1] and search("KEYWORD", "$Work") == [2]
    assert search("UNKEYWORD", "$Work") == [1, 3, 4]
    assert search("SUBJECT", '"message 3"') == [3]
    assert search("BODY", "needle2") == [2] and search("BODY", "NEEDLE2") == [2]
    assert search("TEXT", "needle3") == [3] and search("TEXT", '"message 1"') == [1]
    assert search("FROM", "sender@example.com") == [1, 2, 3, 4]
    assert search("HEADER", "Message-ID", "<m2@") == [2]
    assert search("LARGER", "2000") == [4] and search("SMALLER", "2000") == [1, 2, 3]
    assert search("OR", "SEEN", "KEYWORD", "$Work") == [1, 2]
    assert search("NOT", "OR", "SEEN", "KEYWORD", "$Work") == [3, 4]
    assert search("2:3") == [2, 3] and search("3:*") == [3, 4]
    assert search("UID", "1,4") == [1, 4]
    assert search("NOT", "DELETED", uid=True) == [1, 2, 3, 4]
    assert search("1:*", "NOT", "DELETED", uid=True) == [1, 2, 3, 4]
    today = time.strftime("%d-%b-%Y")
    assert search("SINCE", today) == [1, 2, 3, 4] and search("BEFORE", today) == []
    assert search("ON", today) == [1, 2, 3, 4]
    assert search("SENTON", "2-Dec-2026") == [1, 2, 3, 4]
    assert search("SENTBEFORE", "1-Dec-2026") == []
    # a decoded RFC 2047 subject, with CHARSET UTF-8 and a literal
    c.literal = "café".encode()
    data = ok(c.search("UTF-8", "SUBJECT"))
    assert [int(x) for x in data[0].split()] == [4]
    assert search("(", "SEEN", "FLAGGED", ")") == [1]
    assert answer(c.search, None, "NOSUCHKEY") == "BAD"
    typ, _ = c.search("KOI8-NOPE", "ALL")
    assert typ == "NO"
    # ESEARCH
    typ, _ = c._simple_command("SEARCH", "RETURN", "(MIN MAX COUNT ALL)", "UNSEEN")
    assert typ == "OK"
    es = c.untagged_responses.pop("ESEARCH", [b""])[0]
    assert re.search(rb"MIN 2 MAX 4 COUNT 3 ALL 2:4|MIN 2.*MAX 4", es), es
    # an empty mailbox: an empty * SEARCH
    ok(c.select("Trash"))
    assert search("ALL") == [] and search("1:* NOT DELETED", uid=True) == []
    c.logout()


def test_copy_move_expunge_close_unselect(imap):
    c = login(imap)
    ok(c.select("INBOX"))
    uidvalidity = int(untagged(c, "UIDVALIDITY")[0])
    data = ok(c.copy("1:2", "Archive"))
    m = re.search(rb"\[COPYUID (\d+) 1:2 1:2\]", data[-1] or b"")
    assert m, (data, c.untagged_responses)
    arch = folder_path(imap, ALICE, "Archive")
    assert len(files(arch)) == 2
    # COPY hard-links
    src = {p.name.split(":")[0]: p.stat().st_ino
           for p in (imap.maildir(ALICE) / "new").iterdir()} | {
        p.name.split(":")[0]: p.stat().st_ino
        for p in (imap.maildir(ALICE) / "cur").iterdir()}
    assert any(p.stat().st_ino in src.values()
               for sub in ("new", "cur") for p in (arch / sub).iterdir())
    typ, data = c.copy("1", "Nowhere")
    assert typ == "NO" and b"TRYCREATE" in data[0]
    # MOVE: COPYUID first, then EXPUNGE
    typ, data = c._simple_command("MOVE", "2", "Trash")
    assert typ == "OK"
    assert c.untagged_responses.pop("EXPUNGE", []) == [b"2"]
    assert b"COPYUID" in b" ".join(c.untagged_responses.pop("OK", []) + data)
    assert len(files(folder_path(imap, ALICE, "Trash"))) == 1
    assert len(files(imap.maildir(ALICE))) == 2
    typ, data = c.uid("MOVE", "3", "Junk")
    assert typ == "OK" and len(files(folder_path(imap, ALICE, "Junk"))) == 1
    c.untagged_responses.pop("EXPUNGE", None)
    # EXPUNGE: the \Deleted ones go, each announced
    ok(c.select("Archive"))
    ok(c.store("1", "+FLAGS", "(\\Deleted)"))
    ok(c.check())
    data = ok(c.expunge())
    assert data == [b"1"] and len(files(arch)) == 1
    # UID EXPUNGE: only the UIDs given
    ok(c.append("Archive", None, None, msg(7)))
    ok(c.append("Archive", None, None, msg(8)))
    ok(c.noop())
    ok(c.store("1:*", "+FLAGS", "(\\Deleted)"))
    data = ok(c.uid("EXPUNGE", "3"))
    assert len(files(arch)) == 2
    # UNSELECT leaves \Deleted messages; CLOSE expunges them silently
    ok(c.unselect())
    assert len(files(arch)) == 2 and c.state == "AUTH"
    ok(c.select("Archive"))
    typ, data = c.close()
    assert typ == "OK" and "EXPUNGE" not in c.untagged_responses
    assert files(arch) == [] and c.state == "AUTH"
    # CLOSE after EXAMINE expunges nothing
    ok(c.select("INBOX"))
    ok(c.store("1", "+FLAGS", "(\\Deleted)"))
    ok(c.select("INBOX", readonly=True))
    ok(c.close())
    assert len(files(imap.maildir(ALICE))) == 1
    ok(c.select("INBOX"))
    assert int(untagged(c, "UIDVALIDITY")[0]) == uidvalidity
    c.logout()


def test_updates_from_another_session(imap):
    """RFC 3501 7.4.1: EXPUNGE is not sent during FETCH, STORE or
    SEARCH; NOOP delivers it, and a flag change as an untagged FETCH."""
    a, b = login(imap), login(imap)
    ok(a.select("INBOX"))
    ok(b.select("INBOX"))
    ok(b.store("3", "+FLAGS", "(\\Flagged)"))
    ok(b.store("1", "+FLAGS", "(\\Deleted)"))
    ok(b.expunge())
    # (the flag change may come with the FETCH's answers)
    seen = ok(a.fetch("1", "(FLAGS)"))
    assert "EXPUNGE" not in a.untagged_responses
    ok(a.noop())
    assert a.untagged_responses.get("EXPUNGE") == [b"1"]
    flags = b" ".join(seen + a.untagged_responses.get("FETCH", []))
    assert b"\\Flagged" in flags, a.untagged_responses
    imap.run("deliver", ALICE, input=msg(5), check=True)
    a.untagged_responses.clear()
    ok(a.noop())
    assert a.untagged_responses.get("EXISTS") == [b"3"]
    # RECENT counts all of a's \Recent ones: 3 if a took them at SELECT
    assert a.untagged_responses.get("RECENT") in ([b"1"], [b"3"])
    for c in (a, b):
        c.logout()


def test_enable_id_check(imap):
    c = login(imap)
    typ, data = c._simple_command("ID", '("name" "imaplib" "version" "3")')
    assert typ == "OK"
    ident = c.untagged_responses.pop("ID", [b""])[0]
    assert ident == b"NIL" or ident.startswith(b"(")
    # ENABLE of something we do not support: an empty ENABLED, OK
    typ, data = c._simple_command("ENABLE", "X-NOTHING")
    assert typ == "OK"
    assert c.untagged_responses.pop("ENABLED", [b""]) in ([b""], [None], [])
    ok(c.select("INBOX"))
    ok(c.check())
    c.logout()


def test_starttls_and_implicit_tls(inst):
    _, ca, cert, key = tls_certs.make()
    inst.configure(tls={"certificate": str(cert), "key": str(key)})
    add_fast_user(inst, ALICE, ALICE_PW)
    start_imapd(inst)
    c = connect(inst)
    assert "STARTTLS" in c.capabilities
    ctx = ssl.create_default_context(cafile=str(ca))
    ok(c.starttls(ssl_context=ctx))
    # capabilities asked again inside TLS: no STARTTLS offered twice
    assert "STARTTLS" not in c.capabilities and "AUTH=PLAIN" in c.capabilities
    ok(c.login(ALICE, ALICE_PW))
    c.logout()
    # STARTTLS after a login (in the clear: loopback) is refused
    r = Raw(inst.imap_port)
    assert r.cmd(b"a", b"LOGIN alice@example.org secret")[1].startswith(b"a OK")
    assert r.cmd(b"b", b"STARTTLS")[1].startswith((b"b BAD", b"b NO"))
    r.cmd(b"c", b"LOGOUT")
    # port 993 style
    inst.imap_port = inst.free_port()
    start_imapd(inst, "--tls")
    s = imaplib.IMAP4_SSL("127.0.0.1", inst.imap_port, ssl_context=ctx, timeout=30)
    assert "STARTTLS" not in s.capabilities
    ok(s.login(ALICE, ALICE_PW))
    assert ok(s.select("INBOX")) == [b"0"]
    s.logout()
