"""Exactly once across crashes (issue 12): smtpd (with its immediate
delivery, [main] delivery = background) and runq are killed with SIGKILL
at every file-system call of a session, one run per call, by strace's
fault injection (--inject=SYSCALL:signal=KILL:when=N; counters are per
syscall and per process, so run N kills each process at its N-th call of
SYSCALL). After every other crash the copies delivered so far are moved
from new/ to cur/ (as a POP3 server reading them would). Then runq -f
runs normally, and:

  - a message whose 250 reached the client is in each mailbox exactly once;
  - one not acknowledged is in each mailbox at most once;
  - right after the crash the queue holds whole entries only (every
    envelope has its data and reads back: mailq --json succeeds), and after
    runq no envelope is left (data in msg/ without an envelope is the
    garbage queue.h names: a session that died before its commit, or an
    entry whose removal was cut short; runq removes it after a day).

The same with error=ENOSPC and error=EIO injected at every write and
fsync: a refused message is never delivered, an acknowledged one exactly
once.

The calls a program makes before its session begins (the dynamic loader's
openat, reading the configuration) are counted in a first, clean run and
skipped: killing there only means no greeting. The runs go four at a
time, each worker with its own instance. Under AddressSanitizer (much
slower) every sixth call is taken.
"""
import collections
import os
import re
import shutil
import smtplib
import socket
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import Instance

# scripts/deps installs it: a missing strace is a failure, not a skip
STRACE = shutil.which("strace") or "strace"

CALLS = ["openat", "write", "fsync", "fdatasync", "rename", "link", "linkat",
         "unlink", "unlinkat", "mkdir", "mkdirat", "flock"]
WRITES = ["write", "fsync", "fdatasync"]
ERRORS = ["ENOSPC", "EIO"]
WORKERS = 4
USERS = ["alice@example.org", "bob@example.org", "carol@example.org"]
# alice named directly, as +extension and through the alias: one copy
RCPTS = ["alice@example.org", "bob@example.org", "team@example.org",
         "Alice+x@example.org"]
MSG = (b"From: Sender <sender@example.com>\r\n"
       b"To: Team <team@example.org>\r\n"
       b"Subject: crash\r\n"
       b"\r\n"
       b"Once and only once.\r\n")


def sanitized(inst):
    with open(inst.bin("smtpd"), "rb") as f:
        return b"__asan_init" in f.read()


def make_instance():
    inst = Instance(tempfile.mkdtemp(prefix="pillarbox-crash-"))
    # nobody logs in: a hash that is never checked saves mailuser's cost
    (inst.dir / "accounts").write_text(
        "".join(f"{user}:$6$salt$hash\n" for user in USERS))
    inst.add_alias("team@example.org: alice@example.org, bob, carol")
    return inst


def strace(inst, program, args, inject, log="/dev/null", **kw):
    # counting: the calls, and sendto for the greeting
    trace = (",".join(CALLS + ["sendto"]) if inject is None
             else inject.split(":")[0])
    cmd = [STRACE, "-f", "-qq", "-o", log, "-e", "trace=" + trace]
    if inject is not None:
        cmd.append("--inject=" + inject)
    # LeakSanitizer cannot run under ptrace (the untraced runs check leaks)
    env = inst.env({"ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0"})
    return subprocess.Popen(cmd + [inst.bin(program), *args], env=env, **kw)


