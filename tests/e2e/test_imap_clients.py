"""imapd with real clients nobody here wrote: mbsync (isync) and
offlineimap3 syncing the account both ways into a local Maildir, curl's
imap:// LIST, FETCH and APPEND, fetchmail over IMAP, and neomutt driven
under tmux. The server side is checked on disk (the account's Maildir)
and with imaplib."""
import os
import re
import shutil
import subprocess
import time

import pytest

from imap_support import (ALICE, ALICE_PW, files, folder_path, imap, login,
                          msg)
from util import wait_for


def flags_of(name):
    return name.split(":2,", 1)[1] if ":2," in name else ""


def server_flags(inst, folder="INBOX"):
    """{Subject number: Maildir flags} of a server folder, from disk. A
    client may be changing it (a flag is a rename): a file renamed
    between the listing and the read makes the folder be read again."""
    path = folder_path(inst, ALICE, folder)
    for _ in range(20):
        out = {}
        try:
            for sub in ("new", "cur"):
                for p in (path / sub).iterdir():
                    m = re.search(rb"^Subject: message (\d+)",
                                  p.read_bytes(), re.M)
                    out[int(m.group(1))] = flags_of(p.name)
            return out
        except FileNotFoundError:
            time.sleep(0.05)
    raise AssertionError(f"{path} kept changing under the reads")


def local_files(root, folder):
    d = root / folder
    return {p: p.read_bytes() for sub in ("new", "cur") if (d / sub).is_dir()
            for p in (d / sub).iterdir()}


def local_flags(root, folder):
    out = {}
    for p, data in local_files(root, folder).items():
        m = re.search(rb"^Subject: message (\d+)", data, re.M)
        out[int(m.group(1))] = flags_of(p.name)
    return out


def find_local(root, folder, n):
    for p, data in local_files(root, folder).items():
        if re.search(rb"^Subject: message %d\r?$" % n, data, re.M):
            return p
    raise AssertionError("message %d not in %s" % (n, folder))


def snapshot(inst, root):
    """Names of every message file on both sides."""
    md = inst.maildir(ALICE)
    server = sorted(str(p.relative_to(md)) for p in md.rglob("*")
                    if p.parent.name in ("new", "cur"))
    local = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                   if p.parent.name in ("new", "cur"))
    return server, local


def run(argv, tmp_path, timeout=60):
    out = subprocess.run(argv, capture_output=True, timeout=timeout,
                         env=dict(os.environ, HOME=str(tmp_path)))
    assert out.returncode == 0, (argv, out.stdout, out.stderr)
    return out


# ---- the sync clients: the same story for each ----

