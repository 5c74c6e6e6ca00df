"""The set-user-id sendmail run by a local user who tries to steer it: a
configuration of their own, the umask, resource limits, timers, closed
descriptors, a queue run or a look at other users' mail, and header
injection through -F or bare CRs (issue 12, items 1, 2, 3, 9 and 13)."""
import os
import pwd
import resource
import shutil
import signal
import subprocess
import time

import pytest
from aiosmtpd.controller import Controller

from conftest import RUN_USER
from test_operator import local_user, run_as, setuid_sendmail  # noqa: F401
from util import free_port, wait_for

MSG = b"Subject: from a user\n\nHello.\n"


class Sink:
    """An aiosmtpd handler that keeps what arrives."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((list(envelope.rcpt_tos),
                              envelope.original_content))
        return "250 2.0.0 accepted"


@pytest.fixture
def sink(inst):
    """An SMTP server on 127.0.0.1 that [routes] sends remote.test to."""
    handler = Sink()
    port = free_port()
    ctl = Controller(handler, hostname="127.0.0.1", port=port)
    ctl.start()
    inst.configure(routes={"remote.test": "127.0.0.1:%d" % port})
    try:
        yield handler
    finally:
        ctl.stop()


def user_sendmail(inst, user, args, input=MSG, env=None, **kw):
    binary = setuid_sendmail(inst)
    env = dict(inst.env(env), ASAN_OPTIONS="detect_leaks=0")
    return subprocess.run([binary, *map(str, args)], input=input, env=env,
                          user=user.pw_uid, group=user.pw_gid,
                          extra_groups=[], capture_output=True, timeout=30,
                          **kw)


def test_config_is_never_the_callers(inst, local_user):
    inst.add_user("alice@example.org", "pw")
    theirs = inst.dir / "theirs"
    theirs.mkdir()
    (theirs / "queue").mkdir()
    forged = theirs / "forged.conf"
    forged.write_text("[main]\nqueue = queue\nuser = %s\n" % local_user.pw_name)
    for p in (theirs, theirs / "queue", forged):
        os.chown(p, local_user.pw_uid, local_user.pw_gid)
    # -c '' was taken as the trusted default, then $PILLARBOX_CONF read
    proc = user_sendmail(inst, local_user, ["-c", "", "-i", "alice"],
                         env={"PILLARBOX_CONF": str(forged)})
    assert proc.returncode == 78 and b"empty" in proc.stderr, proc.stderr
    assert not os.listdir(theirs / "queue")
    proc = user_sendmail(inst, local_user, ["-c", "forged.conf", "alice"],
                         cwd=theirs)
    assert proc.returncode == 78 and b"relative" in proc.stderr
    # a file root owns, in a folder the user owns (they could swap it)
    shutil.copy(inst.conf, theirs / "root.conf")
    os.chown(theirs / "root.conf", 0, 0)
    proc = user_sendmail(inst, local_user, ["-c", theirs / "root.conf",
                                            "alice"])
    assert proc.returncode == 78 and b"the folder" in proc.stderr
    # the instance's own configuration (pillarbox's folder in /tmp) is fine
    proc = user_sendmail(inst, local_user, ["-c", inst.conf, "-i", "alice"])
    assert proc.returncode == 0, proc.stderr
    assert wait_for(lambda: inst.messages("alice@example.org"))


def modes(paths):
    return {p.name: oct(os.stat(p).st_mode & 0o7777) for p in paths}


def test_umask_of_the_caller_is_not_used(inst, local_user):
    inst.add_user("alice@example.org", "pw")
    inst.configure(main={"delivery": "queue"})
    proc = user_sendmail(inst, local_user, ["-c", inst.conf, "-i", "alice"],
                         umask=0o777)
    assert proc.returncode == 0, proc.stderr
    entries = [*(inst.queue / "env").iterdir(), *(inst.queue / "msg").iterdir()]
    assert len(entries) == 2
    assert set(modes(entries).values()) == {"0o600"}
    # root's umask 0777 and the set-user-id copy's queue run
    proc = subprocess.run([setuid_sendmail(inst), "-q"], env=inst.env(),
                          umask=0o777, capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    delivered = inst.messages("alice@example.org")
    assert len(delivered) == 1
    assert modes(delivered) == {delivered[0].name: "0o600"}
    md = inst.maildir("alice@example.org")
    assert set(modes([md, md / "new", md / "cur", md / "tmp"]).values()) \
        == {"0o700"}
    assert not list((inst.queue / "env").iterdir())
    # the user's submission and its immediate delivery, which makes a
    # Maildir that is not there yet
    inst.add_user("bob@example.org", "pw")
    shutil.rmtree(inst.maildir("bob@example.org"))
    inst.configure(main={"delivery": "background"})
    proc = user_sendmail(inst, local_user, ["-c", inst.conf, "-i", "bob"],
                         umask=0o777)
    assert proc.returncode == 0, proc.stderr
    delivered = wait_for(lambda: inst.messages("bob@example.org"))
    assert modes(delivered) == {delivered[0].name: "0o600"}
    md = inst.maildir("bob@example.org")
    assert set(modes([md, md / "new", md / "cur", md / "tmp"]).values()) \
        == {"0o700"}


def fsize(soft, hard):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_file_size_limit_of_the_caller(inst, local_user, sink):
    # ulimit -Sf 0: raised again, submitted and sent exactly once
    proc = user_sendmail(inst, local_user,
                         ["-c", inst.conf, "-i", "bob@remote.test"],
                         preexec_fn=fsize(0, resource.RLIM_INFINITY))
    assert proc.returncode == 0, proc.stderr
    wait_for(lambda: sink.messages)
    wait_for(lambda: not list((inst.queue / "env").iterdir()))
    inst.run("runq", "-f", check=True)
    assert len(sink.messages) == 1
    # ulimit -Hf 0 cannot be undone: the submission fails cleanly
    proc = user_sendmail(inst, local_user,
                         ["-c", inst.conf, "-i", "carol@remote.test"],
                         preexec_fn=fsize(0, 0))
    assert proc.returncode in (74, 75), (proc.returncode, proc.stderr)
    assert b"too large" in proc.stderr.lower()
    assert not list((inst.queue / "env").iterdir())
    time.sleep(0.5)
    assert len(sink.messages) == 1


def test_hard_limit_leaves_the_delivery_to_runq(inst, local_user, sink):
    """A hard CPU limit cannot be raised again: the message is queued,
    and delivered by runq rather than in the caller's process."""
    def cpu():
        resource.setrlimit(resource.RLIMIT_CPU, (100, 100))

    proc = user_sendmail(inst, local_user,
                         ["-c", inst.conf, "-i", "bob@remote.test"],
                         preexec_fn=cpu)
    assert proc.returncode == 0, proc.stderr
    time.sleep(1)
    assert not sink.messages
    assert len(list((inst.queue / "env").iterdir())) == 1
    assert "the mail waits for runq" in inst.log_text()
    inst.run("runq", "-f", check=True)
    assert len(sink.messages) == 1


