"""A private Tor network on 127.0.0.1 from Debian's `tor` package: one v3 directory authority (its
certificate from tor-gencert), N relays of which the first is an exit whose policy accepts only
loopback, and a client with a SocksPort. Nothing in it knows any address but 127.0.0.1.

The traps it avoids (each one cost someone an afternoon):
- a relay opens SocksPort 9050 unless told `SocksPort 0`;
- a client on microdescriptors sees a loopback-only exit policy as reject-all (the summary
  only keeps public ranges), so the client uses full descriptors: `UseMicrodescriptors 0`;
- a client refuses an exit without the Fast flag, and a fresh relay has measured nothing, so the
  authority guarantees Fast (`AuthDirFastGuarantee`, `TestingMinFastFlagThreshold 0`);
- one refused connection makes the client avoid that address for a while, so the file server
  is up and checked before Tor starts, and readiness is a real request through the network;
- the exit's resolver is pinned to a resolv.conf naming 127.0.0.1, so no lookup leaves the machine.
"""

import os
import re
import shutil
import subprocess
import time

from .procs import BenchError, ProcessSet, free_port, tail, wait_port, wait_until
from .tor_control import TorControl

# Voting as fast as a one-authority network can stay stable (Vote + Dist < Interval / 2).
AUTHORITY_TIMING = """\
TestingV3AuthInitialVotingInterval 10
TestingV3AuthInitialVoteDelay 2
TestingV3AuthInitialDistDelay 2
V3AuthVotingInterval 10
V3AuthVoteDelay 2
V3AuthDistDelay 2
V3AuthNIntervalsValid 2
"""

COMMON = """\
TestingTorNetwork 1
DataDirectory {dir}
Nickname {nick}
ContactInfo bench@localhost
Log notice file {dir}/notice.log
SafeLogging 0
LogTimeGranularity 1
RunAsDaemon 0
ShutdownWaitLength 0
DisableDebuggerAttachment 0
AvoidDiskWrites 1
__OwningControllerProcess {owner}
AssumeReachable 1
PathsNeededToBuildCircuits 0.67
TestingDirAuthVoteGuard *
TestingDirAuthVoteHSDir *
TestingMinExitFlagThreshold 0
{dir_authority}
"""

RELAY = """\
SocksPort 0
Address 127.0.0.1
ORPort 127.0.0.1:{orport}
ServerDNSResolvConfFile {dir}/resolv.conf
ServerDNSDetectHijacking 0
ServerDNSAllowBrokenConfig 1
"""

AUTHORITY = """\
AuthoritativeDirectory 1
V3AuthoritativeDirectory 1
DirPort 127.0.0.1:{dirport}
AuthDirFastGuarantee 1
TestingMinFastFlagThreshold 0
AuthDirMaxServersPerAddr 0
# Only the real exit gets the Exit flag (its policy, loopback only, would not earn it): with every
# relay flagged, the client builds dozens of circuits to "exits" that refuse everything.
TestingDirAuthVoteExit {exit_fingerprint}
ExitRelay 0
ExitPolicy reject *:*
""" + AUTHORITY_TIMING

EXIT = """\
ExitRelay 1
ExitPolicyRejectPrivate 0
ExitPolicyRejectLocalInterfaces 0
IPv6Exit 0
ExitPolicy accept 127.0.0.0/8:*
ExitPolicy reject *:*
"""

NON_EXIT = """\
ExitRelay 0
ExitPolicy reject *:*
"""

CLIENT = """\
SocksPort 127.0.0.1:{socksport}
ControlPort 127.0.0.1:{controlport}
CookieAuthentication 1
UseMicrodescriptors 0
# No circuits for predicted ports (80, 443): no exit here serves them, and chasing them makes the
# client launch circuit after circuit. Circuits are built when a request needs one.
__DisablePredictedCircuits 1
DownloadExtraInfo 0
ClientOnly 1
"""


