"""The benchmark's smoke run (scripts/bench --smoke): tiny sizes, one
run, every workload against pillarbox and the references, so the bench
cannot rot. Run once by scripts/test (not per build: it measures the
plain build)."""
import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FIGURES = ["1 intake+delivery msg/s", "1 server CPU ms/msg", "2 relay msg/s",
           "3 latency median ms", "3 latency p90 ms", "4 RETR MB/s",
           "4 big login+STAT+LIST first s", "4 big login+STAT+LIST second s",
           "6 mailq s", "b 50-connect burst s",
           "7 IMAP login+SELECT first s", "7 IMAP login+SELECT second s",
           "7 IMAP UID FETCH 1:* FLAGS s",
           # the cost of a connection: Postfix's smtpd, Dovecot's pop3
           "c smtpd QUIT conn CPU ms", "c smtpd QUIT conn faults",
           "c pop3d QUIT conn CPU ms", "c pop3d QUIT conn faults",
           "i intake via tcpserver msg/s",
           "i intake via tcpserver server CPU ms/msg",
           # the smtpd with [smtpd] max_use, against Postfix's figures
           "1m intake+delivery msg/s, max_use",
           "1m server CPU ms/msg, max_use",
           "2m relay msg/s, max_use",
           "bm 50-connect burst s, max_use"]
PILLARBOX_ONLY = ["5 smtpd peak RSS MB", "5 runq peak RSS MB",
                  "5 pop3d peak RSS MB", "5 pop3d peak RSS MB, SHA-512 hash",
                  "6 idle runq s",
                  "i smtpd tcpserver QUIT conn CPU ms",
                  "i smtpd tcpserver QUIT conn faults",
                  "i pop3d tcpserver QUIT conn CPU ms",
                  "i pop3d tcpserver QUIT conn faults",
                  "c smtpd max_use QUIT conn CPU ms",
                  "c smtpd max_use QUIT conn faults"]
# The smoke run's few QUIT-only connections may round to 0 ticks of
# 10 ms of CPU; Postfix's smtpd, reused, may take no new page at all
MAY_BE_ZERO = {"c smtpd QUIT conn CPU ms", "c smtpd QUIT conn faults",
               "c pop3d QUIT conn CPU ms", "i smtpd tcpserver QUIT conn CPU ms",
               "i pop3d tcpserver QUIT conn CPU ms",
               # a kept process: no fork, often no new page, few ticks
               "c smtpd max_use QUIT conn CPU ms",
               "c smtpd max_use QUIT conn faults",
               "1m server CPU ms/msg, max_use"}
# the targets of issue 14, each judged against the run's own baselines
TARGETS = ["listener smtpd CPU ms/conn / fork+_exit",
           "listener smtpd faults/conn / fork+_exit",
           "listener pop3d CPU ms/conn / fork+_exit",
           "listener pop3d faults/conn / fork+_exit",
           "listener smtpd max_use CPU ms/conn / fork+_exit",
           "listener smtpd max_use faults/conn / fork+_exit",
           "tcpserver smtpd CPU ms/conn / fork+exec",
           "tcpserver pop3d CPU ms/conn / fork+exec"]


def leftovers(folder):
    """Processes whose command line, working folder or environment (the
    pillarbox programs get PILLARBOX_CONF; Postfix's run in its queue
    folder) name the run's FOLDER: only this run's, whatever else runs."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                seen = f.read()
            with open("/proc/%s/environ" % pid, "rb") as f:
                seen += f.read()
            seen += os.fsencode(os.readlink("/proc/%s/cwd" % pid))
        except OSError:  # gone meanwhile
            continue
        if os.fsencode(folder) in seen:
            found.append((pid, seen[:200]))
    return found


def test_bench_smoke():
    build = os.environ.get("PILLARBOX_BUILD", str(ROOT / "build"))
    proc = subprocess.run([str(ROOT / "scripts" / "bench"), "--smoke",
                           "--build", build], capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert re.search(r"^machine: \d+ cores", out, re.M)
    assert re.search(r"^fsync: +\d+ durable commits/s", out, re.M)
    rows = {}
    for line in out.splitlines():
        m = re.match(r"^(\S.*?\S)\s{2,}(\S+ \[\S+\])\s+(\S+ \[\S+\]|n/a)\s+(\S+)$", line)
        if m:
            rows[m.group(1)] = m.groups()[1:]
    for fig in FIGURES:
        assert fig in rows, (fig, out)
        pb, ref, ratio = rows[fig]
        assert ref != "n/a", (fig, rows[fig])
        assert fig in MAY_BE_ZERO or float(ratio) > 0, (fig, rows[fig])
    for fig in PILLARBOX_ONLY:
        assert fig in rows, (fig, out)
        value = float(rows[fig][0].split()[0])
        assert value > 0 or (fig in MAY_BE_ZERO and value == 0), (fig, out)
    # the machine's own baselines, printed beside the figures
    for base in ("fork+_exit", "fork+exec /bin/true"):
        m = re.search(r"^  %s +CPU (\S+) \[\S+\] ms, minor faults (\S+) "
                      % re.escape(base), out, re.M)
        assert m and float(m.group(1)) > 0 and float(m.group(2)) > 0, out
    for target in TARGETS:
        m = re.search(r"^  %s +\S+ = +\S+x \[\S+\] +<= 2x (met|NOT met)$"
                      % re.escape(target), out, re.M)
        assert m, (target, out)
    # everything it started is gone, and its folder with it
    folder = re.search(r"^folder: +(\S+)$", out, re.M).group(1)
    assert not os.path.exists(folder)
    assert leftovers(folder) == []
