"""smtpd end to end: real clients (smtplib, swaks, raw sockets) against
the built smtpd on loopback; results checked in the Maildirs and the queue."""
import email
import os
import signal
import smtplib
import socket
import subprocess
import time

import pytest

from util import wait_for

MSG = (b"From: Sender <sender@example.com>\r\n"
       b"To: Alice <alice@example.org>\r\n"
       b"Subject: hello\r\n"
       b"\r\n"
       b"Hello Alice.\r\n"
       b".leading dot\r\n"
       b"Bye.\r\n")


def reply(sock):
    """Reads one (possibly multi-line) SMTP reply."""
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
        lines = data.split(b"\r\n")
        if len(lines) >= 2 and len(lines[-2]) >= 4 and lines[-2][3:4] == b" ":
            return data


def replies(sock, n, timeout=10):
    sock.settimeout(timeout)
    data = b""
    while data.count(b"\r\n") < n or not all(
            l[3:4] == b" " for l in data.split(b"\r\n")[-2:-1]):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        codes = [l for l in data.split(b"\r\n") if len(l) >= 4 and l[3:4] == b" "]
        if len(codes) >= n:
            break
    return [l for l in data.split(b"\r\n") if len(l) >= 4 and l[3:4] == b" "]


def queued(inst):
    env = inst.queue / "env"
    return sorted(env.iterdir()) if env.is_dir() else []


def msg_files(inst):
    d = inst.queue / "msg"
    return sorted(d.iterdir()) if d.is_dir() else []


@pytest.fixture
def alice(inst):
    inst.add_user("alice@example.org", "secret")
    return inst


def test_smtplib_delivers_to_maildir(alice):
    inst = alice
    inst.start_smtpd()
    with smtplib.SMTP("127.0.0.1", inst.smtp_port) as s:
        code, ehlo = s.ehlo("client.example.com")
        assert code == 250
        for kw in (b"PIPELINING", b"SIZE", b"8BITMIME", b"ENHANCEDSTATUSCODES",
                   b"SMTPUTF8"):
            assert kw in ehlo
        assert s.sendmail("sender@example.com", ["alice@example.org"], MSG) == {}
    files = wait_for(lambda: inst.messages("alice@example.org"))
    assert len(files) == 1
    data = files[0].read_bytes()
    head, _, rest = data.partition(b"\nReceived: ")
    assert head.split(b"\n") == [b"Return-Path: <sender@example.com>",
                                 b"Delivered-To: alice@example.org"]
    # after our Received: header the message is exactly what was sent,
    # unstuffed, with LF line ends as Maildir files have
    received, _, body = rest.partition(b"\nFrom: ")
    assert b"by mx.example.org" in received
    assert b"From: " + body == MSG.replace(b"\r\n", b"\n")
    name = files[0].name
    assert f",S={len(data)}," in name
    lines = data.count(b"\n")
    assert f",W={len(data) + lines}" in name
    # logged just after the delivery, which the file may beat
    assert wait_for(lambda: "status=sent" in inst.log_text())
    assert queued(inst) == []


