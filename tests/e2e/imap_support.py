"""Fixtures and helpers of the imapd end-to-end tests (tests/e2e/test_imap_*).

`imap` is an Instance (conftest.py) with two accounts, three messages
delivered by the built deliver into alice's INBOX, and the built imapd
listening on a loopback port (inst.imap_port), started like pop3d.

IMAP_TEST_TARGET=dovecot runs the same tests against a private Dovecot
(Debian's dovecot-imapd) on the same spool and accounts instead: a check
of the tests themselves against the reference server, never used by
scripts/test. A test that knows Dovecot answers differently where the
RFCs let it says so with `dovecot_differs()`.

Test files import the fixtures they use: `from imap_support import imap`.
"""
import imaplib
import os
import pwd
import socket
import subprocess
import time
from pathlib import Path

import pytest

from util import free_port, wait_port

ALICE, ALICE_PW = "alice@example.org", "secret"
BOB, BOB_PW = "bob@example.org", "hunter2"
TARGET = os.environ.get("IMAP_TEST_TARGET", "pillarbox")
DOVECOT_IMAP = "/usr/lib/dovecot/imap"
SPECIAL = {"Drafts": "\\Drafts", "Sent": "\\Sent", "Trash": "\\Trash",
           "Junk": "\\Junk", "Archive": "\\Archive"}


def msg(n, subject=None, extra=b"", to=b"alice@example.org"):
    subject = subject or b"message %d" % n
    return (b"From: Sender <sender@example.com>\r\nTo: %s\r\n"
            b"Subject: %s\r\nDate: Wed, 02 Dec 2026 09:%02d:00 +0000\r\n"
            b"Message-ID: <m%d@example.com>\r\n\r\n"
            b"line one of %d\r\nneedle%d in the body\r\n%s"
            % (to, subject, n % 60, n, n, n, extra))


def dovecot_differs():
    return TARGET == "dovecot"


def start_imapd(inst, *args, env=None):
    """Starts imapd (or the reference) on inst.imap_port."""
    if not hasattr(inst, "imap_port"):
        inst.imap_port = free_port()
    if TARGET == "dovecot":
        return start_dovecot(inst)
    return inst._start("imapd", inst.imap_port, args, env)


def start_dovecot(inst):
    """A private Dovecot serving INST's accounts file and spool."""
    d = inst.dir / "dovecot"
    d.mkdir(exist_ok=True)
    pw = pwd.getpwnam("pillarbox" if os.geteuid() == 0 else
                      pwd.getpwuid(os.getuid()).pw_name)
    lines = []
    for line in (inst.dir / "accounts").read_text().splitlines():
        if ":" in line and not line.startswith("#"):
            user, hashed = line.split(":", 1)
            lines.append("%s:{CRYPT}%s" % (user, hashed))
    (d / "passwd").write_text("\n".join(lines) + "\n")
    boxes = "".join("  mailbox %s {\n    special_use = %s\n    auto = create\n"
                    "  }\n" % (k, v) for k, v in SPECIAL.items())
    (d / "dovecot.conf").write_text(f"""
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=CRYPT {d}/passwd
}}
userdb {{
  driver = static
  args = uid={pw.pw_uid} gid={pw.pw_gid} home={inst.spool}/%d/%n
}}
mail_location = maildir:~
namespace inbox {{
  inbox = yes
  separator = .
{boxes}}}
service imap-login {{
  inet_listener imap {{
    port = {inst.imap_port}
  }}
}}
""")
    subprocess.run(["dovecot", "-c", str(d / "dovecot.conf")], check=True)
    wait_port(inst.imap_port)

    class Stopper:
        args = ["dovecot"]

        def poll(self):
            return None

        def terminate(self):
            subprocess.run(["doveadm", "-c", str(d / "dovecot.conf"), "stop"],
                           capture_output=True)

        def wait(self, timeout=None):
            time.sleep(0.3)

        stdout = stderr = None
    inst.procs.append(Stopper())


_HASHES = {}


def add_fast_user(inst, address, password):
    """An account with a SHA-512 crypt hash (openssl passwd -6), which the
    accounts file takes beside mailuser's yescrypt: a login then costs
    milliseconds, not the memory-hard yescrypt's tenth of a second, and
    these tests log in often. (test_pop3d covers yescrypt.)"""
    if password not in _HASHES:
        _HASHES[password] = subprocess.run(
            ["openssl", "passwd", "-6", "-stdin"], input=password.encode(),
            capture_output=True, check=True).stdout.strip().decode()
    with open(inst.dir / "accounts", "a") as f:
        f.write("%s:%s\n" % (address, _HASHES[password]))
    # its Maildir, as mailuser add makes it
    for sub in ("tmp", "new", "cur"):
        (inst.maildir(address) / sub).mkdir(parents=True, exist_ok=True)
    inst._own()


