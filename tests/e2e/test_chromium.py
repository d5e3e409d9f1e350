#!/usr/bin/env python3
"""Headless Chromium (Debian's) loads a page through Thor: --proxy-server=socks5:// (Chromium sends the
host name to the proxy) with --proxy-bypass-list='<-loopback>' (else it would go direct for loopback),
and the flags that keep it off the network. The page pulls a script that writes into the DOM, so the
dumped DOM shows two resources arrived intact, and the web server checks both came from a Thor exit."""
import os
import shutil
import tempfile

from thor_e2e import Skipped, ThorUp, WebServer, check, log, main, page, run


def find_chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test():
    chromium = find_chromium()
    if not chromium:
        raise Skipped("chromium is not installed (Debian package chromium; scripts/test.sh installs it)")
    marker = "chromium-page-" + os.urandom(8).hex()
    script_marker = "chromium-script-" + os.urandom(8).hex()
    files = {
        "/page.html": page(marker, "<div id='from-script'></div><script src='/app.js'></script>"),
        "/app.js": f"document.getElementById('from-script').textContent = '{script_marker}';".encode(),
    }
    with WebServer(files) as web, ThorUp(relays=3) as net, tempfile.TemporaryDirectory() as profile:
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}",
               f"--proxy-server=socks5://{net.socks}", "--proxy-bypass-list=<-loopback>",
               "--dump-dom", web.url("/page.html")]
        p = run(cmd, timeout=90)
        dom = p.stdout.decode(errors="replace")
        check(marker in dom, f"the page's text is not in Chromium's DOM:\n{dom[:1000]}\n{p.stderr[-1500:]}")
        check(script_marker in dom, f"the script's text is not in Chromium's DOM (app.js did not arrive or run):"
              f"\n{dom[:1000]}")
        web.check_via_thor(["/page.html", "/app.js"])
        log(f"ok  chromium --dump-dom {web.url('/page.html')}: page and script through Thor, {p.seconds:.2f} s")


if __name__ == "__main__":
    main(test)