def test_swaks_delivers(alice):
    inst = alice
    inst.start_smtpd()
    proc = subprocess.run(["swaks", "--server", f"127.0.0.1:{inst.smtp_port}",
                           "--from", "someone@example.net",
                           "--to", "alice+lists@example.org",
                           "--header", "Subject: swaks test", "--body", "via swaks"],
                          capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stdout.decode()
    assert b"250 2.0.0" in proc.stdout
    files = wait_for(lambda: inst.messages("alice@example.org"))
    text = files[0].read_bytes()
    assert b"Subject: swaks test" in text and b"via swaks" in text


def test_unknown_user_550(alice):
    inst = alice
    inst.start_smtpd()
    with smtplib.SMTP("127.0.0.1", inst.smtp_port) as s:
        s.ehlo("c")
        s.mail("sender@example.com")
        code, text = s.rcpt("nobody@example.org")
        assert code == 550 and text.startswith(b"5.1.1")
        code, _ = s.rcpt("postmaster@example.org")
        assert code == 250


def test_relay_denied_outside_relay_networks(alice):
    inst = alice
    inst.configure(smtpd={"relay_networks": "192.0.2.0/24"})
    inst.start_smtpd()
    with smtplib.SMTP("127.0.0.1", inst.smtp_port) as s:
        s.ehlo("c")
        s.mail("sender@example.com")
        code, text = s.rcpt("someone@elsewhere.test")
        assert code == 554 and text.startswith(b"5.7.1")
        code, _ = s.rcpt("alice@example.org")
        assert code == 250


def test_relay_allowed_inside_relay_networks(alice):
    inst = alice
    inst.configure(main={"delivery": "queue"})
    inst.start_smtpd()
    with smtplib.SMTP("127.0.0.1", inst.smtp_port) as s:
        assert s.sendmail("alice@example.org", ["bob@elsewhere.test"], MSG) == {}
    assert len(queued(inst)) == 1


def test_size_declared_and_enforced(alice):
    inst = alice
    inst.configure(smtpd={"max_message_size": "10K"}, main={"delivery": "queue"})
    inst.start_smtpd()
    with smtplib.SMTP("127.0.0.1", inst.smtp_port) as s:
        code, ehlo = s.ehlo("c")
        assert b"SIZE 10240" in ehlo
        code, text = s.mail("sender@example.com", ["SIZE=20000"])
        assert code == 552 and text.startswith(b"5.3.4")
        s.rset()
        big = MSG + b"x" * 78 + b"\r\n"
        big = big * 200
        # smtplib would declare SIZE; without it the limit holds while
        # the data streams in
        assert s.mail("sender@example.com")[0] == 250
        assert s.rcpt("alice@example.org")[0] == 250
        code, text = s.data(big)
        assert code == 552 and text.startswith(b"5.3.4")
        # the session goes on after the refusal
        assert s.noop()[0] == 250
    assert queued(inst) == [] and msg_files(inst) == []


def test_pipelined_commands(alice):
    inst = alice
    inst.configure(main={"delivery": "queue"})
    inst.start_smtpd()
    with socket.create_connection(("127.0.0.1", inst.smtp_port)) as sock:
        assert reply(sock).startswith(b"220 ")
        sock.sendall(b"EHLO c\r\n")
        assert b"PIPELINING" in reply(sock)
        sock.sendall(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<alice@example.org>\r\n"
                     b"RCPT TO:<nobody@example.org>\r\nDATA\r\n")
        got = replies(sock, 4)
        assert [l[:3] for l in got] == [b"250", b"250", b"550", b"354"]
        sock.sendall(b"Subject: p\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        got = replies(sock, 2)
        assert [l[:3] for l in got] == [b"250", b"221"]
    assert len(queued(inst)) == 1


@pytest.mark.parametrize("bad", [
    b"Subject: x\r\n\r\nbare\nLF\r\n",
    b"Subject: x\r\n\r\nbare\rCR\r\n",
    b"Subject: x\r\n\r\nnul\0byte\r\n",
    b"Subject: x\r\n\r\n" + b"y" * 1200 + b"\r\n",
    # the SMTP smuggling attempt: a fake end of data with bare LFs
    b"Subject: x\r\n\r\nhi\n.\nMAIL FROM:<evil@example.com>\r\n",
], ids=["bare-lf", "bare-cr", "nul", "long-line", "smuggling"])
def test_bad_data_rejected_nothing_queued(alice, bad):
    inst = alice
    inst.configure(main={"delivery": "queue"})
    inst.start_smtpd()
    with socket.create_connection(("127.0.0.1", inst.smtp_port)) as sock:
        reply(sock)
        sock.sendall(b"EHLO c\r\n")
        reply(sock)
        sock.sendall(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
        assert [l[:3] for l in replies(sock, 3)] == [b"250", b"250", b"354"]
        sock.sendall(bad + b".\r\n")
        code = replies(sock, 1)[0]
        assert code[:1] == b"5", code
        sock.sendall(b"NOOP\r\n")
        assert replies(sock, 1)[0].startswith(b"250")
    assert queued(inst) == [] and msg_files(inst) == []


def test_long_command_line_keeps_session_in_sync(alice):
    inst = alice
    inst.start_smtpd()
    with socket.create_connection(("127.0.0.1", inst.smtp_port)) as sock:
        reply(sock)
        sock.sendall(b"EHLO " + b"a" * 10000 + b"\r\nNOOP\r\n")
        got = replies(sock, 2)
        assert got[0].startswith(b"500") and got[1].startswith(b"250")


def test_stalled_client_times_out(alice):
    inst = alice
    inst.configure(smtpd={"timeout": "2s"})
    inst.start_smtpd()
    with socket.create_connection(("127.0.0.1", inst.smtp_port)) as sock:
        sock.settimeout(10)
        assert reply(sock).startswith(b"220")
        start = time.monotonic()
        got = reply(sock)
        assert got.startswith(b"421 4.4.2"), got
        assert 1.5 < time.monotonic() - start < 8


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_kill_smtpd_mid_data_leaves_nothing_visible(alice):
    inst = alice
    inst.configure(main={"delivery": "queue"})
    server = inst.start_smtpd()
    with socket.create_connection(("127.0.0.1", inst.smtp_port)) as sock:
        reply(sock)
        sock.sendall(b"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
        replies(sock, 4)
        sock.sendall(b"Subject: half\r\n\r\n" + b"z" * 100000 + b"\r\n")
        session = wait_for(lambda: children(server.pid))
        wait_for(lambda: msg_files(inst))  # the data file is being written
        for pid in session:
            os.kill(pid, signal.SIGKILL)
    assert queued(inst) == []
    out = inst.run("mailq", check=True)
    assert b"Mail queue is empty" in out.stdout


def test_kill_runq_mid_delivery_loses_nothing(alice):
    inst = alice
    users = [f"u{i}@example.org" for i in range(30)]
    for u in users:
        inst.add_user(u, "pw")
    inst.configure(main={"delivery": "queue"})
    inst.start_smtpd()
    big = MSG + (b"0123456789" * 7 + b"\r\n") * 30000   # about 2 MB
    with smtplib.SMTP("127.0.0.1", inst.smtp_port) as s:
        s.sendmail("sender@example.com", users, big)
    runq = subprocess.Popen([inst.bin("runq")], env=inst.env())
    wait_for(lambda: any(inst.messages(u) for u in users), timeout=20)
    runq.kill()
    runq.wait()
    proc = inst.run("runq", timeout=120)
    assert proc.returncode == 0, proc.stderr
    counts = [len(inst.messages(u)) for u in users]
    assert all(c >= 1 for c in counts), counts
    # at worst the one delivery in flight is repeated
    assert sum(counts) <= len(users) + 1, counts
    assert queued(inst) == []


def test_mailq_shows_queued_message(alice):
    inst = alice
    inst.configure(main={"delivery": "queue"})
    inst.start_smtpd()
    with smtplib.SMTP("127.0.0.1", inst.smtp_port) as s:
        s.sendmail("sender@example.com", ["alice@example.org", "bob@elsewhere.test"], MSG)
    text = inst.run("mailq", check=True).stdout.decode()
    qid = queued(inst)[0].name
    assert qid in text and "sender@example.com" in text
    assert "alice@example.org" in text and "bob@elsewhere.test" in text
    assert "1 Request" in text
    js = inst.mailq_json()
    assert len(js) == 1 and js[0]["id"] == qid
    assert js[0]["sender"] == "sender@example.com"
    assert sorted(r["address"] for r in js[0]["recipients"]) == [
        "alice@example.org", "bob@elsewhere.test"]
    assert all(r["state"] == "pending" for r in js[0]["recipients"])
    # then runq delivers the local one; the remote one stays
    assert inst.run("runq").returncode == 0
    assert len(inst.messages("alice@example.org")) == 1


def test_alias_expansion_and_postmaster(alice):
    inst = alice
    inst.add_user("bob@example.org", "pw")
    inst.add_alias("team@example.org: alice@example.org, bob")
    inst.add_alias("postmaster: alice@example.org")
    inst.start_smtpd()
    with smtplib.SMTP("127.0.0.1", inst.smtp_port) as s:
        s.sendmail("sender@example.com", ["team@example.org"], MSG)
        s.sendmail("sender@example.com", ["postmaster@example.net"], MSG)
    wait_for(lambda: len(inst.messages("alice@example.org")) == 2)
    wait_for(lambda: len(inst.messages("bob@example.org")) == 1)
    wait_for(lambda: queued(inst) == [])


def test_delivered_to_loop_not_delivered_again(alice):
    inst = alice
    inst.start_smtpd()
    looped = b"Delivered-To: alice@example.org\r\n" + MSG
    with smtplib.SMTP("127.0.0.1", inst.smtp_port) as s:
        s.sendmail("", ["alice@example.org"], looped)
    wait_for(lambda: "5.4.6" in inst.log_text())
    assert inst.messages("alice@example.org") == []


def test_deliver_as_mda(alice):
    inst = alice
    proc = inst.run("deliver", "-f", "x@example.com", "alice@example.org",
                    input=MSG.replace(b"\r\n", b"\n"))
    assert proc.returncode == 0, proc.stderr
    files = inst.messages("alice@example.org")
    assert len(files) == 1
    assert files[0].read_bytes().startswith(b"Return-Path: <x@example.com>\n")
    proc = inst.run("deliver", "nobody@example.org", input=MSG)
    assert proc.returncode == 67 and b"nobody@example.org" in proc.stderr


def test_ipv6_listen(alice):
    inst = alice
    port = inst.free_port()
    p = subprocess.Popen([inst.bin("smtpd"), "--listen", f"[::1]:{port}"],
                         env=inst.env())
    inst.procs.append(p)
    wait_for(lambda: subprocess.run(["swaks", "--server", f"[::1]:{port}", "-6",
                                     "--quit-after", "EHLO"],
                                    capture_output=True).returncode == 0)
    with smtplib.SMTP("::1", port) as s:
        assert s.sendmail("a@example.com", ["alice@example.org"], MSG) == {}
    wait_for(lambda: inst.messages("alice@example.org"))


def test_inetd_mode_on_stdin(alice):
    inst = alice
    inst.configure(main={"delivery": "queue"})
    ours, theirs = socket.socketpair()
    p = subprocess.Popen([inst.bin("smtpd")], stdin=theirs, stdout=theirs,
                         env=inst.env())
    theirs.close()
    with ours:
        assert reply(ours).startswith(b"220")
        ours.sendall(b"HELO c\r\nMAIL FROM:<a@example.com>\r\n"
                     b"RCPT TO:<alice@example.org>\r\nDATA\r\n")
        assert [l[:3] for l in replies(ours, 4)] == [b"250", b"250", b"250", b"354"]
        ours.sendall(b"Subject: inetd\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        assert [l[:3] for l in replies(ours, 2)] == [b"250", b"221"]
    assert p.wait(timeout=10) == 0
    assert len(queued(inst)) == 1


def test_systemd_socket_activation(alice):
    inst = alice
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    port = lsock.getsockname()[1]
    os.set_inheritable(lsock.fileno(), True)
    p = subprocess.Popen(
        ["bash", "-c", f'exec 3<&{lsock.fileno()}; LISTEN_PID=$$ LISTEN_FDS=1 exec "$0"',
         inst.bin("smtpd")], env=inst.env(), pass_fds=[lsock.fileno()])
    inst.procs.append(p)
    lsock.close()
    with smtplib.SMTP("127.0.0.1", port) as s:
        assert s.sendmail("a@example.com", ["alice@example.org"], MSG) == {}
    wait_for(lambda: inst.messages("alice@example.org"))


def test_max_connections(alice):
    inst = alice
    inst.configure(smtpd={"max_connections": "1"})
    inst.start_smtpd()
    # start_smtpd's probe used the only slot for a moment: wait for it to end
    time.sleep(0.3)
    first = socket.create_connection(("127.0.0.1", inst.smtp_port))
    assert reply(first).startswith(b"220")
    second = socket.create_connection(("127.0.0.1", inst.smtp_port))
    second.settimeout(1)
    with pytest.raises(socket.timeout):
        second.recv(100)
    first.sendall(b"QUIT\r\n")
    reply(first)
    first.close()
    second.settimeout(10)
    assert reply(second).startswith(b"220")
    second.close()