def _run(argv, what, stdin_text=None, cwd=None):
    try:
        r = subprocess.run(argv, input=stdin_text, capture_output=True, text=True, timeout=60, cwd=cwd)
    except FileNotFoundError as e:
        raise BenchError(f"{what}: {e} (install Debian's tor: `bash scripts/ensure-packages.sh bench`)") from e
    if r.returncode != 0:
        raise BenchError(f"{what} failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout


class TorNetwork:
    def __init__(self, workdir, relays=3, log=print):
        if relays < 3:
            raise BenchError("a Tor network needs at least 3 relays")
        self.root = os.path.join(workdir, "tor")
        self.n_relays = relays
        self.log = log
        self.procs = ProcessSet()
        self.socks_port = None
        self.control_port = None
        self.client_dir = None
        self.ready_s = None
        self.fingerprints = {}  # nickname -> relay identity fingerprint

    def _node_dir(self, nick):
        d = os.path.join(self.root, nick)
        os.makedirs(os.path.join(d, "keys"), mode=0o700, exist_ok=True)
        os.chmod(d, 0o700)
        with open(os.path.join(d, "resolv.conf"), "w") as f:
            f.write("nameserver 127.0.0.1\n")
        return d

    def _authority_keys(self, d, dirport):
        keys = os.path.join(d, "keys")
        _run(["tor-gencert", "--create-identity-key", "-m", "12", "-a", f"127.0.0.1:{dirport}",
              "-i", os.path.join(keys, "authority_identity_key"),
              "-s", os.path.join(keys, "authority_signing_key"),
              "-c", os.path.join(keys, "authority_certificate"), "--passphrase-fd", "0"],
             "tor-gencert", stdin_text="\n", cwd=d)
        with open(os.path.join(keys, "authority_certificate")) as f:
            m = re.search(r"^fingerprint ([0-9A-F]{40})$", f.read(), re.M)
        if not m:
            raise BenchError("tor-gencert wrote a certificate without a fingerprint line")
        v3ident = m.group(1)
        return v3ident

    def _relay_fingerprint(self, d, nick):
        """Makes the relay's identity keys with --list-fingerprint and returns its fingerprint; the
        placeholder authority only satisfies TestingTorNetwork's check that one is configured."""
        _run(["tor", "--ignore-missing-torrc", "-f", os.path.join(d, "none"), "--list-fingerprint",
              "--DataDirectory", d, "--ORPort", "1", "--Nickname", nick, "--TestingTorNetwork", "1",
              "--DirAuthority", "placeholder 127.0.0.1:1 " + "F" * 40, "--Log", "err stderr"],
             "tor --list-fingerprint")
        with open(os.path.join(d, "fingerprint")) as f:
            return f.read().split()[1]

    def _write_torrc(self, d, text):
        path = os.path.join(d, "torrc")
        with open(path, "w") as f:
            f.write(text)
        return path

    def _start(self, nick, d, torrc):
        return self.procs.start(f"tor {nick}", ["tor", "-f", torrc, "--ignore-missing-torrc"],
                                os.path.join(d, "stdout.log"))

    def start(self, probe, timeout=90):
        """Starts every node and returns once the client has bootstrapped to 100% and probe()
        (a request through its SocksPort) succeeds. Sets ready_s: seconds from the first daemon
        starting to that first request coming back."""
        if shutil.which("tor") is None or shutil.which("tor-gencert") is None:
            raise BenchError("tor and tor-gencert not found: `bash scripts/ensure-packages.sh bench`")
        owner = os.getpid()
        auth_dir = self._node_dir("auth")
        auth_or, auth_dirport = free_port(), free_port()
        v3ident = self._authority_keys(auth_dir, auth_dirport)
        self.fingerprints["auth"] = self._relay_fingerprint(auth_dir, "auth")
        dir_authority = (f"DirAuthority auth orport={auth_or} no-v2 v3ident={v3ident} "
                         f"127.0.0.1:{auth_dirport} {self.fingerprints['auth']}")
        relay_dirs = {}
        for i in range(self.n_relays):
            nick = "exit" if i == 0 else f"relay{i}"
            relay_dirs[nick] = self._node_dir(nick)
            self.fingerprints[nick] = self._relay_fingerprint(relay_dirs[nick], nick)

        nodes = []
        common = dict(owner=owner, dir_authority=dir_authority)
        nodes.append(("auth", auth_dir, COMMON.format(dir=auth_dir, nick="auth", **common)
                      + RELAY.format(dir=auth_dir, orport=auth_or)
                      + AUTHORITY.format(dirport=auth_dirport, exit_fingerprint=self.fingerprints["exit"])))
        for nick, d in relay_dirs.items():
            nodes.append((nick, d, COMMON.format(dir=d, nick=nick, **common)
                          + RELAY.format(dir=d, orport=free_port()) + (EXIT if nick == "exit" else NON_EXIT)))
        self.client_dir = self._node_dir("client")
        self.socks_port, self.control_port = free_port(), free_port()
        nodes.append(("client", self.client_dir, COMMON.format(dir=self.client_dir, nick="client", **common)
                      + CLIENT.format(socksport=self.socks_port, controlport=self.control_port)))

        t0 = time.monotonic()
        children = []
        for nick, d, text in nodes:
            children.append(self._start(nick, d, self._write_torrc(d, text)))
            if nick == "auth":
                wait_port(auth_dirport, 30, children, "the Tor authority's DirPort")
        client = children[-1]
        wait_port(self.control_port, 30, children, "the Tor client's ControlPort")
        ctl = TorControl(self.control_port, os.path.join(self.client_dir, "control_auth_cookie"))
        last = [-1]

        def progress_at_least(target):
            p = ctl.bootstrap_progress()
            if p != last[0]:
                self.log(f"tor: client bootstrapped {p}% after {time.monotonic() - t0:.1f} s")
                last[0] = p
            return p >= target

        errors = []

        def request_gets_through():
            progress_at_least(100)
            try:
                probe(self.socks_port)
                return True
            except Exception as e:  # noqa: BLE001 - every failure here means "not yet"
                errors.append(str(e))
                return False

        def left():
            return max(10.0, timeout - (time.monotonic() - t0))

        try:
            # 75% is "enough directory info to build circuits". The client builds no circuit until
            # asked (predicted circuits are off), so the last steps to 100% follow the first request.
            wait_until("the Tor client to load enough directory information", lambda: progress_at_least(75),
                       timeout, children, interval=0.25)
            wait_until("a first request through Tor", request_gets_through, left(), [client], interval=0.5)
            wait_until("the Tor client to report 100%", lambda: progress_at_least(100), left(), [client],
                       interval=0.25)
        except BenchError as e:
            raise BenchError(f"{e}; last request error: {errors[-1] if errors else '-'}; end of the client's log:\n"
                             f"{tail(os.path.join(self.client_dir, 'notice.log'))}") from e
        finally:
            ctl.close()
        self.ready_s = time.monotonic() - t0
        self.log(f"tor: network carries requests after {self.ready_s:.1f} s "
                 f"(authority + {self.n_relays} relays + client, SocksPort 127.0.0.1:{self.socks_port})")

    def circuit_build_times(self, n):
        """n three-hop circuits ending at the exit, guard and middle rotating over the other relays
        (the authority is one of them), each timed from EXTENDCIRCUIT to BUILT."""
        others = [nick for nick in self.fingerprints if nick != "exit"]
        pairs = [(g, m) for g in others for m in others if g != m]
        ctl = TorControl(self.control_port, os.path.join(self.client_dir, "control_auth_cookie"))
        try:
            times = []
            for i in range(n):
                guard, middle = pairs[i % len(pairs)]
                path = ",".join("$" + self.fingerprints[nick] for nick in (guard, middle, "exit"))
                times.append(self._build_with_retries(ctl, path))
            return times
        finally:
            ctl.close()

    @staticmethod
    def _build_with_retries(ctl, path, attempts=10):
        # In a network minutes old, relays still republish descriptors (reachability, first
        # bandwidth figures); for a moment the client may lack one and refuse the path.
        for attempt in range(attempts):
            try:
                return ctl.time_circuit_build(path)
            except BenchError:
                if attempt == attempts - 1:
                    raise
                time.sleep(1.0)

    def pids(self):
        return self.procs.pids()

    def client_pid(self):
        for c in self.procs.children:
            if c.name == "tor client" and c.alive():
                return c.pid
        return None

    def stop(self):
        self.procs.stop()
