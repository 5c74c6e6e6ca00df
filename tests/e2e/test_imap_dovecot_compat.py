"""Dovecot compatibility on disk (issue 13, "Storage"): a Maildir that
Debian's Dovecot worked on (its dovecot-uidlist, dovecot-keywords,
subscriptions and Maildir++ folders) keeps its UIDVALIDITY, UIDs,
flags, keywords and subscriptions when imapd opens it, and the other
way round. Dovecot runs preauthenticated on stdin/stdout
(/usr/lib/dovecot/imap) with a private config and in-memory indexes, so
what it knows it read from those files."""
import re

from imap_support import (ALICE, add_fast_user, dovecot_session, imap, login,
                          msg, own, start_imapd)


def parse_fetch(text):
    """{uid: flags without \\Recent} from `* n FETCH (UID u FLAGS (...))`."""
    out = {}
    for m in re.finditer(rb"\* \d+ (?:FETCH )?\((?:UID (\d+) FLAGS \(([^)]*)\)|"
                         rb"FLAGS \(([^)]*)\) UID (\d+))\)", text):
        uid = int(m.group(1) or m.group(4))
        flags = (m.group(2) if m.group(1) else m.group(3)).split()
        out[uid] = {f.decode() for f in flags if f != b"\\Recent"}
    return out


def between(text, prev, tag):
    """The untagged answers of the command TAG (after PREV's tagged line)."""
    start = re.search(rb"^%s (OK|NO|BAD).*$" % prev, text, re.M).end()
    end = re.search(rb"^%s (OK|NO|BAD).*$" % tag, text, re.M).start()
    return text[start:end]


def status(text, name):
    m = re.search(rb"\* STATUS \"?%s\"? \(([^)]*)\)" % re.escape(name.encode()), text)
    assert m, text
    return {k.decode(): int(v) for k, v in re.findall(rb"(\w+) (\d+)", m.group(1))}


def imapd_view(inst, folder):
    c = login(inst)
    typ, data = c.select(folder)
    assert typ == "OK", data
    uidvalidity = int(c.untagged_responses["UIDVALIDITY"][0])
    uidnext = int(c.untagged_responses["UIDNEXT"][0])
    typ, data = c.fetch("1:*", "(UID FLAGS)")
    text = b"\n".join(b"* " + d for d in data if d)
    c.logout()
    return uidvalidity, uidnext, parse_fetch(text)


def test_dovecot_maildir_opened_by_imapd(inst):
    add_fast_user(inst, ALICE, "secret")
    for n in range(1, 6):
        inst.run("deliver", ALICE, input=msg(n), check=True)
    md = inst.maildir(ALICE)
    out = dovecot_session(inst.dir, md, [
        b"a SELECT INBOX",
        b"b STORE 1:2 +FLAGS (\\Deleted)",
        b"c EXPUNGE",
        b"d STORE 1 +FLAGS (\\Seen $Label1 Work)",
        b"e STORE 2 +FLAGS (\\Flagged \\Answered Later)",
        b"f CREATE Projects.Alpha",
        b"g COPY 2:3 Projects.Alpha",
        b"h SUBSCRIBE Projects.Alpha",
        b"i STORE 3 +FLAGS (Work)",
        b"j FETCH 1:* (UID FLAGS)",
        b"k STATUS Projects.Alpha (UIDVALIDITY UIDNEXT MESSAGES)",
        b"l UNSELECT",
        b"n STATUS INBOX (UIDVALIDITY UIDNEXT)",
        b"m LOGOUT"])
    assert b"m OK" in out, out
    dc_inbox = parse_fetch(between(out, b"i", b"j"))
    assert sorted(dc_inbox) == [3, 4, 5], out  # UIDs 1 and 2 expunged
    assert dc_inbox[3] == {"\\Seen", "$Label1", "Work"}
    dc_status = status(out, "INBOX")
    dc_proj = status(out, "Projects.Alpha")
    assert (md / "dovecot-uidlist").exists() and (md / "dovecot-keywords").exists()
    own(md)
    start_imapd(inst)
    uidvalidity, uidnext, flags = imapd_view(inst, "INBOX")
    assert uidvalidity == dc_status["UIDVALIDITY"]
    assert uidnext == dc_status["UIDNEXT"]
    assert flags == dc_inbox
    uidvalidity, uidnext, flags = imapd_view(inst, "Projects.Alpha")
    assert uidvalidity == dc_proj["UIDVALIDITY"] and uidnext == dc_proj["UIDNEXT"]
    assert len(flags) == dc_proj["MESSAGES"] == 2
    c = login(inst)
    typ, data = c.lsub('""', "*")
    assert typ == "OK" and any(d and d.rstrip(b'"').endswith(b"Projects.Alpha") for d in data), data
    # the keyword file names Dovecot's letters: a new keyword from imapd
    # is added after them
    c.select("INBOX")
    assert c.store("2", "+FLAGS", "(NewOne)")[0] == "OK"
    c.logout()
    kw = (md / "dovecot-keywords").read_text().split("\n")
    assert kw[:3] == ["0 $Label1", "1 Work", "2 Later"], kw
    assert "3 NewOne" in kw


def test_imapd_maildir_opened_by_dovecot(imap):
    c = login(imap)
    c.select("INBOX")
    assert c.store("1", "+FLAGS", "(\\Deleted)")[0] == "OK"
    c.expunge()
    assert c.store("1", "+FLAGS", "(\\Seen $Work)")[0] == "OK"
    assert c.store("2", "+FLAGS", "(\\Flagged Later $Work)")[0] == "OK"
    assert c.append("INBOX", "(\\Answered)", None, msg(4))[0] == "OK"
    assert c.create("Lists.Rust")[0] == "OK"
    assert c.append("Lists.Rust", "(\\Seen Later)", None, msg(5))[0] == "OK"
    assert c.subscribe("Lists.Rust")[0] == "OK"
    c.logout()
    md = imap.maildir(ALICE)
    uidvalidity, uidnext, ours = imapd_view(imap, "INBOX")
    assert sorted(ours) == [2, 3, 4]
    r_uv, r_next, rust = imapd_view(imap, "Lists.Rust")
    out = dovecot_session(imap.dir, md, [
        b"a SELECT INBOX",
        b"b FETCH 1:* (UID FLAGS)",
        b"h UNSELECT",
        b"c STATUS INBOX (UIDVALIDITY UIDNEXT)",
        b"d STATUS Lists.Rust (UIDVALIDITY UIDNEXT)",
        b"e LSUB \"\" *",
        b"f APPEND INBOX (Fresh) {%d+}\r\n%s" % (len(msg(6)), msg(6)),
        b"g LOGOUT"])
    assert b"g OK" in out, out
    assert parse_fetch(between(out, b"a", b"b")) == ours
    assert status(out, "INBOX") == {"UIDVALIDITY": uidvalidity, "UIDNEXT": uidnext}
    assert status(out, "Lists.Rust") == {"UIDVALIDITY": r_uv, "UIDNEXT": r_next}
    assert re.search(rb'\* LSUB \([^)]*\) "\." "?Lists\.Rust"?', out), out
    # and back: Dovecot's APPEND got the next UID; imapd sees it as such
    m = re.search(rb"APPENDUID (\d+) (\d+)", out)
    assert m and int(m.group(2)) == uidnext
    own(md)
    _, uidnext2, flags = imapd_view(imap, "INBOX")
    assert flags[uidnext] == {"Fresh"} and uidnext2 == uidnext + 1
