#!/usr/bin/env python3
"""`thor up` itself: the ready line and what it prints (the time, the SOCKS address, the status URL,
the folder, a curl line that works), one child process per role, a child that dies is reported (and
restarted with --restart), SIGTERM stops every child, each daemon stops alone on SIGTERM, and a SOCKS
port in use gives one clear line and a non-zero exit status."""
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

from thor_e2e import ThorUp, check, cmdline, log, main, processes_mentioning, require_program, run, thor_exe


def roles(net):
    """role name -> pid for thor up's children (role: directory, proxy, relay1, relay2, ...)."""
    out = {}
    for pid in net.children():
        argv = cmdline(pid)
        if len(argv) < 2:
            continue
        role = argv[1]
        if role == "relay":
            key = argv[argv.index("--key") + 1]
            role = os.path.basename(key).removesuffix(".key")
        out[role] = pid
    return out


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(what)


def default_network(curl):
    with ThorUp(default_relays=True) as net:
        out = net.output()
        check(0 < net.reported_seconds <= net.wall_seconds + 0.2,
              f"thor up says it was ready in {net.reported_seconds} s, but it took {net.wall_seconds:.2f} s")
        check(f"SOCKS5 proxy:     {net.socks}" in out, f"the SOCKS address is not printed:\n{out}")
        check(re.search(r"1 directory, 5 relays, 1 proxy", out), f"the default is not 5 relays:\n{out}")
        check(f"keys and logs:    {net.dir}" in out, f"the folder is not printed:\n{out}")
        for name in ["directory", "proxy"] + [f"relay{i}" for i in range(1, 6)]:
            check(os.path.exists(os.path.join(net.dir, "logs", name + ".log")), f"no log for {name} in {net.dir}/logs")
            if name != "proxy":
                check(os.path.exists(os.path.join(net.dir, "keys", name + ".key")), f"no key for {name}")
        log(f"ok  ready line: {net.reported_seconds:.2f} s reported; address, status URL, folder printed")

        with urllib.request.urlopen(net.status_url, timeout=10) as r:
            status = json.loads(r.read())
        check(isinstance(status, dict) and status, f"the status URL {net.status_url} gave {status!r}")
        m = re.search(r"try:\s+(curl .*)", out)
        check(m, f"no curl line to try:\n{out}")
        argv = shlex.split(m.group(1))
        check(argv[0] == "curl" and net.socks in argv, f"the curl line does not use the proxy: {m.group(1)}")
        p = run([curl, "--silent", "--show-error", "--fail", "--max-time", "20"] + argv[1:])
        check(json.loads(p.stdout) == status, f"the printed curl line fetched {p.stdout[:300]!r}, not the status")
        log(f"ok  the printed line works: {m.group(1)}")

        kids = roles(net)
        check(sorted(kids) == sorted(["directory", "proxy"] + [f"relay{i}" for i in range(1, 6)]),
              f"thor up's children are {kids}; expected a directory, 5 relays and a proxy")
        log(f"ok  one process per role: {', '.join(f'{k}={v}' for k, v in sorted(kids.items()))}")

        os.kill(kids["relay3"], signal.SIGKILL)
        wait_for(lambda: re.search(r"relay3 \(pid \d+\) was killed by signal", net.output()), 5,
                 f"the relay's death was not reported:\n{net.output()}")
        log("ok  a relay killed with SIGKILL is reported: "
            + next(line.strip() for line in net.lines if "relay3 (pid" in line))

        pids = set(kids.values()) - {kids["relay3"]}
        t0 = time.monotonic()
        status_code, leftover = net.stop()
        took = time.monotonic() - t0
        check(not leftover, f"processes left behind after SIGTERM: {leftover}")
        check(status_code == 0, f"thor up exited with status {status_code} after SIGTERM")
        alive = [pid for pid in pids if os.path.exists(f"/proc/{pid}") and cmdline(pid)]
        check(not alive, f"children still running after thor up stopped: {alive}")
        check("stopping" in net.output(), "thor up did not say it was stopping")
        log(f"ok  SIGTERM: thor up and its {len(pids)} children gone in {took:.2f} s, exit status 0")


def restart_network(curl):
    with ThorUp(relays=3, extra=["--restart"]) as net:
        kids = roles(net)
        os.kill(kids["relay2"], signal.SIGKILL)
        new_pid = wait_for(lambda: roles(net).get("relay2") not in (None, kids["relay2"]) and roles(net)["relay2"],
                           5, f"relay2 was not restarted:\n{net.output()}")
        check("restarting relay2" in net.output(), f"the restart was not reported:\n{net.output()}")
        log(f"ok  --restart: relay2 pid {kids['relay2']} killed, restarted as pid {new_pid}")
        # The network still carries requests (the restarted relay rejoins with the same key).
        p = run([curl, "--silent", "--show-error", "--fail", "--max-time", "20", "--socks5-hostname", net.socks,
                 net.status_url])
        check(json.loads(p.stdout), "no status through the network after the restart")
        status_code, leftover = net.stop()
        check(status_code == 0 and not leftover, f"after --restart: exit {status_code}, left behind {leftover}")
        log("ok  --restart network still carries requests and stops cleanly")


def daemons_stop_alone():
    """Each daemon stops by itself on SIGTERM, promptly and with status 0, while its peers keep running
    (thor up reports the status of a child that ends)."""
    with ThorUp(relays=3) as net:
        kids = roles(net)
        for role in ("proxy", "relay1", "directory"):
            pid = kids[role]
            t0 = time.monotonic()
            os.kill(pid, signal.SIGTERM)
            line = wait_for(lambda: next((x for x in net.lines if f"{role} (pid {pid})" in x), None), 5,
                            f"{role} did not stop within 5 s of SIGTERM:\n{net.output()}")
            took = time.monotonic() - t0
            check("exited with status 0" in line, f"{role} after SIGTERM: {line.strip()}")
            log(f"ok  SIGTERM to the {role} alone: exit status 0 in {took:.2f} s")


def port_in_use():
    with socket.socket() as busy, tempfile.TemporaryDirectory() as tmp:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cmd = [thor_exe(), "up", "--relays", "3", "--socks", f"127.0.0.1:{port}", "--dir", os.path.join(tmp, "net")]
        t0 = time.monotonic()
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30, text=True)
        took = time.monotonic() - t0
        lines = [line for line in (p.stdout + p.stderr).splitlines() if line.strip()]
        check(p.returncode != 0, f"thor up with its SOCKS port in use exited with status 0: {lines}")
        check(len(lines) == 1, f"expected one line, got {len(lines)}:\n" + "\n".join(lines))
        check(f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0], f"the line does not say what is wrong: {lines[0]}")
        check(not processes_mentioning(tmp), "thor up left processes behind after failing to start")
        log(f"ok  SOCKS port in use: exit status {p.returncode} in {took:.2f} s: {lines[0]}")


def test():
    curl = require_program("curl", "curl")
    try:
        default_network(curl)
        restart_network(curl)
        daemons_stop_alone()
    except AssertionError as e:
        check(False, str(e))
    port_in_use()


if __name__ == "__main__":
    main(test)