def smtp_session(inst, inject, log="/dev/null"):
    """One SMTP session with an inetd-style smtpd under strace; TRUE if the
    250 after DATA reached the client."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    client = socket.create_connection(lsock.getsockname())
    server, _ = lsock.accept()
    lsock.close()
    proc = strace(inst, "smtpd", [], inject, log, stdin=server,
                  stdout=server, stderr=subprocess.DEVNULL)
    server.close()
    client.settimeout(20)
    acked = False
    s = smtplib.SMTP()
    s.sock = client
    try:
        if s.getreply()[0] == 220:
            s.ehlo("client.example")
            acked = s.sendmail("sender@example.com", RCPTS, MSG) == {}
            s.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        s.close()  # its file object holds the socket open too
        client.close()
    proc.wait(timeout=60)
    return acked


def runq(inst, inject, log="/dev/null"):
    proc = strace(inst, "runq", [], inject, log, stdout=subprocess.DEVNULL,
                  stderr=subprocess.DEVNULL)
    return proc.wait(timeout=60)


def counts_after(log, start):
    """Calls per syscall of each process from the first line matching START
    (the session's beginning) on: {syscall: (skipped, total)}, the
    largest over the processes."""
    seen = collections.defaultdict(collections.Counter)
    begun = set()
    skipped = collections.defaultdict(collections.Counter)
    for line in Path(log).read_text().splitlines():
        m = re.match(r"(\d+) +(\w+)\(", line)
        if not m:
            continue
        pid, call = m.groups()
        if pid not in begun and re.search(start, line):
            begun.add(pid)
        if call not in CALLS:
            continue
        seen[pid][call] += 1
        if pid not in begun:
            skipped[pid][call] += 1
    out = {}
    for pid, c in seen.items():
        for call, total in c.items():
            first = skipped[pid][call] if pid in begun else total
            lo, hi = out.get(call, (first, 0))
            out[call] = (min(lo, first), max(hi, total))
    return out


def points(counts, calls, step, action):
    return [f"{call}:{action}:when={n}"
            for call in calls if call in counts
            for n in range(counts[call][0] + 1, counts[call][1] + 1, step)]


def copies(inst):
    return {u: len(inst.messages(u)) for u in USERS}


def reset(inst):
    for sub in ("env", "msg", "tmp"):
        d = inst.queue / sub
        if d.is_dir():
            for p in d.iterdir():
                p.unlink()
    if inst.spool.is_dir():
        shutil.rmtree(inst.spool)


def read_by_pop3(inst, inject):
    """After every other crash, a POP3 server takes the copies delivered so
    far from new/ to cur/NAME:2,S before the retry: it must find them
    there too."""
    if int(inject.rsplit("=", 1)[1]) % 2 == 0:
        return
    for user in USERS:
        md = inst.maildir(user)
        if (md / "new").is_dir():
            for p in (md / "new").iterdir():
                p.rename(md / "cur" / (p.name + ":2,S"))


def whole_entries(inst):
    """No half state: every envelope has its data and mailq reads them."""
    env = inst.queue / "env"
    msg = inst.queue / "msg"
    ids = [p.name for p in env.iterdir()] if env.is_dir() else []
    problems = [f"env/{i} without msg/{i}" for i in ids
                if not (msg / i).exists()]
    if ids and inst.run("mailq", "--json").returncode != 0:
        problems.append("mailq --json fails")
    return problems


def check(inst, acked, refused=False):
    """The state after runq -f ran to completion: one copy in each mailbox
    of an acknowledged message, none of a refused one, the same number
    (0 or 1) in every mailbox of one that got no answer."""
    problems = []
    if inst.run("runq", "-f").returncode != 0:
        problems.append("runq -f failed")
    env = inst.queue / "env"
    left = sorted(p.name for p in env.iterdir()) if env.is_dir() else []
    if left:
        problems.append(f"envelopes left after runq: {left}")
    got = copies(inst)
    want = 1 if acked else 0 if refused else None
    for user, n in got.items():
        if (want is not None and n != want) or n > 1:
            problems.append(f"{user}: {n} copies (acked={acked})")
    if not acked and len(set(got.values())) > 1:
        problems.append(f"some recipients only: {got}")
    return problems


def smtpd_point(inst, inject):
    reset(inst)
    acked = smtp_session(inst, inject)
    read_by_pop3(inst, inject)
    # an injected error is answered (451): refused, never delivered
    refused = ":error=" in inject and not acked
    return acked, whole_entries(inst) + check(inst, acked, refused)


class Queued:
    """The queue of one accepted message, kept to be put back before each
    run of the runq scenario."""

    def __init__(self, inst):
        reset(inst)
        assert smtp_session(inst, None)
        self.files = {p.relative_to(inst.queue): p.read_bytes()
                      for sub in ("env", "msg")
                      for p in (inst.queue / sub).iterdir()}
        assert len(self.files) == 2

    def restore(self, inst):
        reset(inst)
        st = os.stat(inst.queue)
        for rel, data in self.files.items():
            path = inst.queue / rel
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.write(fd, data)
            os.close(fd)
            os.chown(path, st.st_uid, st.st_gid)


def runq_point(inst, queued, inject):
    queued.restore(inst)
    rc = runq(inst, inject)
    read_by_pop3(inst, inject)
    problems = whole_entries(inst)
    return rc == -9, problems + check(inst, True)


def sweep(kind, run_point, injects, workers):
    """Runs every injection point, WORKERS instances at a time."""
    failures = []
    outcomes = []

    def work(chunk, inst, extra):
        for inject in chunk:
            outcome, problems = run_point(inst, *extra, inject)
            outcomes.append(outcome)
            failures.extend(f"{kind} {inject}: {p}" for p in problems)

    chunks = [injects[i::len(workers)] for i in range(len(workers))]
    with ThreadPoolExecutor(len(workers)) as pool:
        jobs = [pool.submit(work, chunk, inst, extra)
                for chunk, (inst, extra) in zip(chunks, workers)]
        for job in jobs:
            job.result()
    return outcomes, failures


@pytest.fixture(scope="module")
def instances():
    insts = [make_instance() for _ in range(WORKERS)]
    yield insts
    for inst in insts:
        shutil.rmtree(inst.dir, ignore_errors=True)


def configure(insts, delivery):
    for inst in insts:
        inst.configure(main={"delivery": delivery})
    return insts


def smtpd_counts(inst):
    log = inst.dir / "strace.log"
    reset(inst)
    assert smtp_session(inst, None, str(log))
    assert check(inst, True) == []
    # the session begins with the greeting
    return counts_after(log, r'sendto\(\d+, "220 ')


def runq_counts(inst, queued):
    log = inst.dir / "strace.log"
    queued.restore(inst)
    assert runq(inst, None, str(log)) == 0
    assert check(inst, True) == []
    # the run begins with its first look at the queue
    return counts_after(log, r'"[^"]*queue/')


ACTIONS = ["signal=KILL"] + [f"error={e}" for e in ERRORS]


def injections(inst, counts, action):
    """Every session call for a kill, every write and fsync for an error;
    every sixth under AddressSanitizer."""
    step = 6 if sanitized(inst) else 1
    calls = CALLS if action == "signal=KILL" else WRITES
    return points(counts, calls, step, action)


@pytest.mark.parametrize("action", ACTIONS)
def test_smtpd_crash_points(instances, action):
    insts = configure(instances, "background")
    injects = injections(insts[0], smtpd_counts(insts[0]), action)
    assert len(injects) >= 5
    outcomes, failures = sweep("smtpd", smtpd_point, injects,
                               [(i, ()) for i in insts])
    assert failures == [], "\n".join(failures)
    # the injections took effect: some sessions were not acknowledged
    assert outcomes.count(False) > 0 and outcomes.count(True) > 0


@pytest.mark.parametrize("action", ACTIONS)
def test_runq_crash_points(instances, action):
    insts = configure(instances, "queue")
    workers = [(i, (Queued(i),)) for i in insts]
    inst, (queued,) = workers[0]
    injects = injections(inst, runq_counts(inst, queued), action)
    assert len(injects) >= 5
    outcomes, failures = sweep("runq", runq_point, injects, workers)
    assert failures == [], "\n".join(failures)
    if action == "signal=KILL":
        assert outcomes.count(True) > 0  # runq was killed in some runs
