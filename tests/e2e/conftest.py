"""Fixtures for the end-to-end tests: a pillarbox instance in a temporary
folder, with its own configuration, queue, spool and free loopback ports,
driving the built programs (PILLARBOX_BUILD, default build/bin)."""
import json
import os
import pwd
import shutil
import smtplib
import subprocess
import tempfile
from pathlib import Path

import pytest

from util import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("PILLARBOX_BUILD", ROOT / "build"))
if not BUILD.is_absolute():
    BUILD = ROOT / BUILD
# the unprivileged user the programs switch to when the tests run as root
RUN_USER = "pillarbox" if os.geteuid() == 0 else pwd.getpwuid(os.getuid()).pw_name

DEFAULTS = {
    "main": {
        "hostname": "mx.example.org",
        "domains": "example.org, example.net",
        "queue": "queue",
        "spool": "spool",
        "accounts": "accounts",
        "aliases": "aliases",
        "log": "log",
        "delivery": "background",
        "user": RUN_USER,
    },
    "smtpd": {"timeout": "10s"},
    "delivery": {
        "connect_timeout": "5s",
        "greeting_timeout": "10s",
        "command_timeout": "10s",
        "data_init_timeout": "10s",
        "data_block_timeout": "10s",
        "data_end_timeout": "10s",
    },
    "pop3d": {},
}


class Instance:
    def __init__(self, folder):
        self.dir = Path(folder)
        self.conf = self.dir / "pillarbox.conf"
        self.queue = self.dir / "queue"
        self.spool = self.dir / "spool"
        self.hostname = "mx.example.org"
        self.smtp_port = free_port()
        self.pop3_port = free_port()
        self.procs = []
        self.sections = {k: dict(v) for k, v in DEFAULTS.items()}
        (self.dir / "accounts").write_text("")
        (self.dir / "aliases").write_text("")
        self.configure()
        self._own()

    def _own(self):
        """When root, hand the folder to the user the programs become."""
        if os.geteuid() != 0:
            return
        pw = pwd.getpwnam(RUN_USER)
        os.chmod(self.dir, 0o755)
        for p in [self.dir, *self.dir.rglob("*")]:
            os.lchown(p, pw.pw_uid, pw.pw_gid)

    def configure(self, **sections):
        for name, keys in sections.items():
            self.sections.setdefault(name, {}).update(keys)
        lines = []
        for name, keys in self.sections.items():
            lines.append(f"[{name}]")
            lines += [f"{k} = {v}" for k, v in keys.items()]
            lines.append("")
        self.conf.write_text("\n".join(lines))
        self._own()

    def bin(self, name):
        return str(BUILD / "bin" / name)

    def env(self, extra=None):
        env = dict(os.environ)
        env["PILLARBOX_CONF"] = str(self.conf)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        if extra:
            env.update(extra)
        return env

    def run(self, name, *args, input=None, env=None, timeout=30, check=False):
        proc = subprocess.run([self.bin(name), *map(str, args)], input=input,
                              env=self.env(env), capture_output=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{name} {args} exited {proc.returncode}: "
                                 f"{proc.stderr.decode(errors='replace')}")
        return proc

    def add_user(self, address, password):
        self.run("mailuser", "add", address, input=password.encode() + b"\n",
                 check=True)

    def add_alias(self, line):
        with open(self.dir / "aliases", "a") as f:
            f.write(line + "\n")
        self._own()

    def _start(self, name, port, args, env=None):
        proc = subprocess.Popen([self.bin(name), "--listen", f"127.0.0.1:{port}",
                                 *map(str, args)], env=self.env(env),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.procs.append(proc)
        try:
            wait_port(port)
        except AssertionError:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"{name} did not start: {err.decode(errors='replace')}")
        return proc

    def start_smtpd(self, *args, env=None):
        return self._start("smtpd", self.smtp_port, args, env)

    def start_pop3d(self, *args, env=None):
        return self._start("pop3d", self.pop3_port, args, env)

    def free_port(self):
        return free_port()

    def queued(self):
        """The envelopes waiting in the queue (the queue's folders are
        made by the first transaction: none yet is none queued)."""
        env = self.queue / "env"
        return sorted(env.iterdir()) if env.is_dir() else []

    def maildir(self, address):
        local, domain = address.rsplit("@", 1)
        return self.spool / domain / local

    def messages(self, address):
        md = self.maildir(address)
        return sorted([p for sub in ("new", "cur") if (md / sub).is_dir()
                       for p in (md / sub).iterdir()])

    def log_text(self):
        p = self.dir / "log"
        return p.read_text(errors="replace") if p.exists() else ""

    def mailq_json(self):
        proc = self.run("mailq", "--json", check=True)
        return json.loads(proc.stdout)

    def send(self, rcpts, msg, sender="sender@example.com"):
        if not any(p.poll() is None and p.args[0].endswith("smtpd") for p in self.procs):
            self.start_smtpd()
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=30) as s:
            return s.sendmail(sender, rcpts, msg)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            for stream in (p.stdout, p.stderr):
                if stream:
                    stream.close()


@pytest.fixture
def inst():
    folder = tempfile.mkdtemp(prefix="pillarbox-e2e-")
    instance = Instance(folder)
    try:
        yield instance
    finally:
        instance.stop()
        shutil.rmtree(folder, ignore_errors=True)


# scripts/test runs these tests on three pytest-xdist workers (-n 3
# --dist loadgroup): most tests wait on timers and sockets, not on the CPU.
# HEAVY names files (or single tests) that load both cores for a minute
# or more, or measure time or CPU under a load of their own: they share
# one group, so they run one after the other on one worker, never beside
# each other, in this order (testssl's four runs first), and the group
# is scheduled before everything else: it is the longest unit of work.
HEAVY = ["test_probes.py::test_tls_ports", "test_crash.py", "test_flood.py",
         "test_pop3d.py::test_big_maildir_login_stat_list",
         "test_pop3d.py::test_wrong_password_and_unknown_user_look_the_same"]


def _rank(item):
    for rank, name in enumerate(HEAVY):
        if name in (item.path.name, f"{item.path.name}::{item.originalname}"):
            return rank
    return len(HEAVY)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    for item in items:
        if _rank(item) < len(HEAVY):
            item.add_marker(pytest.mark.xdist_group("heavy"))
    items.sort(key=_rank)  # stable: the files' order otherwise
