"""The operator's side: sendmail for local programs, mailq's queue repair,
runq --check/--repair and the status file, inetd-style and socket-passing
launchers, and the installed files."""
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import RUN_USER
from util import wait_for

MSG = b"Subject: from a script\n\nHello from cron.\n"


def deliver_all(inst):
    inst.run("runq", "-f", check=True)


def test_sendmail_recipients_as_arguments(inst):
    inst.add_user("alice@example.org", "pw")
    inst.add_user("bob@example.org", "pw")
    proc = inst.run("sendmail", "-oi", "alice", "bob@example.org", input=MSG)
    assert proc.returncode == 0, proc.stderr
    for who in ("alice@example.org", "bob@example.org"):
        msgs = wait_for(lambda: inst.messages(who))
        text = msgs[0].read_bytes()
        assert b"Subject: from a script" in text
        assert b"\nDate: " in text and b"\nMessage-ID: <" in text
        assert b"\nFrom: root@example.org" in text
        assert b"Return-Path: <root@example.org>" in text


def test_sendmail_t_removes_bcc(inst):
    inst.add_user("alice@example.org", "pw")
    inst.add_user("carol@example.org", "pw")
    msg = (b"From: Me <me@example.org>\nTo: Alice <alice@example.org>\n"
           b"Bcc: carol@example.org\nSubject: t\n\n.\nafter a lone dot\n")
    proc = inst.run("sendmail", "-t", "-i", input=msg)
    assert proc.returncode == 0, proc.stderr
    for who in ("alice@example.org", "carol@example.org"):
        text = wait_for(lambda: inst.messages(who))[0].read_bytes()
        header = text.split(b"\n\n")[0]
        assert b"Bcc" not in header
        assert b"after a lone dot" in text
    alice = inst.messages("alice@example.org")[0].read_bytes()
    assert b"carol" not in alice


def test_sendmail_errors(inst):
    proc = inst.run("sendmail", "-i", input=MSG)
    assert proc.returncode == 64 and b"no recipients" in proc.stderr
    proc = inst.run("sendmail", "-x", "alice", input=MSG)
    assert proc.returncode == 64 and b"unknown option" in proc.stderr
    proc = inst.run("sendmail", "-i", "alice", input=b"Subject: x\n\nnul\0\n")
    assert proc.returncode == 65 and b"NUL" in proc.stderr
    assert not list((inst.queue / "env").iterdir())


def test_sendmail_bs_and_bp(inst):
    inst.add_user("alice@example.org", "pw")
    inst.configure(main={"delivery": "queue"})
    session = (b"EHLO localhost\r\nMAIL FROM:<root@example.org>\r\n"
               b"RCPT TO:<alice@example.org>\r\nDATA\r\nSubject: bs\r\n\r\n"
               b"hi\r\n.\r\nQUIT\r\n")
    proc = inst.run("sendmail", "-bs", input=session)
    assert proc.returncode == 0
    out = proc.stdout.decode()
    assert out.startswith("220 ") and "250 2.0.0" in out and "221 " in out
    listing = inst.run("sendmail", "-bp", check=True).stdout.decode()
    assert "root@example.org" in listing and "alice@example.org" in listing
    inst.run("sendmail", "-q", check=True)
    assert len(inst.messages("alice@example.org")) == 1


@pytest.fixture
def local_user():
    """A fresh non-root login and a set-user-id copy of sendmail."""
    if os.geteuid() != 0:
        pytest.fail("run the suite as root (scripts/test does): it creates a user")
    name = "pbtest%d" % os.getpid()
    subprocess.run(["useradd", "-M", "-s", "/bin/sh", name], check=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False)


def setuid_sendmail(inst):
    path = inst.dir / "sendmail"
    shutil.copy(inst.bin("sendmail"), path)
    mail = pwd.getpwnam(inst.sections["main"]["user"])
    os.chown(path, mail.pw_uid, mail.pw_gid)
    os.chmod(path, 0o4755)
    return str(path)


def run_as(user, argv, env, input):
    # LeakSanitizer cannot work in a set-user-id process (not dumpable)
    env = dict(env, ASAN_OPTIONS="detect_leaks=0")
    return subprocess.run(list(map(str, argv)), input=input, env=env,
                          user=user.pw_uid,
                          group=user.pw_gid, extra_groups=[],
                          capture_output=True, timeout=30)