def sync_story(imap, root, sync, quiet_again=True):
    """First sync, a no-change resync, a flag change on each side, a move
    to Trash on each side; SYNC() runs the client once. (The changes on
    the two sides touch different messages, so one sync carries both.)"""
    sync()
    assert sorted(local_flags(root, "INBOX")) == [1, 2, 3]
    for folder in ("Drafts", "Sent", "Trash", "Junk", "Archive"):
        assert (root / folder / "cur").is_dir(), folder
    # the bytes are the server's (Maildir LF line ends kept by both;
    # mbsync adds its X-TUID header)
    data = find_local(root, "INBOX", 2).read_bytes()
    head, body = msg(2).replace(b"\r\n", b"\n").split(b"\n\n", 1)
    assert data.endswith(b"\n\n" + body) and b"Delivered-To: " + ALICE.encode() in data
    assert all(line in data for line in head.split(b"\n"))
    # a resync with nothing changed changes nothing on either side
    before = snapshot(imap, root)
    sync()
    assert snapshot(imap, root) == before
    # one round of changes on both sides (to different messages): a flag
    # change on the server reaches the local copy and one on the local
    # copy the server; moved to Trash locally, the message leaves INBOX
    # for Trash on the server; moved to Trash on the server (MOVE), it
    # does so locally, with the flag set before the move
    c = login(imap)
    c.select("INBOX")
    assert c.store("1", "+FLAGS", "(\\Flagged)")[0] == "OK"
    typ, _ = c.uid("MOVE", "1", "Trash")
    assert typ == "OK"
    c.logout()
    p = find_local(root, "INBOX", 3)
    base, _, fl = p.name.partition(":2,")
    p.rename(p.parent.parent / "cur" / (base + ":2," + "".join(sorted(fl + "S"))))
    p = find_local(root, "INBOX", 2)
    base, _, fl = p.name.partition(":2,")
    base = re.sub(r",U=\d+", "", base)  # mbsync's UID in the name
    p.rename(root / "Trash" / "cur" / (base + ":2," + fl))
    sync()
    assert "S" in server_flags(imap)[3]
    assert sorted(server_flags(imap)) == [3], server_flags(imap)
    assert sorted(server_flags(imap, "Trash")) == [1, 2]
    assert sorted(local_flags(root, "INBOX")) == [3]
    assert sorted(local_flags(root, "Trash")) == [1, 2]
    assert "F" in local_flags(root, "Trash")[1]
    # and once more: quiet (offlineimap's 3 s a run: checked once above)
    if not quiet_again:
        return
    before = snapshot(imap, root)
    sync()
    assert snapshot(imap, root) == before


def test_mbsync(imap, tmp_path):
    root = tmp_path / "mail"
    root.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(f"""IMAPAccount pb
Host 127.0.0.1
Port {imap.imap_port}
User {ALICE}
Pass {ALICE_PW}
SSLType None
AuthMechs PLAIN LOGIN

IMAPStore remote
Account pb

MaildirStore local
Path {root}/
Inbox {root}/INBOX
SubFolders Verbatim

Channel pb
Far :remote:
Near :local:
Patterns *
Create Both
Remove None
Expunge Both
SyncState *
""")
    sync_story(imap, root,
               lambda: run(["mbsync", "-c", str(rc), "-a", "-q"], tmp_path))


def test_offlineimap(imap, tmp_path):
    root = tmp_path / "mail"
    root.mkdir()
    rc = tmp_path / "offlineimaprc"
    rc.write_text(f"""[general]
accounts = pb
metadata = {tmp_path}/meta
ui = quiet

[Account pb]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = {root}
sep = .

[Repository remote]
type = IMAP
remotehost = 127.0.0.1
remoteport = {imap.imap_port}
remoteuser = {ALICE}
remotepass = {ALICE_PW}
ssl = no
starttls = no
""")
    sync_story(imap, root,
               lambda: run(["offlineimap", "-c", str(rc), "-o", "-1", "-u", "quiet"],
                           tmp_path), quiet_again=False)


def test_curl_list_fetch_append(imap, tmp_path):
    url = "imap://127.0.0.1:%d/" % imap.imap_port
    user = ["-u", "%s:%s" % (ALICE, ALICE_PW)]
    out = run(["curl", "-sS", *user, url], tmp_path)
    names = re.findall(rb'"\." "?([^"\r\n]+)"?\r?$', out.stdout, re.M)
    assert set(names) >= {b"INBOX", b"Drafts", b"Sent", b"Trash"}, out.stdout
    out = run(["curl", "-sS", *user, url + "INBOX;UID=2"], tmp_path)
    assert out.stdout.endswith(msg(2)), out.stdout
    out = run(["curl", "-sS", *user, url + "INBOX;UID=1;SECTION=HEADER.FIELDS%20(SUBJECT)"],
              tmp_path)
    assert out.stdout.strip() == b"Subject: message 1"
    src = tmp_path / "upload.eml"
    src.write_bytes(msg(77))
    run(["curl", "-sS", *user, "-T", str(src), url + "Sent"], tmp_path)
    (name,) = files(folder_path(imap, ALICE, "Sent"))
    path = folder_path(imap, ALICE, "Sent")
    data = b"".join(p.read_bytes() for sub in ("new", "cur")
                    for p in (path / sub).iterdir())
    assert data == msg(77).replace(b"\r\n", b"\n")
    # SEARCH through curl's custom request
    out = run(["curl", "-sS", *user, url + "INBOX", "-X", "SEARCH BODY needle3"],
              tmp_path)
    assert out.stdout.strip() == b"* SEARCH 3"


