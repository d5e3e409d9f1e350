#!/usr/bin/env python3
"""torsocks (Debian's) wrapping curl. torsocks resolves names with Tor's RESOLVE extension and never
proxies loopback, so the web server lives on a host that is not loopback: a network namespace joined to
the one running `thor up` by a veth pair. The clients cannot resolve the server's name themselves; only
the exit can, so a page that arrives has crossed Thor with the name resolved at the exit."""
import os

from thor_e2e import NetnsWebHost, ThorUp, check, log, main, page, require_program, run, sha256

SOCKS_PORT = 9050  # inside the test's own namespace, where nothing else listens


def test():
    torsocks = require_program("torsocks", "torsocks")
    curl = require_program("curl", "curl")
    files = {"/index.html": page("torsocks-" + os.urandom(8).hex()), "/blob.bin": os.urandom(1 << 20)}
    with NetnsWebHost(files) as host:
        conf = os.path.join(host.tmp, "torsocks.conf")
        with open(conf, "w") as f:
            f.write(f"TorAddress 127.0.0.1\nTorPort {SOCKS_PORT}\n")
        env = dict(os.environ, TORSOCKS_CONF_FILE=conf)
        client = host.client_prefix()
        # The setup is what makes the test meaningful: without Thor the client can neither resolve the
        # name nor does curl alone get the page.
        run(client + ["getent", "hosts", "localhost"])
        p = run(client + ["getent", "hosts", host.name], check_rc=False)
        check(p.returncode != 0, f"the client resolves {host.name} itself ({p.stdout!r}); the test would prove nothing")
        with ThorUp(relays=3, socks_port=SOCKS_PORT, prefix=host.thor_prefix(),
                    extra=["--exit-policy", host.exit_policy()]):
            for path, data in files.items():
                p = run(client + [torsocks, curl, "--silent", "--show-error", "--fail", "--max-time", "30",
                                  host.url(path)], env=env)
                check(p.stdout == data, f"torsocks curl {host.url(path)}: {len(p.stdout)} bytes, sha256 "
                      f"{sha256(p.stdout)}; expected {len(data)} bytes, {sha256(data)}\n{p.stderr}")
                log(f"ok  torsocks curl {host.url(path)}: {len(data)} bytes, SHA-256 matches, {p.seconds:.2f} s")
            # An IP address: torsocks sends a SOCKS5 CONNECT with the address itself.
            url = f"http://{host.WEB_ADDR}:{host.port}/index.html"
            p = run(client + [torsocks, curl, "--silent", "--show-error", "--fail", "--max-time", "30", url], env=env)
            check(p.stdout == files["/index.html"], f"torsocks curl {url}: wrong bytes {p.stdout[:200]!r}")
            log(f"ok  torsocks curl {url}: {p.seconds:.2f} s")
            # A name that does not exist: RESOLVE fails at the exit and curl says it cannot resolve it.
            p = run(client + [torsocks, curl, "--silent", "--max-time", "30", "http://no-such-host.invalid/"],
                    env=env, check_rc=False)
            check(p.returncode == 6 and p.stdout == b"",
                  f"an unresolvable name through torsocks: curl exit {p.returncode}, expected 6\n{p.stderr}")
            log("ok  torsocks curl of a name that does not exist: curl exit 6 (could not resolve)")


if __name__ == "__main__":
    main(test)
