"""Shared pieces of the end-to-end tests: a `thor up` network as a child process, a local web server
whose files have known SHA-256 digests, a web host in a network namespace, and the test runner.

Every test is a script run by meson: exit 0 passes, 1 fails, 77 skips (with the reason printed).
THOR_EXE names the `thor` binary. Whatever a test starts, it stops, and whatever it makes, it removes,
also when it fails or is interrupted (meson sends SIGTERM on a timeout).

Run as a script, this module is also the web server put inside a network namespace:
    python3 thor_e2e.py serve DIR ADDRESS PORT
"""
import hashlib
import http.server
import os
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time

SKIP = 77
HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.environ.get("THOR_SOURCE_ROOT") or os.path.dirname(os.path.dirname(HERE))
READY_LINE = "Press Ctrl-C to stop."


class Failure(Exception):
    """The thing under test did something wrong."""


class Skipped(Exception):
    """The test cannot run on this machine (not a failure)."""


def log(msg):
    print(msg, flush=True)


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def thor_exe():
    exe = os.environ.get("THOR_EXE")
    if not exe or not os.access(exe, os.X_OK):
        raise Failure(f"THOR_EXE is not set to the thor binary (got {exe!r}); run the tests with meson")
    return exe


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_program(name, package):
    path = shutil.which(name)
    if not path:
        raise Failure(f"{name} is not installed (Debian package {package}; scripts/test.sh installs it)")
    return path


def run(cmd, timeout=60, check_rc=True, **kw):
    """Runs a client; returns CompletedProcess with bytes stdout and text stderr."""
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        raise Failure(f"{cmd[0]} did not finish within {timeout} s: {' '.join(map(str, cmd))}")
    p.seconds = time.monotonic() - t0
    p.stderr = p.stderr.decode(errors="replace")
    if check_rc and p.returncode != 0:
        raise Failure(f"exit status {p.returncode} from {' '.join(map(str, cmd))}\n{p.stderr.strip()[-2000:]}")
    return p


def main(test):
    """Runs test() and turns its outcome into meson's exit codes, with cleanup on SIGTERM."""
    def on_term(signum, _frame):
        raise SystemExit(f"interrupted by signal {signum}")
    signal.signal(signal.SIGTERM, on_term)
    t0 = time.monotonic()
    try:
        test()
    except Skipped as e:
        log(f"SKIP: {e}")
        sys.exit(SKIP)
    except Failure as e:
        log(f"FAIL: {e}")
        sys.exit(1)
    log(f"PASS in {time.monotonic() - t0:.2f} s")


# ---------------------------------------------------------------------------------------------------
# thor up


