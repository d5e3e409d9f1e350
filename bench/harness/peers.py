"""The four things measured side by side, behind one interface:
  start(probe)  bring it up; return once probe(socks_port) succeeds (a real request through it)
  socks_port    where curl points (None: direct, no proxy)
  ready_s       seconds from starting it to carrying its first request
  pids()        every process of this peer (for peak RSS and CPU)
  proxy_pid()   the process that holds the client's SOCKS connections (None: direct)
  circuit_build_s(n)  up to n circuit build times in seconds, or [] where it does not apply
  stop()
"""

import glob
import os
import re
import shutil
import subprocess
import time

from .procs import BenchError, ProcessSet, free_port, tail, wait_port, wait_until
from .tor_network import TorNetwork


class Direct:
    name = "direct"
    socks_port = None
    ready_s = None

    def start(self, probe):
        probe(None)

    def pids(self):
        return []

    def proxy_pid(self):
        return None

    def label(self, pid):
        return None

    def circuit_build_s(self, n):
        return []

    def stop(self):
        pass


class Microsocks:
    name = "microsocks"

    def __init__(self, workdir, log=print):
        self.dir = os.path.join(workdir, "microsocks")
        self.log = log
        self.procs = ProcessSet()
        self.socks_port = None
        self.ready_s = None

    def start(self, probe):
        exe = shutil.which("microsocks")
        if exe is None:
            raise BenchError("microsocks not found: `bash scripts/ensure-packages.sh bench`")
        os.makedirs(self.dir, exist_ok=True)
        self.socks_port = free_port()
        t0 = time.monotonic()
        child = self.procs.start("microsocks", [exe, "-i", "127.0.0.1", "-p", str(self.socks_port)],
                                 os.path.join(self.dir, "microsocks.log"))
        wait_port(self.socks_port, 10, [child], "microsocks to listen")
        probe(self.socks_port)
        self.ready_s = time.monotonic() - t0
        self.log(f"microsocks: SOCKS5 on 127.0.0.1:{self.socks_port}")

    def pids(self):
        return self.procs.pids()

    def proxy_pid(self):
        return self.procs.children[0].pid if self.procs.children else None

    def label(self, pid):
        return self.procs.label(pid)

    def circuit_build_s(self, n):
        return []

    def stop(self):
        self.procs.stop()


class Tor:
    name = "tor"

    def __init__(self, workdir, relays=3, log=print):
        self.workdir = workdir
        self.relays = relays
        self.log = log
        self.net = None
        self.socks_port = None
        self.ready_s = None

    def start(self, probe):
        # A one-authority network with 10-second votes is quick but timing-sensitive on a loaded
        # machine; a second, fresh network (new keys, new ports) gets past a bad first consensus.
        for attempt in (1, 2):
            self.net = TorNetwork(os.path.join(self.workdir, f"try{attempt}"), relays=self.relays, log=self.log)
            try:
                self.net.start(probe)
                break
            except BenchError as e:
                self.net.stop()
                if attempt == 2:
                    raise
                self.log(f"tor: the private network did not come up ({e}); starting a fresh one")
        self.socks_port = self.net.socks_port
        self.ready_s = self.net.ready_s

    def pids(self):
        return self.net.pids()

    def proxy_pid(self):
        return self.net.client_pid()

    def label(self, pid):
        return self.net.procs.label(pid)

    def circuit_build_s(self, n):
        return self.net.circuit_build_times(n)

    def stop(self):
        if self.net:
            self.net.stop()


# A proxy log line that states how long a circuit took, e.g. "circuit 3 built in 1.8 ms".
CIRCUIT_LINE = re.compile(r"circuit\b.*\bbuilt\b.*?\bin ([0-9]+(?:\.[0-9]+)?) ?(ms|us|µs|s)\b", re.I)
UNIT_S = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6}


