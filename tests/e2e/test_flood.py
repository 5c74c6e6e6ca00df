"""The outside probe "a connection flood and slow clients", end to end:
1,000 connections to smtpd from 199 loopback addresses, half idle and half
sending one byte a second. Meanwhile new clients are greeted within a
second, the per-address limit holds, the listener's memory stays bounded,
and once the flood is gone no zombie is left behind."""
import resource
import smtplib
import socket
import subprocess
import time

from util import wait_for

SOURCES = ["127.0.0.%d" % i for i in range(2, 201)]


def sanitized(binary):
    """TRUE for a build with AddressSanitizer (scripts/test's second run)."""
    with open(binary, "rb") as f:
        return b"__asan_init" in f.read()


def flood_size(inst):
    """The probe's 1,000 connections; 200 when every session runs under
    AddressSanitizer, which costs it ten times the CPU and memory (the
    sanitizer run looks for memory errors, not for capacity)."""
    return 200 if sanitized(inst.bin("smtpd")) else 1000
SLOW_TEXT = b"EHLO slow.example\r\n" + b"NOOP\r\n" * 100


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def pss_kib(pid):
    """Proportional set size: shared pages divided among their users."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass  # gone meanwhile
    return 0


def children(pid):
    out = subprocess.run(["ps", "-o", "pid=,stat=", "--ppid", str(pid)],
                         capture_output=True, text=True).stdout
    return [line.split() for line in out.splitlines() if line.strip()]


def zombies(pid):
    return [c for c in children(pid) if c[1].startswith("Z")]


def greeting_time(inst, source):
    """Seconds from connect to the 220 greeting for a client at SOURCE."""
    start = time.monotonic()
    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=5,
                      source_address=(source, 0)) as s:
        took = time.monotonic() - start
        assert s.ehlo()[0] == 250
    return took


def flood(inst, size):
    socks = []
    for i in range(size):
        s = socket.socket()
        s.bind((SOURCES[i % len(SOURCES)], 0))
        s.connect(("127.0.0.1", inst.smtp_port))
        s.setblocking(False)
        socks.append(s)
    return socks[: size // 2], socks[size // 2:]


def trickle(slow, second):
    """One more byte from each slow client."""
    for s in slow:
        try:
            s.send(SLOW_TEXT[second:second + 1])
        except (BlockingIOError, ConnectionError):
            pass


def drain(socks, greeted):
    """Reads what the server sent; adds the greeted sockets to GREETED."""
    for s in socks:
        try:
            if s.recv(65536).startswith(b"220 "):
                greeted.add(s)
        except (BlockingIOError, ConnectionError):
            pass


def test_flood_of_idle_and_slow_clients(inst):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    # room for the flood: the per-address limit alone must not be what
    # saves the server, so the flood stays under it on every address
    inst.configure(smtpd={"max_connections": "1100", "timeout": "5m"})
    listener = inst.start_smtpd()
    time.sleep(0.3)
    rss_before = rss_kib(listener.pid)
    size = flood_size(inst)
    idle, slow = flood(inst, size)
    try:
        # the burst: 1,000 connects wait in the backlog until the listener
        # has forked a session for each (seconds on a busy machine)
        greeted = set()
        end = time.monotonic() + 35
        second = 0
        while len(greeted) < size and time.monotonic() < end:
            trickle(slow, second)
            second += 1
            drain(idle + slow, greeted)
            time.sleep(1)
        assert len(greeted) == size
        # the flood holds: new clients are still greeted at once
        took = []
        for n in range(6):
            tick = time.monotonic()
            trickle(slow, second + n)
            drain(idle + slow, greeted)
            took.append(greeting_time(inst, "127.0.0.%d" % (230 + n)))
            time.sleep(max(0, tick + 1 - time.monotonic()))
        # every flood connection is being served, none was turned away
        assert len(children(listener.pid)) >= size
        assert max(took) < 1.0, took
        # the limit per address holds during the flood
        mine = [socket.create_connection(("127.0.0.1", inst.smtp_port), timeout=5)
                for _ in range(11)]
        lines = [s.makefile("rb").readline() for s in mine]
        assert sum(l.startswith(b"220 ") for l in lines) == 10, lines
        assert sum(l.startswith(b"421 ") for l in lines) == 1, lines
        for s in mine:
            s.close()
        # memory: the listener keeps a few bytes per session, and a
        # session costs little more than its own stack and heap
        assert rss_kib(listener.pid) < rss_before + 4096
        sessions = [int(c[0]) for c in children(listener.pid)]
        per_session = sum(pss_kib(p) for p in sessions) / len(sessions)
        print("PSS per session: %.0f KiB" % per_session)
        assert per_session < 1024
    finally:
        for s in idle + slow:
            s.close()
    # all sessions end (the clients went away), every child is reaped
    wait_for(lambda: len(children(listener.pid)) == 0, timeout=20)
    assert zombies(listener.pid) == []
    assert listener.poll() is None
    assert greeting_time(inst, "127.0.0.250") < 1.0