def test_alarm_of_the_caller_is_cleared(inst, local_user):
    """An interval timer survives exec: SIGALRM at a moment the caller
    chose would stop the program there."""
    inst.add_user("alice@example.org", "pw")
    env = dict(inst.env(), ASAN_OPTIONS="detect_leaks=0")
    proc = subprocess.Popen(
        [setuid_sendmail(inst), "-c", str(inst.conf), "-i", "alice"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env, user=local_user.pw_uid, group=local_user.pw_gid,
        extra_groups=[],
        # sendmail waits for its input meanwhile; a second is the time it
        # may take to clear the timer on a loaded machine
        preexec_fn=lambda: signal.setitimer(signal.ITIMER_REAL, 1.0))
    time.sleep(1.5)
    out, err = proc.communicate(MSG, timeout=30)
    assert proc.returncode == 0, (proc.returncode, err)
    assert wait_for(lambda: inst.messages("alice@example.org"))


def test_closed_stdout_is_not_reused(inst):
    """With fd 1 closed, the log file would be opened there and the
    listing written into it."""
    proc = subprocess.run([inst.bin("sendmail"), "-bp"], env=inst.env(),
                          preexec_fn=lambda: os.close(1),
                          stderr=subprocess.PIPE, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "Mail queue is empty" not in inst.log_text()


def test_queue_run_and_listing_for_users(inst, local_user):
    inst.configure(main={"delivery": "queue"})
    inst.run("sendmail", "-i", "alice", input=MSG, check=True)
    proc = user_sendmail(inst, local_user,
                         ["-c", inst.conf, "-i", "bob@example.net"])
    assert proc.returncode == 0, proc.stderr
    me = "%s@example.org" % local_user.pw_name
    session = (b"EHLO localhost\r\nMAIL FROM:<%s>\r\n"
               b"RCPT TO:<carol@elsewhere.test>\r\nDATA\r\n"
               b"Subject: bs\r\n\r\nhi\r\n.\r\nQUIT\r\n" % me.encode())
    proc = user_sendmail(inst, local_user, ["-c", inst.conf, "-bs"],
                         input=session)
    assert b"250 2.0.0" in proc.stdout, proc.stdout
    everything = inst.run("sendmail", "-bp", check=True).stdout.decode()
    assert "root@example.org" in everything and "3 Requests" in everything
    proc = user_sendmail(inst, local_user, ["-c", inst.conf, "-bp"])
    mine = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr
    assert "bob@example.net" in mine and "carol@elsewhere.test" in mine
    assert "root@example.org" not in mine and "alice" not in mine
    assert "2 Requests" in mine
    proc = user_sendmail(inst, local_user, ["-c", inst.conf, "-q"])
    assert proc.returncode == 77 and b"only root and" in proc.stderr
    assert len(list((inst.queue / "env").iterdir())) == 3


def test_no_bare_cr_or_injected_header_goes_out(inst, local_user, sink):
    proc = user_sendmail(inst, local_user,
                         ["-c", inst.conf, "-F", "Eve\nX-Injected: 1", "-i",
                          "bob@remote.test"])
    assert proc.returncode == 64 and b"control character" in proc.stderr
    assert not list((inst.queue / "env").iterdir())
    proc = user_sendmail(inst, local_user,
                         ["-c", inst.conf, "-F", "Eve", "-i",
                          "bob@remote.test"],
                         input=b"Subject: cr\n\nbody\r.\rX-Smuggled: yes\n")
    assert proc.returncode == 0, proc.stderr
    data = wait_for(lambda: sink.messages)[0][1]
    assert b"\r\n.\r\nX-Smuggled: yes\r\n" in data.replace(b"\r\n..", b"\r\n.")
    assert data.count(b"\r") == data.count(b"\r\n")
    assert data.count(b"\n") == data.count(b"\r\n")
    assert b'From: "Eve" <' in data


def test_log_file_is_opened_safely(inst):
    """[main] log: a symlink planted where the log goes is not followed
    (a root-started program would append to whatever it names); a log
    file is created 0600 and handed to the mail user."""
    victim = inst.dir / "victim"
    victim.write_text("keep\n")
    (inst.dir / "log").symlink_to(victim)
    proc = inst.run("runq")
    assert proc.returncode == 78 and b"cannot open the log" in proc.stderr
    assert victim.read_text() == "keep\n"
    (inst.dir / "log").unlink()
    inst.run("runq", check=True)
    st = os.stat(inst.dir / "log")
    assert oct(st.st_mode & 0o777) == "0o600"
    assert st.st_uid == pwd.getpwnam(RUN_USER).pw_uid
    assert "run done" in inst.log_text()