def _children_of(pid):
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            if ppid == pid:
                out.append(int(entry))
        except (OSError, ValueError):
            continue
    return out


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def processes_mentioning(text):
    """Pids of live processes whose command line contains text (e.g. a test's own temp folder)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            if any(text in a for a in cmdline(int(entry))):
                found.append(int(entry))
    return found


class ThorUp:
    """`thor up` as a child process. Use as a context manager: it waits for the ready line, and on the
    way out sends SIGTERM (then SIGKILL), kills any child left behind and removes its folder."""

    def __init__(self, relays=3, socks_port=None, prefix=(), extra=(), timeout=30, default_relays=False):
        self.relays = relays
        self.socks_port = socks_port or free_port()
        self.prefix = list(prefix)
        self.extra = list(extra)
        self.timeout = timeout
        self.default_relays = default_relays
        self.tmp = tempfile.mkdtemp(prefix="thor-e2e-")
        self.dir = os.path.join(self.tmp, "net")
        self.proc = None
        self.lines = []
        self.ready = threading.Event()
        self.exited = threading.Event()
        self.reported_seconds = None
        self.wall_seconds = None
        self.status_url = None

    @property
    def socks(self):
        return f"127.0.0.1:{self.socks_port}"

    def command(self):
        cmd = self.prefix + [thor_exe(), "up", "--socks", self.socks, "--dir", self.dir]
        if not self.default_relays:
            cmd += ["--relays", str(self.relays)]
        return cmd + self.extra

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        cmd = self.command()
        log(f"$ {' '.join(cmd)}")
        t0 = time.monotonic()
        # Same process group as the test, so meson's kill on a timeout reaches it too.
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        threading.Thread(target=self._read_output, daemon=True).start()
        deadline = t0 + self.timeout + 10
        while not self.ready.is_set() and not self.exited.is_set() and time.monotonic() < deadline:
            self.ready.wait(0.05)
        if not self.ready.is_set():
            self.exited.wait(1)
            raise Failure(f"thor up did not become ready (exit status {self.proc.poll()}):\n"
                          + self.output() + self.log_tails())
        self.wall_seconds = time.monotonic() - t0
        out = self.output()
        m = re.search(r"ready in ([0-9.]+) s", out)
        check(m, f"thor up printed no 'ready in N s' line:\n{out}")
        self.reported_seconds = float(m.group(1))
        m = re.search(r"directory status:\s*(http://\S+)", out)
        check(m, f"thor up printed no status URL:\n{out}")
        self.status_url = m.group(1)
        log(out.rstrip())
        log(f"(thor up reported ready in {self.reported_seconds:.2f} s; {self.wall_seconds:.2f} s from launch)")

    def _read_output(self):
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace")
            self.lines.append(line)
            if READY_LINE in line:
                self.ready.set()
        self.exited.set()

    def output(self):
        return "".join(self.lines)

    def log_tails(self, n=15):
        logs = os.path.join(self.dir, "logs")
        if not os.path.isdir(logs):
            return ""
        out = []
        for name in sorted(os.listdir(logs)):
            with open(os.path.join(logs, name), errors="replace") as f:
                tail = f.readlines()[-n:]
            out.append(f"--- {name} (last {len(tail)} lines)\n" + "".join(tail))
        return "\n".join(out)

    def children(self):
        return _children_of(self.proc.pid) if self.proc else []

    def stop(self, grace=12):
        """Stops thor up; returns (exit status, pids of processes that outlived it)."""
        leftover = []
        status = None
        if self.proc:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                status = self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                status = self.proc.wait()
                log("thor up did not stop within %d s of SIGTERM; killed it" % grace)
            self.exited.wait(2)
            # Anything still running with our folder in its command line is a child left behind.
            for _ in range(20):
                leftover = processes_mentioning(self.tmp)
                if not leftover:
                    break
                time.sleep(0.1)
            for pid in leftover:
                log(f"left behind by thor up: pid {pid}: {' '.join(cmdline(pid))}")
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.stdout.close()
            self.proc = None
        shutil.rmtree(self.tmp, ignore_errors=True)
        return status, leftover


# ---------------------------------------------------------------------------------------------------
# Local web server


def _peer_process(server_addr, peer_addr):
    """The command line of the local process owning the client end of a TCP connection to us:
    for loopback tests, the proof that a request came from a Thor exit relay and not the client."""
    def hexaddr(host, port):
        return "%08X:%04X" % (int.from_bytes(socket.inet_aton(host), "little"), port)
    want_local, want_remote = hexaddr(*peer_addr), hexaddr(*server_addr)
    inode = None
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == want_local and fields[2] == want_remote:
                inode = fields[9]
                break
    if not inode:
        return []
    target = f"socket:[{inode}]"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fd_dir = f"/proc/{entry}/fd"
        try:
            for fd in os.listdir(fd_dir):
                try:
                    if os.readlink(f"{fd_dir}/{fd}") == target:
                        return cmdline(int(entry))
                except OSError:
                    continue
        except OSError:
            continue
    return []


class Request:
    def __init__(self, method, path, headers, body, peer_cmdline):
        self.method, self.path, self.headers, self.body, self.peer_cmdline = method, path, headers, body, peer_cmdline

    def from_thor_relay(self):
        return len(self.peer_cmdline) >= 2 and os.path.basename(self.peer_cmdline[0]) == "thor" \
            and self.peer_cmdline[1] == "relay"


class WebServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 serving `files` (path -> bytes) from memory; `post`
    maps a path to a function(Request) -> (status, content type, body bytes). It records every request
    with the command line of the process that connected."""

    def __init__(self, files=None, post=None, host="127.0.0.1"):
        self.files = dict(files or {})
        self.post = dict(post or {})
        self.requests = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _record(self, body=b""):
                peer = _peer_process(self.server.server_address, self.client_address)
                req = Request(self.command, self.path, dict(self.headers), body, peer)
                with outer.lock:
                    outer.requests.append(req)
                return req

            def _send(self, status, ctype, body):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_GET(self):
                self._record()
                path = self.path.split("?")[0]
                if path in outer.files:
                    ctype = "text/html; charset=utf-8" if path.endswith(".html") else \
                        "application/javascript" if path.endswith(".js") else "application/octet-stream"
                    self._send(200, ctype, outer.files[path])
                else:
                    self._send(404, "text/plain", b"not found\n")

            do_HEAD = do_GET

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                req = self._record(body)
                handler = outer.post.get(self.path)
                if not handler:
                    return self._send(404, "text/plain", b"not found\n")
                self._send(*handler(req))

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address):
                if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that left early is fine
                    super().handle_error(request, client_address)

        self.httpd = Server((host, 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path, host="localhost"):
        return f"http://{host}:{self.port}{path}"

    def take_requests(self):
        with self.lock:
            out, self.requests = self.requests, []
        return out

    def check_via_thor(self, expected_paths):
        """Every request since the last call came from a Thor relay (the exit), for these paths."""
        reqs = self.take_requests()
        paths = [r.path for r in reqs]
        for p in expected_paths:
            check(p in paths, f"the web server never saw a request for {p} (it saw {paths})")
        # Only the expected ones: a browser's side requests (a favicon) may be dropped by the time the
        # connection's owner is looked up.
        for r in reqs:
            if r.path not in expected_paths:
                continue
            check(r.from_thor_relay(), f"{r.method} {r.path} reached the web server from "
                  f"{' '.join(r.peer_cmdline) or 'an unknown process'}, not from a Thor exit relay")
        return reqs


def page(marker, extra_body=""):
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Thor e2e</title></head>"
            f"<body><p id='marker'>{marker}</p>{extra_body}</body></html>").encode()