def test_sendmail_as_unprivileged_user(inst, local_user):
    inst.add_user("alice@example.org", "pw")
    binary = setuid_sendmail(inst)
    proc = run_as(local_user, [binary, "-c", inst.conf, "-i", "alice"],
                  inst.env(), MSG)
    assert proc.returncode == 0, proc.stderr
    text = wait_for(lambda: inst.messages("alice@example.org"))[0].read_bytes()
    assert f"Return-Path: <{local_user.pw_name}@example.org>".encode() in text
    assert f"from userid {local_user.pw_uid}".encode() in text
    # the queue stays closed to the user
    assert oct(os.stat(inst.queue).st_mode & 0o777) == "0o700"


def test_sendmail_f_forbidden_for_users(inst, local_user):
    binary = setuid_sendmail(inst)
    proc = run_as(local_user, [binary, "-c", inst.conf, "-f",
                               "ceo@example.org", "-i", "alice@example.org"],
                  inst.env(), MSG)
    assert proc.returncode == 77
    assert b"only root and" in proc.stderr
    # root may
    proc = inst.run("sendmail", "-f", "ceo@example.org", "-i",
                    "nobody@example.com", input=MSG)
    assert proc.returncode == 0


def test_sendmail_bs_user_sends_only_as_self(inst, local_user):
    inst.add_user("alice@example.org", "pw")
    binary = setuid_sendmail(inst)
    me = "%s@example.org" % local_user.pw_name
    session = (b"EHLO localhost\r\nMAIL FROM:<ceo@example.org>\r\n"
               b"MAIL FROM:<%s>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n"
               b"Subject: bs\r\n\r\nhi\r\n.\r\nQUIT\r\n" % me.encode())
    proc = run_as(local_user, [binary, "-c", inst.conf, "-bs"], inst.env(),
                  session)
    out = proc.stdout.decode()
    assert "553 5.7.1 <ceo@example.org>" in out
    assert "250 2.0.0 Ok: queued" in out
    text = wait_for(lambda: inst.messages("alice@example.org"))[0].read_bytes()
    assert ("Return-Path: <%s>" % me).encode() in text


def test_sendmail_refuses_a_user_config(inst, local_user):
    binary = setuid_sendmail(inst)
    forged = inst.dir / "forged.conf"
    forged.write_text("[main]\nqueue = /tmp\n")
    os.chown(forged, local_user.pw_uid, local_user.pw_gid)
    proc = run_as(local_user, [binary, "-c", forged, "-i", "alice"],
                  inst.env(), MSG)
    assert proc.returncode == 78 and b"refused" in proc.stderr
    # the environment is not consulted at all under set-user-id: the
    # compiled-in default is used (and missing here), never $PILLARBOX_CONF
    proc = run_as(local_user, [binary, "-i", "alice"],
                  inst.env({"PILLARBOX_CONF": str(forged)}), MSG)
    assert proc.returncode == 78 and str(forged).encode() not in proc.stderr
    assert b"pillarbox/pillarbox.conf" in proc.stderr