def make_imap(inst, messages=3):
    add_fast_user(inst, ALICE, ALICE_PW)
    add_fast_user(inst, BOB, BOB_PW)
    for n in range(1, messages + 1):
        inst.run("deliver", ALICE, input=msg(n), check=True)
    start_imapd(inst)
    return inst


@pytest.fixture
def imap(inst):
    return make_imap(inst)


def connect(inst, timeout=30):
    return imaplib.IMAP4("127.0.0.1", inst.imap_port, timeout=timeout)


def login(inst, user=ALICE, password=ALICE_PW):
    c = connect(inst)
    c.login(user, password)
    return c


class Raw:
    """A raw IMAP connection: lines in, lines out, with a deadline."""

    def __init__(self, port, timeout=10, greet=True):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.f = self.s.makefile("rb")
        self.greeting = self.line() if greet else None

    def send(self, data):
        self.s.sendall(data)

    def line(self):
        return self.f.readline()

    def cmd(self, tag, text):
        """Sends TAG TEXT and returns (untagged lines, tagged line)."""
        self.send(b"%s %s\r\n" % (tag, text))
        return self.until(tag)

    def until(self, tag):
        lines = []
        while True:
            line = self.line()
            if not line:
                raise AssertionError("closed; got %r" % lines)
            if line.startswith(tag + b" "):
                return lines, line
            lines.append(line)
            # a literal's octets are read as they are, not as lines
            if line.rstrip(b"\r\n").endswith(b"}") and b"{" in line:
                size = int(line.rsplit(b"{", 1)[1].rstrip(b"}\r\n"))
                lines.append(self.f.read(size))

    def closed(self):
        """True when the server closed the connection (EOF), reading
        whatever comes before."""
        try:
            while True:
                if not self.f.readline():
                    return True
        except ConnectionResetError:  # closed with our input unread
            return True
        except socket.timeout:
            return False

    def close(self):
        self.f.close()
        self.s.close()


def folder_path(inst, user, name):
    md = inst.maildir(user)
    return md if name.upper() == "INBOX" else md / ("." + name)


def files(path):
    return sorted(p.name for sub in ("new", "cur") if (path / sub).is_dir()
                  for p in (path / sub).iterdir())


def own(path, inst=None):
    """Hands PATH (recursively) to the user the programs run as."""
    if os.geteuid() != 0:
        return
    pw = pwd.getpwnam("pillarbox")
    for p in [Path(path), *Path(path).rglob("*")]:
        os.lchown(p, pw.pw_uid, pw.pw_gid)


def dovecot_session(home, mail_dir, commands, timeout=20):
    """Debian's Dovecot imap run preauthenticated on stdin/stdout with a
    private config: MAIL_DIR is its INBOX (Maildir++ folders beside);
    indexes in memory only, so it reads and writes exactly the
    dovecot-uidlist/dovecot-keywords files. COMMANDS (lines "TAG ...",
    literals as LITERAL+) are sent one at a time, each after the answer
    to the one before (Dovecot runs pipelined commands out of order).
    Returns its whole output."""
    home = Path(home)
    conf = home / "dc-preauth.conf"
    conf.write_text("log_path = /dev/stderr\nssl = no\nbase_dir = %s/dc-run\n"
                    "mail_location = maildir:%s:INDEX=MEMORY\n"
                    "namespace inbox {\n  inbox = yes\n  separator = .\n}\n"
                    % (home, mail_dir))
    own(conf)
    pre = []
    if os.geteuid() == 0:
        pre = ["setpriv", "--reuid", "pillarbox", "--regid", "pillarbox",
               "--clear-groups"]
    proc = subprocess.Popen(pre + ["env", "USER=alice", "HOME=%s" % home,
                                   DOVECOT_IMAP, "-c", str(conf)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    out = []
    deadline = time.monotonic() + timeout
    try:
        out.append(proc.stdout.readline())
        for command in commands:
            tag = command.split(b" ", 1)[0]
            proc.stdin.write(command + b"\r\n")
            proc.stdin.flush()
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                assert line, (b"".join(out), proc.stderr.read())
                out.append(line)
                if line.startswith(tag + b" "):
                    break
        proc.stdin.close()
        proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    return b"".join(out)