# ---------------------------------------------------------------------------------------------------
# A web host that is not loopback: two network namespaces joined by a veth pair.
#
#   namespace WEB  (10.231.0.1/30)  ── veth ──  namespace THOR (10.231.0.2/30, lo up)
#   the web server                               thor up and the clients; /etc/netns/THOR/hosts maps
#                                                NAME to 10.231.0.1, so the exit resolves it


def netns_supported():
    """None when network namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces (ip netns add)"
    if not shutil.which("ip"):
        return "the ip command (Debian package iproute2) is not installed"
    if not shutil.which("unshare"):
        return "unshare (util-linux) is not installed"
    probe = f"thor-probe-{os.getpid()}"
    p = subprocess.run(["ip", "netns", "add", probe], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        return "ip netns add failed: " + p.stdout.decode(errors="replace").strip()
    subprocess.run(["ip", "netns", "del", probe], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return None


class NetnsWebHost:
    WEB_ADDR = "10.231.0.1"
    THOR_ADDR = "10.231.0.2"
    SUBNET = "10.231.0.0/30"

    def __init__(self, files, name="web.thor.test", port=8080):
        why = netns_supported()
        if why:
            raise Skipped(why)
        tag = f"{os.getpid() % 1000000}"
        self.web_ns = f"thor-e2e-web-{tag}"
        self.thor_ns = f"thor-e2e-thor-{tag}"
        self.veth_web, self.veth_thor = f"thw{tag}", f"tht{tag}"  # interface names: 15 bytes at most
        self.name = name
        self.port = port
        self.files = files
        self.tmp = tempfile.mkdtemp(prefix="thor-e2e-ns-")
        self.etc_dir = f"/etc/netns/{self.thor_ns}"
        self.server = None

    def _ip(self, *args):
        p = subprocess.run(["ip", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if p.returncode != 0:
            raise Failure(f"ip {' '.join(args)}: {p.stdout.decode(errors='replace').strip()}")

    def __enter__(self):
        try:
            self._setup()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _setup(self):
        self._ip("netns", "add", self.web_ns)
        self._ip("netns", "add", self.thor_ns)
        self._ip("link", "add", self.veth_web, "type", "veth", "peer", "name", self.veth_thor)
        self._ip("link", "set", self.veth_web, "netns", self.web_ns)
        self._ip("link", "set", self.veth_thor, "netns", self.thor_ns)
        self._ip("-n", self.web_ns, "addr", "add", self.WEB_ADDR + "/30", "dev", self.veth_web)
        self._ip("-n", self.thor_ns, "addr", "add", self.THOR_ADDR + "/30", "dev", self.veth_thor)
        for ns, dev in ((self.web_ns, self.veth_web), (self.thor_ns, self.veth_thor)):
            self._ip("-n", ns, "link", "set", "lo", "up")
            self._ip("-n", ns, "link", "set", dev, "up")
        # `ip netns exec THOR` bind-mounts these files over /etc: thor up's exits resolve NAME.
        os.makedirs(self.etc_dir, exist_ok=True)
        with open(os.path.join(self.etc_dir, "hosts"), "w") as f:
            f.write(f"127.0.0.1 localhost\n::1 localhost\n{self.WEB_ADDR} {self.name}\n")
        # The clients get a hosts file without NAME (see client_prefix).
        self.client_hosts = os.path.join(self.tmp, "hosts-client")
        with open(self.client_hosts, "w") as f:
            f.write("127.0.0.1 localhost\n::1 localhost\n")
        www = os.path.join(self.tmp, "www")
        os.makedirs(www)
        for path, data in self.files.items():
            with open(os.path.join(www, path.lstrip("/")), "wb") as f:
                f.write(data)
        self.server = subprocess.Popen(
            ["ip", "netns", "exec", self.web_ns, sys.executable, os.path.abspath(__file__), "serve", www,
             self.WEB_ADDR, str(self.port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        line = self.server.stdout.readline().decode(errors="replace")
        check(line.startswith("serving"), f"the web server in namespace {self.web_ns} did not start: {line}")

    def __exit__(self, *exc):
        if self.server:
            self.server.terminate()
            try:
                self.server.wait(5)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
            self.server.stdout.close()
            self.server = None
        for ns in (self.thor_ns, self.web_ns):  # deleting a namespace deletes its end of the veth pair
            subprocess.run(["ip", "netns", "del", ns], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "link", "del", self.veth_web], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.etc_dir, ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def url(self, path):
        return f"http://{self.name}:{self.port}{path}"

    def thor_prefix(self):
        """Runs a command (thor up) inside the THOR namespace, where NAME resolves."""
        return ["ip", "netns", "exec", self.thor_ns]

    def client_prefix(self):
        """Runs a client inside the THOR namespace but with a hosts file that lacks NAME, so only the
        exit can resolve it: a fetch that works proves the name was resolved on the far side."""
        return ["ip", "netns", "exec", self.thor_ns, "unshare", "--mount", "sh", "-c",
                'mount --bind "$0" /etc/hosts && exec "$@"', self.client_hosts]

    def exit_policy(self):
        # The exits reach the web host's subnet and loopback (thor up's own readiness check); the final
        # accept keeps them exits (a relay that exits only to private addresses refuses RESOLVE).
        return f"accept {self.SUBNET}:*, accept 127.0.0.0/8:*, reject private:*, accept *:*"


def _serve(directory, address, port):
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=directory)  # noqa: E731
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer((address, int(port)), handler)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    print(f"serving {directory} on {address}:{port}", flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "serve":
        _serve(*sys.argv[2:])
    else:
        sys.exit("usage: thor_e2e.py serve DIR ADDRESS PORT")
