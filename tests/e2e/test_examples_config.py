#!/usr/bin/env python3
"""The configuration examples still work: examples/directory.toml and examples/relay.toml (with their
paths and addresses pointed at a temporary folder and loopback) start a directory and a relay that
joins it, each stopping with status 0 on SIGTERM; the systemd units pass `systemd-analyze verify`
(when systemd-analyze is installed) with ExecStart pointed at the built thor."""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

from thor_e2e import SOURCE_ROOT, check, free_port, log, main, run, thor_exe

EXAMPLES = os.path.join(SOURCE_ROOT, "examples")


def rewrite_toml(src, dst, values):
    """Copies a TOML example, replacing the values of the given keys (each must be in the example)."""
    with open(src) as f:
        text = f.read()
    for key, value in values.items():
        text, n = re.subn(rf"(?m)^{re.escape(key)}\s*=.*$", f"{key} = {value}", text)
        check(n == 1, f"{os.path.basename(src)} has no '{key} = ...' line")
    with open(dst, "w") as f:
        f.write(text)


def start(cmd, log_path, ready, timeout=10):
    out = open(log_path, "w")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    out.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(log_path) as f:
            text = f.read()
        if re.search(ready, text):
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise AssertionError(f"{' '.join(cmd)} did not log /{ready}/ (exit {proc.returncode}):\n{text}")


def stop(proc, what):
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"{what} did not stop within 10 s of SIGTERM")
    check(rc == 0, f"{what} exited with status {rc} after SIGTERM")


def configs(tmp):
    thor = thor_exe()
    run([thor, "keygen", os.path.join(tmp, "directory.key")])
    run([thor, "keygen", "--public", os.path.join(tmp, "directory.key"), os.path.join(tmp, "directory.pub")])
    run([thor, "keygen", os.path.join(tmp, "relay.key")])
    dir_port, relay_port = free_port(), free_port()
    rewrite_toml(os.path.join(EXAMPLES, "directory.toml"), os.path.join(tmp, "directory.toml"), {
        "key": f'"{tmp}/directory.key"', "listen": f'"127.0.0.1:{dir_port}"', "http": '"127.0.0.1:0"',
        "heartbeat-interval": "1"})
    rewrite_toml(os.path.join(EXAMPLES, "relay.toml"), os.path.join(tmp, "relay.toml"), {
        "key": f'"{tmp}/relay.key"', "directory": f'"127.0.0.1:{dir_port}"', "directory-key": f'"{tmp}/directory.pub"',
        "listen": f'"127.0.0.1:{relay_port}"', "advertise": f'"127.0.0.1:{relay_port}"'})
    procs = []
    try:
        d = start([thor, "directory", "--config", os.path.join(tmp, "directory.toml")],
                  os.path.join(tmp, "directory.log"), r"serving relays on 127\.0\.0\.1:%d" % dir_port)
        procs.append(d)
        log("ok  examples/directory.toml: the directory starts")
        r = start([thor, "relay", "--config", os.path.join(tmp, "relay.toml")], os.path.join(tmp, "relay.log"),
                  r"joined directory")
        procs.append(r)
        log("ok  examples/relay.toml: the relay starts and joins the directory")
        stop(procs.pop(), "the relay")
        stop(procs.pop(), "the directory")
        log("ok  both stop with status 0 on SIGTERM")
    finally:
        for p in procs:
            p.kill()
            p.wait()


def units(tmp):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        log("not run: systemd-analyze verify (systemd is not installed)")
        return
    for name in ("thor-directory.service", "thor-relay.service"):
        with open(os.path.join(EXAMPLES, "systemd", name)) as f:
            text = f.read()
        check("ExecStart=/usr/local/bin/thor " in text, f"{name}: ExecStart does not run /usr/local/bin/thor")
        path = os.path.join(tmp, name)
        with open(path, "w") as f:
            f.write(text.replace("/usr/local/bin/thor", thor_exe()))
        p = run([analyze, "verify", path], check_rc=False)
        # Lines about other units of this machine are not ours to judge.
        ours = [line for line in (p.stderr + p.stdout.decode()).splitlines() if name in line]
        check(p.returncode == 0 and not ours, f"systemd-analyze verify {name}: exit {p.returncode}\n" + "\n".join(ours))
        log(f"ok  examples/systemd/{name}: systemd-analyze verify is silent")


def test():
    with tempfile.TemporaryDirectory(prefix="thor-e2e-examples-") as tmp:
        try:
            configs(tmp)
        except AssertionError as e:
            check(False, str(e))
        units(tmp)


if __name__ == "__main__":
    main(test)