def test_mailx_uses_our_sendmail(inst):
    if not shutil.which("s-nail"):
        pytest.fail("s-nail is not installed (scripts/deps installs it)")
    inst.add_user("alice@example.org", "pw")
    env = inst.env({"MAILRC": "/dev/null", "HOME": str(inst.dir)})
    proc = subprocess.run(
        ["s-nail", "-n", "-S", "mta=" + inst.bin("sendmail"),
         "-s", "from mailx", "alice@example.org"],
        input=b"sent by s-nail\n", env=env, capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    text = wait_for(lambda: inst.messages("alice@example.org"))[0].read_bytes()
    assert b"Subject: from mailx" in text and b"sent by s-nail" in text


def queue_one(inst, rcpt="someone@unreachable.test"):
    inst.configure(main={"delivery": "queue"},
                   routes={"unreachable.test": "127.0.0.1:%d" % inst.free_port()})
    proc = inst.run("sendmail", "-i", rcpt, input=MSG, check=True)
    assert proc.returncode == 0
    (entry,) = inst.mailq_json()
    return entry["id"]


def test_hold_release_requeue_delete(inst):
    inst.add_user("alice@example.org", "pw")
    inst.configure(main={"delivery": "queue"})
    inst.run("sendmail", "-i", "alice", input=MSG, check=True)
    (entry,) = inst.mailq_json()
    qid = entry["id"]
    inst.run("mailq", "--hold", qid, check=True)
    assert inst.mailq_json()[0]["held"] is True
    inst.run("runq", "-f", check=True)
    assert inst.messages("alice@example.org") == []
    inst.run("mailq", "--release", qid, check=True)
    inst.run("runq", check=True)
    assert len(inst.messages("alice@example.org")) == 1
    assert inst.mailq_json() == []

    qid = queue_one(inst)
    inst.run("runq", check=True)
    (entry,) = inst.mailq_json()
    assert entry["recipients"][0]["attempts"] == 1
    assert entry["recipients"][0]["next_attempt"] > time.time()
    inst.run("runq", check=True)  # not due: nothing tried
    assert inst.mailq_json()[0]["recipients"][0]["attempts"] == 1
    inst.run("mailq", "--requeue", "ALL", check=True)
    assert inst.mailq_json()[0]["recipients"][0]["next_attempt"] == 0
    inst.run("runq", check=True)
    assert inst.mailq_json()[0]["recipients"][0]["attempts"] == 2
    proc = inst.run("mailq", "--delete", qid)
    assert proc.returncode == 0
    assert inst.mailq_json() == []
    assert "removed by the operator" in inst.log_text()
    proc = inst.run("mailq", "--delete", qid)
    assert proc.returncode == 65 and qid.encode() in proc.stderr
    proc = inst.run("mailq", "--hold")
    assert proc.returncode == 64


def test_explain(inst):
    qid = queue_one(inst)
    inst.run("runq", check=True)
    out = inst.run("mailq", "--explain", qid, check=True).stdout.decode()
    assert qid in out and "someone@unreachable.test" in out
    assert "[routes] 127.0.0.1:" in out
    assert "attempts: 1" in out and "next attempt:" in out
    assert "delay notice: at" in out and "bounce: at" in out
    proc = inst.run("mailq", "--explain", "0" * 22)
    assert proc.returncode != 0 and b"not in the queue" in proc.stderr


def test_check_and_repair(inst):
    qid = queue_one(inst)
    out = inst.run("runq", "--check")
    assert out.returncode == 0 and b"0 problems" in out.stdout
    # damage: an envelope without data, garbage in an envelope, stale tmp
    (inst.queue / "env" / ("A" * 22)).write_text("id AAAA\n")
    (inst.queue / "env" / qid).write_text("this is not an envelope\n")
    stale = inst.queue / "tmp" / "leftover"
    stale.write_text("x")
    old = time.time() - 3 * 86400
    os.utime(stale, (old, old))
    out = inst.run("runq", "--check")
    assert out.returncode == 1
    text = out.stdout.decode()
    assert "envelope without message data" in text
    assert "unreadable envelope" in text and "stale temporary file" in text
    out = inst.run("runq", "--check", "--repair")
    assert out.returncode == 0, out.stderr
    corrupt = sorted(p.name for p in (inst.queue / "corrupt").iterdir())
    assert corrupt == sorted([qid + ".env", qid + ".msg", "A" * 22 + ".env"])
    assert not stale.exists()
    out = inst.run("runq", "--check")
    assert out.returncode == 0 and b"0 problems" in out.stdout


def test_status_file(inst):
    queue_one(inst)
    inst.run("runq", check=True)
    status = dict(line.split("=", 1) for line in
                  (inst.queue / "status").read_text().splitlines())
    assert abs(int(status["time"]) - time.time()) < 60
    assert status["queue_size"] == "1" and status["deferred"] == "1"
    assert int(status["oldest_age"]) >= 0
    # its mode is the one asked for, not what umask 077 leaves of it
    assert oct(os.stat(inst.queue / "status").st_mode & 0o777) == "0o644"
    # the README's monitoring one-liner
    check = ("test $(( $(date +%%s) - $(sed -n 's/^time=//p' %s) )) -lt 1800"
             % (inst.queue / "status"))
    assert subprocess.run(["sh", "-c", check]).returncode == 0


def test_smtpd_under_tcpserver(inst):
    if not shutil.which("tcpserver"):
        pytest.fail("tcpserver is not installed (scripts/deps installs ucspi-tcp)")
    inst.add_user("alice@example.org", "pw")
    port = inst.free_port()
    proc = subprocess.Popen(["tcpserver", "-q", "127.0.0.1", str(port),
                             inst.bin("smtpd")], env=inst.env())
    inst.procs.append(proc)
    from util import wait_port
    wait_port(port)
    import smtplib
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.sendmail("x@example.com", ["alice@example.org"], b"Subject: t\r\n\r\nx\r\n")
    wait_for(lambda: inst.messages("alice@example.org"))


def test_pop3d_under_tcpserver(inst):
    if not shutil.which("tcpserver"):
        pytest.fail("tcpserver is not installed (scripts/deps installs ucspi-tcp)")
    inst.add_user("alice@example.org", "pw")
    inst.run("deliver", "alice@example.org", input=MSG, check=True)
    port = inst.free_port()
    proc = subprocess.Popen(["tcpserver", "-q", "127.0.0.1", str(port),
                             inst.bin("pop3d")], env=inst.env())
    inst.procs.append(proc)
    from util import wait_port
    wait_port(port)
    import poplib
    p = poplib.POP3("127.0.0.1", port, timeout=30)
    p.user("alice@example.org")
    p.pass_("pw")
    assert p.stat()[0] == 1
    assert b"Hello from cron." in b"\n".join(p.retr(1)[1])
    p.quit()


def test_smtpd_listen_fds(inst):
    """systemd Accept=no: the socket arrives as fd 3 with LISTEN_FDS."""
    inst.add_user("alice@example.org", "pw")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    env = inst.env({"LISTEN_FDS": "1"})
    fd = sock.fileno()
    # the shell puts the socket on fd 3 and makes LISTEN_PID its own pid
    proc = subprocess.Popen(["bash", "-c", 'exec 3<&%d; LISTEN_PID=$$ exec "$0"' % fd,
                             inst.bin("smtpd")], env=env, pass_fds=(fd,))
    inst.procs.append(proc)
    sock.close()
    import smtplib
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.sendmail("x@example.com", ["alice@example.org"], b"Subject: t\r\n\r\nx\r\n")
    wait_for(lambda: inst.messages("alice@example.org"))


def test_systemd_units_verify(tmp_path):
    units = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "systemd")
    if not shutil.which("systemd-analyze"):
        pytest.fail("systemd-analyze missing (scripts/deps installs systemd)")
    # the units as meson installs them (prefix /usr)
    for name in os.listdir(units):
        text = open(os.path.join(units, name)).read()
        target = tmp_path / name.removesuffix(".in")
        target.write_text(text.replace("@SBINDIR@", "/usr/sbin"))
    files = sorted(str(p) for p in tmp_path.iterdir())
    assert len(files) == 16
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", *files],
                          capture_output=True, text=True)
    # the programs are not installed under /usr/sbin on a test machine
    bad = [l for l in proc.stderr.splitlines()
           if l and "is not executable" not in l and "No such file" not in l
           and "not loaded, socket cannot be started" not in l]
    assert bad == [], proc.stderr


