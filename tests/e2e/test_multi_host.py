#!/usr/bin/env python3
"""examples/multi-host.sh --local: the multi-host script's own steps (keys, the directory, relays on
other hosts, the directory key copied around), run with network namespaces as the hosts, a page
fetched through the network from a client namespace; afterwards no namespace and no process remain."""
import os
import subprocess

from thor_e2e import SOURCE_ROOT, Skipped, check, log, main, netns_supported, processes_mentioning, run, thor_exe

SCRIPT = os.path.join(SOURCE_ROOT, "examples", "multi-host.sh")


def namespaces(prefix):
    out = subprocess.run(["ip", "netns", "list"], stdout=subprocess.PIPE, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix + "-")]


def test():
    why = netns_supported()
    if why:
        raise Skipped(why)
    name = f"mh{os.getpid() % 100000}"
    try:
        p = run(["bash", SCRIPT, "--local", "--relays", "3", "--check", "--thor", thor_exe(), "--name", name],
                timeout=120, check_rc=False)
        out = p.stdout.decode(errors="replace")
        log(out.rstrip())
        check(p.returncode == 0, f"multi-host.sh --local --check exited with status {p.returncode}:\n{p.stderr}")
        check("check passed" in out and "Hello from dir" in out, "the page did not come through")
        check(f"{name}relay" in out, "the proxy's log shows no circuit over the script's relays")
        log(f"ok  multi-host.sh --local: 1 directory, 3 relays, 1 client in namespaces, page fetched, "
            f"{p.seconds:.2f} s including teardown")
        left = namespaces(name)
        check(not left, f"namespaces left behind: {left}")
        procs = processes_mentioning(f"/tmp/{name}-")
        check(not procs, f"processes left behind: {procs}")
        log("ok  teardown: no namespace, no process left")
    finally:
        for ns in namespaces(name):
            subprocess.run(["ip", "netns", "del", ns])


if __name__ == "__main__":
    main(test)
