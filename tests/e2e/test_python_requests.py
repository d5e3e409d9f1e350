#!/usr/bin/env python3
"""Python requests with PySocks, both from Debian (python3-requests, python3-socks), run by Debian's
/usr/bin/python3 with proxies socks5h:// (the exit resolves the name) and socks5:// (resolved here)."""
import json
import os

from thor_e2e import Failure, ThorUp, WebServer, check, log, main, page, run, sha256

DEBIAN_PYTHON = "/usr/bin/python3"

# Runs in Debian's interpreter: fetches each URL through the proxy, prints digests as JSON.
CLIENT = r"""
import hashlib, json, sys
import requests
proxy, urls = sys.argv[1], sys.argv[2:]
session = requests.Session()
session.proxies = {"http": proxy, "https": proxy}
out = []
for url in urls:
    r = session.get(url, timeout=30)
    out.append({"url": url, "status": r.status_code, "length": len(r.content),
                "sha256": hashlib.sha256(r.content).hexdigest()})
print(json.dumps({"requests": requests.__version__, "results": out}))
"""


def test():
    if not os.access(DEBIAN_PYTHON, os.X_OK):
        raise Failure(f"{DEBIAN_PYTHON} is missing (Debian package python3)")
    probe = run([DEBIAN_PYTHON, "-c", "import requests, socks; print(requests.__file__, socks.__file__)"],
                check_rc=False)
    check(probe.returncode == 0, "Debian's python3 lacks requests or PySocks (install python3-requests "
          f"python3-socks; scripts/test.sh does): {probe.stderr.strip()[-300:]}")
    log(f"modules: {probe.stdout.decode().strip()}")
    files = {"/a.html": page("requests-a-" + os.urandom(8).hex()), "/b.bin": os.urandom(3 << 20)}
    with WebServer(files) as web, ThorUp(relays=3) as net:
        for proxy, host in ((f"socks5h://{net.socks}", "localhost"),
                            (f"socks5h://carol:pw@{net.socks}", "localhost"),
                            (f"socks5://{net.socks}", "127.0.0.1")):
            urls = [web.url(p, host=host) for p in files]
            p = run([DEBIAN_PYTHON, "-c", CLIENT, proxy] + urls, timeout=90)
            reply = json.loads(p.stdout)
            for (path, data), r in zip(files.items(), reply["results"]):
                check(r["status"] == 200 and r["sha256"] == sha256(data),
                      f"requests via {proxy}: {path}: status {r['status']}, {r['length']} bytes, sha256 "
                      f"{r['sha256']}; expected 200, {len(data)} bytes, {sha256(data)}")
            web.check_via_thor(list(files))
            log(f"ok  requests {reply['requests']} via {proxy}: {len(urls)} files in {p.seconds:.2f} s")


if __name__ == "__main__":
    main(test)
