"""A folder made on the way to a commit (a new mailbox and its tmp/, new/
and cur/; the queue's folders) has its name fsync'ed in its parent before
the commit: a power failure after the delivery was recorded cannot take
the folder, and the mail in it, away (the rename rule of DESIGN.md, for
mkdir). Checked on the calls themselves, with strace -y (fds as paths)."""
import os
import re
import shutil
import subprocess

# scripts/deps installs it: a missing strace is a failure, not a skip
STRACE = shutil.which("strace") or "strace"

MSG = b"Subject: first mail\r\n\r\nHello.\r\n"

MKDIR = re.compile(r'^\d+ +(mkdir|mkdirat)\((?:(AT_FDCWD(?:<[^>]*>)?|\d+<([^>]*)>), )?'
                   r'"([^"]*)", [0-7]+\) = 0')
FSYNC = re.compile(r'^\d+ +fsync\(\d+<([^>]*)>\) = 0')
COMMIT = re.compile(r'^\d+ +(link|linkat|rename|renameat2?)\(')


def made_and_synced(log):
    """The folders made (as absolute paths), and for each whether its
    parent was fsync'ed after it was made and before the first link or
    rename (the message into new/, the envelope into the queue)."""
    made = {}
    for line in log.read_text().splitlines():
        m = MKDIR.match(line)
        if m:
            at, path = m.group(3), m.group(4)
            full = os.path.normpath(os.path.join(at, path) if at else path)
            made[full] = False
            continue
        m = FSYNC.match(line)
        if m:
            for folder in made:
                if os.path.dirname(folder) == m.group(1):
                    made[folder] = True
            continue
        if COMMIT.match(line):
            break
    return made


def trace(inst, args, **kw):
    log = inst.dir / "strace.log"
    proc = subprocess.run(
        [STRACE, "-f", "-qq", "-y", "-o", str(log),
         "-e", "trace=mkdir,mkdirat,fsync,link,linkat,rename,renameat,"
         "renameat2", *args],
        env=inst.env({"ASAN_OPTIONS": "detect_leaks=0"}),
        capture_output=True, timeout=30, **kw)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return made_and_synced(log)


def test_new_mailbox_folders_are_synced_in_their_parents(inst):
    (inst.dir / "accounts").write_text("alice@example.org:$6$salt$hash\n")
    inst.spool.mkdir(exist_ok=True)
    inst._own()
    made = trace(inst, [inst.bin("deliver"), "alice@example.org"],
                 input=MSG)
    assert len(inst.messages("alice@example.org")) == 1
    box = str(inst.maildir("alice@example.org"))
    # the domain's folder, the mailbox and its three were all made here
    assert {os.path.dirname(box), box} | {f"{box}/{s}" for s in
                                          ("tmp", "new", "cur")} <= set(made)
    assert [f for f, synced in made.items() if not synced] == []


def test_new_queue_folders_are_synced_in_their_parents(inst):
    inst.configure(main={"delivery": "queue"})
    shutil.rmtree(inst.queue, ignore_errors=True)
    made = trace(inst, [inst.bin("sendmail"), "-i", "bob@example.org"],
                 input=MSG)
    assert len(inst.mailq_json()) == 1
    assert {str(inst.queue), f"{inst.queue}/msg", f"{inst.queue}/env"} <= \
        set(made)
    assert [f for f, synced in made.items() if not synced] == []
