"""A minimal Tor control-port client (control-spec.txt): cookie authentication, GETINFO, and timing
how long Tor takes to build a circuit (EXTENDCIRCUIT 0 until the CIRC ... BUILT event)."""

import socket
import time

from .procs import BenchError


class TorControl:
    def __init__(self, port, cookie_path, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.events = []
        with open(cookie_path, "rb") as f:
            cookie = f.read()
        self.command("AUTHENTICATE " + cookie.hex())

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _line(self):
        # Our own buffer rather than socket.makefile(): a file object is unusable after one timeout.
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise BenchError("Tor closed its control connection")
            self.buf += data
        raw, self.buf = self.buf.split(b"\n", 1)
        return raw.decode("utf-8", "replace").rstrip("\r")

    def _reply(self):
        """One reply (a list of lines without their codes); events that arrive meanwhile are queued."""
        lines = []
        while True:
            line = self._line()
            code, sep, rest = line[:3], line[3:4], line[4:]
            if sep == "+":  # a data block up to a lone "."
                lines.append(rest)
                while True:
                    data = self._line()
                    if data == ".":
                        break
                    lines.append(data)
                continue
            if code == "650":
                # Asynchronous event (single-line events only: CIRC is one line).
                if sep == " ":
                    self.events.append(rest)
                continue
            lines.append(rest)
            if sep == " ":
                if not code.startswith("2"):
                    raise BenchError(f"Tor control: {code} {rest}")
                return lines

    def command(self, cmd):
        self.sock.sendall(cmd.encode() + b"\r\n")
        return self._reply()

    def getinfo(self, key):
        for line in self.command("GETINFO " + key):
            if line.startswith(key + "="):
                return line[len(key) + 1:]
        return ""

    def bootstrap_progress(self):
        phase = self.getinfo("status/bootstrap-phase")
        for word in phase.split():
            if word.startswith("PROGRESS="):
                return int(word[len("PROGRESS="):])
        return 0

    def _next_event(self, deadline):
        while not self.events:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                line = self._line()
            except socket.timeout:
                return None
            if line.startswith("650 "):
                self.events.append(line[4:])
        return self.events.pop(0)

    def time_circuit_build(self, path="", timeout=30.0):
        """Seconds from asking for a new circuit (through `path`, comma-separated $fingerprints, or
        one Tor chooses) to Tor reporting it BUILT."""
        self.command("SETEVENTS CIRC")
        try:
            t0 = time.perf_counter()
            reply = self.command(f"EXTENDCIRCUIT 0 {path}".rstrip())
            circ_id = reply[-1].split()[-1]
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                event = self._next_event(deadline)
                if event is None:
                    break
                words = event.split()
                if len(words) >= 3 and words[0] == "CIRC" and words[1] == circ_id:
                    if words[2] == "BUILT":
                        elapsed = time.perf_counter() - t0
                        self.command(f"CLOSECIRCUIT {circ_id}")
                        return elapsed
                    if words[2] in ("FAILED", "CLOSED"):
                        raise BenchError(f"Tor could not build a circuit: {event}")
            raise BenchError(f"Tor did not build circuit {circ_id} within {timeout:.0f} s")
        finally:
            self.sock.settimeout(10.0)
            self.command("SETEVENTS")
            self.events.clear()
