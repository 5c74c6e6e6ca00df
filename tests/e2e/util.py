"""Small helpers for the end-to-end tests."""
import fcntl
import os
import socket
import tempfile
import time


def wait_for(predicate, timeout=10.0, interval=0.05):
    """Polls PREDICATE until it returns a true value; returns that value."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")
        time.sleep(interval)


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(port, host="127.0.0.1", timeout=10.0):
    wait_for(lambda: port_open(port, host), timeout)


# The servers' ports. Not the kernel's choice (bind to port 0): that comes
# from the ephemeral range, which the clients' own connections draw from
# too, and two pytest-xdist workers (or two suites on one machine) could
# be handed the same port before either server binds it. Instead a
# counter in a file under flock(2), shared by every test process on the
# machine, walks a range below the ephemeral one; a port something holds
# (any state, TIME_WAIT included) is skipped.
PORTS = (20000, 32000)
PORT_FILE = os.path.join(tempfile.gettempdir(),
                         "pillarbox-e2e-ports.%d" % os.geteuid())


def _bindable(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):  # dnsmasq: UDP
        with socket.socket(family, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def free_port(host="127.0.0.1"):
    low, high = PORTS
    fd = os.open(PORT_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        text = f.read().strip()
        port = int(text) if text.isdigit() else low
        for _ in range(high - low):
            if not low <= port < high:
                port = low
            port += 1
            if _bindable(host, port - 1):
                break
        else:
            raise AssertionError(f"no free port in {PORTS}")
        f.seek(0)
        f.truncate()
        f.write(str(port))
    return port - 1