def test_meson_install_destdir(tmp_path):
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    build = os.environ.get("PILLARBOX_BUILD", "build")
    proc = subprocess.run(["meson", "install", "-C", os.path.join(root, build),
                           "--destdir", str(tmp_path), "--no-rebuild"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    files = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    for name in ("smtpd", "pop3d", "runq", "deliver", "mailuser",
                 "pillarbox-dns"):
        assert any(f.endswith("sbin/" + name) for f in files), files
    for name in ("mailq", "sendmail"):
        assert any(f.endswith("bin/" + name) and "sbin" not in f for f in files)
    assert any(f.endswith("man8/smtpd.8") for f in files)
    assert any(f.endswith("man8/pillarbox-dns.8") for f in files)
    assert any(f.endswith("man5/pillarbox.conf.5") for f in files)
    assert any(f.endswith("pillarbox/pillarbox.conf.example") for f in files)
    assert any(f.endswith("systemd/system/smtpd.socket") for f in files)
    # the installed programs run against a config in the destdir
    work = tempfile.mkdtemp(prefix="pillarbox-install-")
    try:
        os.chmod(work, 0o755)
        conf = os.path.join(work, "test.conf")
        with open(conf, "w") as f:
            f.write("[main]\ndomains = example.org\nqueue = q\nspool = s\n"
                    "log = stderr\nuser = %s\n" % RUN_USER)
        if os.geteuid() == 0:
            mail = pwd.getpwnam(RUN_USER)
            os.chown(work, mail.pw_uid, mail.pw_gid)
        mailq = next(tmp_path.rglob("bin/mailq"))
        proc = subprocess.run([str(mailq), "-c", conf], capture_output=True,
                              text=True)
        assert proc.returncode == 0, proc.stderr
        assert "Mail queue is empty" in proc.stdout
    finally:
        shutil.rmtree(work, ignore_errors=True)
