"""Issue 14, what a listener does so that its children cost less: the
page tables of its code are inherited (one page of each read-only
mapping of a file made private, so that fork copies the mapping's
entries); the children then do not fault the code in again."""
import smtplib
import subprocess

from util import wait_for


def readonly_file_mappings(pid):
    """[range, perms, path, Anonymous kB] of each private read-only
    mapping of a file in /proc/PID/smaps."""
    out, cur = [], None
    for line in open(f"/proc/{pid}/smaps"):
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5 and ":" in fields[3]:
            cur = None
            perms, inode = fields[1], fields[4]
            if inode != "0" and perms[1] == "-" and perms[3] == "p":
                cur = [fields[0], perms,
                       fields[5] if len(fields) > 5 else "", None]
                out.append(cur)
        elif cur is not None and fields[0] == "Anonymous:":
            cur[3] = int(fields[1])
    return out


def test_listener_code_page_tables_inherited(inst):
    listener = inst.start_smtpd()
    maps = readonly_file_mappings(listener.pid)
    program = [m for m in maps if m[2].endswith("/smtpd")]
    libc = [m for m in maps if "/libc.so" in m[2]]
    assert program and libc
    # each holds the page written with its own byte (the relocated
    # read-only data had pages of its own already); the code exactly it
    for rng, perms, path, anon in program + libc:
        assert anon >= 4, (rng, path, anon)
        assert perms != "r-xp" or anon == 4, (rng, path, anon)
    # and the code is unchanged: sessions work
    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as s:
        assert s.noop()[0] == 250


def test_inetd_session_changes_nothing(inst):
    """No fork in the inetd style: no code page is made private there."""
    proc = subprocess.Popen([inst.bin("smtpd")], env=inst.env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().startswith(b"220 ")
        maps = readonly_file_mappings(proc.pid)
        code = [m for m in maps if m[1] == "r-xp" and
                (m[2].endswith("/smtpd") or "/libc.so" in m[2])]
        assert len(code) == 2
        assert all(anon == 0 for _, _, _, anon in code), code
    finally:
        proc.stdin.write(b"QUIT\r\n")
        proc.stdin.close()
        wait_for(lambda: proc.poll() is not None)
        proc.stdout.close()


def test_ignored_signals_reset_at_start(inst):
    """Signals its starter ignored are back to their defaults in every
    program (read from the kernel's SigIgn mask, not asked one by one):
    under inetd an smtpd with SIGTERM ignored could not be stopped. Only
    SIGPIPE is ignored, by smtpd itself."""
    import signal

    def ignore():
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1,
                    signal.SIGCHLD, signal.SIGRTMIN + 3):
            signal.signal(sig, signal.SIG_IGN)

    proc = subprocess.Popen([inst.bin("smtpd")], env=inst.env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            preexec_fn=ignore)
    try:
        assert proc.stdout.readline().startswith(b"220 ")
        status = open(f"/proc/{proc.pid}/status").read()
        mask = int(status.split("\nSigIgn:\t")[1].split("\n")[0], 16)
        assert mask == 1 << (signal.SIGPIPE - 1), hex(mask)
    finally:
        proc.stdin.write(b"QUIT\r\n")
        proc.stdin.close()
        wait_for(lambda: proc.poll() is not None)
        proc.stdout.close()