def test_fetchmail_over_imap(imap, tmp_path):
    mbox = tmp_path / "mbox"
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        "poll 127.0.0.1 service %d protocol imap auth password\n"
        "  user '%s' there with password '%s' is 'root' here\n"
        "  no sslcertck sslproto '' fetchall\n"
        "  mda \"/bin/sh -c 'cat >> %s'\"\n" % (imap.imap_port, ALICE,
                                                ALICE_PW, mbox))
    rc.chmod(0o600)
    out = subprocess.run(["fetchmail", "-f", str(rc), "--nodetach", "-N",
                          "--pidfile", str(tmp_path / "pid"), "--nosyslog"],
                         capture_output=True, timeout=60,
                         env=dict(os.environ, HOME=str(tmp_path),
                                  FETCHMAILHOME=str(tmp_path)))
    assert out.returncode == 0, out.stdout + out.stderr
    text = mbox.read_bytes()
    for n in (1, 2, 3):
        assert b"Subject: message %d\n" % n in text
        assert b"needle%d in the body" % n in text
    # fetched without keep: deleted and expunged on the server
    assert files(imap.maildir(ALICE)) == []


class Tmux:
    def __init__(self, tmp_path):
        self.sock = str(tmp_path / "tmux.sock")

    def __call__(self, *args):
        return subprocess.run(["tmux", "-S", self.sock, *args],
                              capture_output=True, text=True, timeout=10)

    def screen(self):
        return self("capture-pane", "-p", "-t", "t").stdout

    def wait(self, text, timeout=15):
        try:
            return wait_for(lambda: text in self.screen(), timeout)
        except AssertionError:
            raise AssertionError("%r not on screen:\n%s" % (text, self.screen()))

    def keys(self, *keys):
        self("send-keys", "-t", "t", *keys)


def test_neomutt_reads_and_moves(imap, tmp_path):
    rc = tmp_path / "muttrc"
    rc.write_text(f"""set folder = "imap://127.0.0.1:{imap.imap_port}/"
set imap_user = "{ALICE}"
set imap_pass = "{ALICE_PW}"
set spoolfile = "+INBOX"
set ssl_starttls = no
set ssl_force_tls = no
set header_cache = ""
set message_cachedir = ""
set record = ""
set postponed = "+Drafts"
set confirmappend = no
set delete = yes
set move = no
set mark_old = no
set wait_key = no
set sort = date-sent
set pager_stop = yes
set imap_passive = no
""")
    tmux = Tmux(tmp_path)
    tmux("new-session", "-d", "-s", "t", "-x", "160", "-y", "40",
         "neomutt -n -F %s" % rc)
    try:
        tmux.wait("message 3")
        assert "message 1" in tmux.screen()
        # the first message (sorted by date): read it in the pager
        tmux.keys("1", "Enter")
        tmux.keys("Enter")
        tmux.wait("needle1 in the body")
        tmux.keys("q")
        tmux.wait("message 3")
        # save it to Archive: moved there, gone from INBOX at the sync ($)
        tmux.keys("s")
        tmux.wait("Save to mailbox")
        tmux.keys("C-u", "=Archive", "Enter")
        time.sleep(0.3)
        tmux.keys("$")
        wait_for(lambda: sorted(server_flags(imap)) == [2, 3], 15)
        # read, so \Seen (neomutt syncs the flag before its COPY)
        assert server_flags(imap, "Archive") == {1: "S"}
        tmux.keys("q")
    finally:
        tmux("kill-server")
