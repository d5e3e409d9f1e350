"""One relay of the `thor up` network holding many circuits at once (Thor only: Tor's relays do not
speak Thor's protocol). bench/circuit_load builds them through the relay, as several proxies
would, and holds them while this reads the relay's memory from /proc; then a request through the
proxy, whose every circuit crosses that relay (three hops over three relays), tells whether the
relay stayed healthy, and so does a fresh set of circuits built through it afterwards."""

import json
import os
import queue
import signal
import subprocess
import threading
import time

from .peers import build_release
from .procs import BenchError, _die_with_parent, proc_stats, tail

KIB_PER_MIB = 1024


def ensure_circuit_load(repo, thor_exe, log=print):
    """The release circuit_load: beside a given thor (<build>/bench/circuit_load), or built in
    <repo>/build-release like thor itself (run.py's ensure_thor configured that folder)."""
    if thor_exe:
        beside = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(thor_exe))), "bench", "circuit_load")
        if os.access(beside, os.X_OK):
            return beside
    return build_release(repo, "bench/circuit_load", log)


def _argv_of(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _flag(argv, name):
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a[len(name) + 1:]
    return None


def network_of(peer):
    """The directory address and key file, and the relays ({pid, nickname, listen}) of a Thor peer,
    read from the command lines `thor up` gave its children."""
    directory, key, relays = None, None, []
    for pid in peer.pids():
        argv = _argv_of(pid)
        if len(argv) < 2:
            continue
        if argv[1] == "directory":
            directory = _flag(argv, "--listen")
        elif argv[1] == "relay":
            relays.append({"pid": pid, "nickname": _flag(argv, "--nickname"), "listen": _flag(argv, "--listen")})
            key = key or _flag(argv, "--directory-key")
    if not directory or not key or not relays:
        raise BenchError("cannot find the directory and relays of the `thor up` network in /proc")
    relays.sort(key=lambda r: r["nickname"] or "")
    return directory, key, relays


def _mib(kib):
    return kib / KIB_PER_MIB if kib is not None else None


class _Lines:
    """Reads a child's stdout lines on a thread, so that waiting for one can time out."""

    def __init__(self, stream):
        self.q = queue.Queue()
        self.t = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self.t.start()

    def _run(self, stream):
        for line in stream:
            self.q.put(line)
        self.q.put(None)

    def next_json(self, timeout, child, log_path):
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.q.get(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise BenchError(f"circuit_load said nothing for {timeout:.0f} s; end of {log_path}:\n"
                                     f"{tail(log_path)}")
                continue
            if line is None:
                raise BenchError(f"circuit_load exited ({child.wait()}) before reporting; end of {log_path}:\n"
                                 f"{tail(log_path)}")
            line = line.strip()
            if line.startswith("{"):
                return json.loads(line)


def relay_circuits(peer, exe, count, probe, workdir, streams=False, log=print):
    """Makes the first relay of `peer` hold `count` one-hop circuits (one echoed stream each with
    streams=True) and returns what happened: circuits held, time to build them, the relay's RSS
    before and while they are held, and whether the relay still carries requests afterwards."""
    directory, key, relays = network_of(peer)
    relay = relays[0]
    pid = relay["pid"]
    log_path = os.path.join(workdir, "circuit_load.log")
    before = proc_stats(pid)
    if before is None:
        raise BenchError(f"relay {relay['nickname']} (pid {pid}) is not running")
    base = [exe, "--directory", directory, "--directory-key", key, "--relay", relay["nickname"]]
    argv = base + ["--circuits", str(count)] + (["--streams"] if streams else [])
    out = {"relay": relay["nickname"], "relay_pid": pid, "requested": count, "hops": 1, "streams": streams,
           "argv": argv[1:], "rss_before_mib": _mib(before["rss_kib"]), "hwm_before_mib": _mib(before["hwm_kib"])}
    with open(log_path, "ab") as err:
        child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                                 start_new_session=True, preexec_fn=_die_with_parent)
    try:
        lines = _Lines(child.stdout)
        # Generous: circuit_load builds a few thousand a second on this machine; a stalled relay fails.
        built = lines.next_json(60 + count / 100, child, log_path)
        if built.get("event") == "error":
            raise BenchError(f"circuit_load: {built.get('error')}")
        out["built"] = built
        # While they are held: the relay's RSS over a second (its peak is what counts), then a
        # request through the proxy, which crosses this relay.
        samples = []
        for _ in range(5):
            s = proc_stats(pid)
            if s is None:
                break
            samples.append(s)
            time.sleep(0.2)
        if not samples:
            raise BenchError(f"relay {relay['nickname']} died while holding the circuits")
        out["rss_held_mib"] = _mib(max(s["rss_kib"] for s in samples))
        out["hwm_held_mib"] = _mib(samples[-1]["hwm_kib"])
        out["cpu_s_to_build"] = samples[0]["cpu_s"] - before["cpu_s"]
        out["probe_while_held"] = _probe(probe, peer.socks_port)
        child.stdin.close()  # circuit_load releases the circuits when its stdin closes
        released = lines.next_json(30, child, log_path)
        out["released"] = released
        child.wait(timeout=30)
        out["exit_status"] = child.returncode
    finally:
        if child.poll() is None:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            child.wait()
    time.sleep(0.5)  # the relay tears the circuits down
    after = proc_stats(pid)
    out["rss_after_mib"] = _mib(after["rss_kib"]) if after else None
    out["probe_after"] = _probe(probe, peer.socks_port)
    out["new_circuits_after"] = _new_circuits(base + ["--circuits", "10", "--hold-seconds", "0"], log_path)
    out["relay_alive"] = after is not None
    out["healthy"] = bool(after is not None and out["probe_while_held"] is True and out["probe_after"] is True
                          and out["new_circuits_after"] is True and released.get("closed_while_held") == 0)
    return out


def _new_circuits(argv, log_path):
    """True when the relay still builds fresh circuits (10 of them), else what went wrong."""
    with open(log_path, "ab") as err:
        try:
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True,
                               timeout=60, preexec_fn=_die_with_parent)
        except subprocess.TimeoutExpired:
            return "circuit_load did not finish 10 circuits in 60 s"
    if r.returncode == 0:
        return True
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    return f"circuit_load exit {r.returncode}: {lines[0][:300] if lines else 'no report'}"


def _probe(probe, socks_port):
    try:
        probe(socks_port)
        return True
    except (BenchError, OSError) as e:
        return f"{type(e).__name__}: {e}"