class Thor:
    """A Thor network from `thor up --socks 127.0.0.1:PORT --dir DIR`, ready when it prints
    "Press Ctrl-C to stop." (it does so once a request has crossed the network)."""

    name = "thor"

    def __init__(self, workdir, thor_exe, relays=3, log=print):
        self.dir = os.path.join(workdir, "thor")
        self.exe = thor_exe
        self.relays = relays
        self.log = log
        self.procs = ProcessSet()
        self.socks_port = None
        self.ready_s = None
        self.reported_ready_s = None

    def start(self, probe, timeout=60):
        os.makedirs(self.dir, exist_ok=True)
        self.socks_port = free_port()
        out_path = os.path.join(self.dir, "thor-up.out")
        t0 = time.monotonic()
        with open(out_path, "wb") as out:
            child = self.procs.start("thor up", [self.exe, "up", "--relays", str(self.relays),
                                                 "--socks", f"127.0.0.1:{self.socks_port}", "--dir", self.dir,
                                                 "--timeout", str(timeout)],
                                     os.path.join(self.dir, "thor-up.err"), stdout=out)

        def printed_ready():
            with open(out_path, "rb") as f:
                return "Press Ctrl-C to stop." in f.read().decode("utf-8", "replace")

        try:
            wait_until("`thor up` to print \"Press Ctrl-C to stop.\"", printed_ready, timeout + 5, [child],
                       interval=0.02)
        except BenchError as e:
            raise BenchError(f"{e}\nstdout: {tail(out_path)}\nstderr: {tail(child.log_path)}") from e
        self.ready_s = time.monotonic() - t0
        with open(out_path) as f:
            m = re.search(r"ready in ([0-9.]+) s", f.read())
        self.reported_ready_s = float(m.group(1)) if m else None
        probe(self.socks_port)
        self.log(f"thor: network ready after {self.ready_s:.2f} s (thor up says "
                 f"{self.reported_ready_s if self.reported_ready_s is not None else '?'} s), "
                 f"SOCKS5 on 127.0.0.1:{self.socks_port}")

    def pids(self):
        return self.procs.pids()

    def label(self, pid):
        return self.procs.label(pid)

    def proxy_pid(self):
        """The `thor proxy` child of `thor up`."""
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if len(argv) > 1 and argv[1] == b"proxy":
                return pid
        return None

    def circuit_build_s(self, n):
        """Circuit build times the proxy logged (the daemons' logs live under --dir)."""
        found = []
        for path in sorted(glob.glob(os.path.join(self.dir, "**", "*.log"), recursive=True)):
            if "proxy" not in os.path.basename(path):
                continue
            with open(path, errors="replace") as f:
                for line in f:
                    m = CIRCUIT_LINE.search(line)
                    if m:
                        found.append(float(m.group(1)) * UNIT_S[m.group(2)])
        return found[:n] if n else found

    def stop(self):
        self.procs.stop()


def build_release(repo, target, log=print):
    """<repo>/build-release/<target> (e.g. app/thor), configured with -Dbuildtype=release when the
    folder is new and brought up to date with ninja."""
    build = os.path.join(repo, "build-release")
    exe = os.path.join(build, target)
    if not os.path.exists(os.path.join(build, "build.ninja")):
        log(f"thor: configuring a release build in {build}")
        subprocess.run(["meson", "setup", build, "-Dbuildtype=release"], cwd=repo, check=True)
    log(f"thor: building {target} (release)")
    r = subprocess.run(["ninja", "-C", build, target], cwd=repo)
    if r.returncode != 0 or not os.path.exists(exe):
        raise BenchError(f"building {exe} failed")
    return exe


def ensure_thor(repo, thor_exe, log=print):
    """The release `thor` binary: the given path, or <repo>/build-release/app/thor built on demand."""
    if thor_exe:
        if not os.access(thor_exe, os.X_OK):
            raise BenchError(f"--thor {thor_exe}: not an executable")
        return thor_exe
    return build_release(repo, "app/thor", log)
