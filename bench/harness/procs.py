"""Child processes of the benchmark: start, watch, measure, and always stop them.

Every server the benchmark starts is a child of this process, in its own session, so that one
SIGTERM to the group stops it with whatever it forked. The ProcessSet stops them all on exit,
error or Ctrl-C (run.py turns SIGTERM into an exception so the `finally` blocks run).
"""

import ctypes
import os
import signal
import socket
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")

_PR_SET_PDEATHSIG = 1
try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:
    _libc = None


def _die_with_parent():
    """Runs in the child before exec: SIGTERM it when the benchmark dies, even by SIGKILL, so no
    server outlives a killed run."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class BenchError(Exception):
    """A failure the person running the benchmark can act on (the message says what and where)."""


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def tail(path, lines=20):
    try:
        with open(path, "rb") as f:
            data = f.read()[-8192:].decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join(data.splitlines()[-lines:])


class Child:
    def __init__(self, name, popen, log_path):
        self.name = name
        self.popen = popen
        self.log_path = log_path

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def check_alive(self):
        if not self.alive():
            raise BenchError(f"{self.name} exited with code {self.popen.returncode}; "
                             f"end of {self.log_path}:\n{tail(self.log_path)}")


class ProcessSet:
    """The children of one peer (or of the file server); stop() ends them all."""

    def __init__(self):
        self.children = []

    def start(self, name, argv, log_path, cwd=None, stdout=None):
        log = open(log_path, "ab")
        try:
            popen = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=stdout if stdout is not None else log, stderr=log,
                                     start_new_session=True, preexec_fn=_die_with_parent)
        except FileNotFoundError as e:
            raise BenchError(f"cannot start {name}: {e}") from e
        finally:
            log.close()
        child = Child(name, popen, log_path)
        self.children.append(child)
        return child

    def pids(self):
        """Every live process of this set, including what the children forked."""
        roots = [c.pid for c in self.children if c.alive()]
        return descendants_and_self(roots)

    def label(self, pid):
        """The name we started a process under, or for what a child forked, its command and first
        argument ("thor relay")."""
        for c in self.children:
            if c.pid == pid:
                return c.name
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
        except OSError:
            return None
        return " ".join([os.path.basename(argv[0])] + argv[1:2]) if argv else None

    def stop(self, grace=5.0):
        for c in self.children:
            if c.alive():
                try:
                    os.killpg(c.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        for c in self.children:
            try:
                c.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(c.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                c.popen.wait()
            # Whatever the child left behind in its group (a daemon's own children).
            try:
                os.killpg(c.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.children = []


def wait_until(what, predicate, timeout, children=(), interval=0.1):
    """Polls predicate() until it returns a true value; fails early when a watched child dies."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        for c in children:
            c.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def wait_port(port, timeout, children=(), what=None):
    wait_until(what or f"127.0.0.1:{port} to accept connections", lambda: port_open(port), timeout, children)


def _ppid_map():
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        # The command name may contain spaces and parentheses: fields start after the last ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        parents[int(entry)] = int(fields[1])
    return parents


def descendants_and_self(roots):
    parents = _ppid_map()
    found = [p for p in roots if p in parents]
    seen = set(found)
    i = 0
    while i < len(found):
        for pid, ppid in parents.items():
            if ppid == found[i] and pid not in seen:
                seen.add(pid)
                found.append(pid)
        i += 1
    return found


def proc_stats(pid):
    """{'name', 'hwm_kib', 'rss_kib', 'cpu_s'} of a live process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("utf-8", "replace")
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
    except OSError:
        return None
    name = stat[stat.find("(") + 1:stat.rfind(")")]
    fields = stat[stat.rfind(")") + 2:].split()
    # utime and stime are fields 14 and 15 of stat(5); fields[0] here is field 3.
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    hwm = rss = 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
        elif line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return {"pid": pid, "name": name, "hwm_kib": hwm, "rss_kib": rss, "cpu_s": cpu}


def snapshot(pids, label=None):
    """Stats of each pid still alive, keyed by pid; label(pid) names them when given."""
    out = {}
    for pid in pids:
        s = proc_stats(pid)
        if s is not None:
            if label is not None:
                s["name"] = label(pid) or s["name"]
            out[pid] = s
    return out


def cpu_between(before, after):
    """CPU seconds the processes used between two snapshots (processes present in both)."""
    return sum(after[p]["cpu_s"] - before[p]["cpu_s"] for p in after if p in before)
