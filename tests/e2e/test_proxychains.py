#!/usr/bin/env python3
"""proxychains4 (Debian's proxychains-ng) wrapping curl, with a generated config: `socks5 127.0.0.1 PORT`
and proxy_dns. On loopback proxychains finds "localhost" in /etc/hosts and connects by address through
Thor; when network namespaces are available, a name only the exit can resolve takes the proxy_dns path
(proxychains hands curl a placeholder address and sends the name in the SOCKS request)."""
import os
import tempfile

from thor_e2e import (NetnsWebHost, Skipped, ThorUp, WebServer, check, log, main, netns_supported, page,
                      require_program, run, sha256)

CONFIG = """strict_chain
proxy_dns
remote_dns_subnet 224
tcp_read_time_out 15000
tcp_connect_time_out 8000
[ProxyList]
socks5 127.0.0.1 {port}
"""


def write_config(folder, port):
    path = os.path.join(folder, "proxychains.conf")
    with open(path, "w") as f:
        f.write(CONFIG.format(port=port))
    return path


def fetch(prefix, proxychains, conf, url, data):
    curl = ["curl", "--silent", "--show-error", "--fail", "--max-time", "30", url]
    p = run(prefix + [proxychains, "-f", conf] + curl)
    check(p.stdout == data, f"proxychains4 curl {url}: {len(p.stdout)} bytes, sha256 {sha256(p.stdout)}; "
          f"expected {len(data)} bytes, {sha256(data)}\n{p.stderr}")
    check("OK" in p.stderr, f"proxychains4 did not report its chain for {url}:\n{p.stderr}")
    return p


def test():
    proxychains = require_program("proxychains4", "proxychains4")
    require_program("curl", "curl")
    files = {"/index.html": page("proxychains-" + os.urandom(8).hex()), "/blob.bin": os.urandom(2 << 20)}
    with WebServer(files) as web, ThorUp(relays=3) as net, tempfile.TemporaryDirectory() as tmp:
        conf = write_config(tmp, net.socks_port)
        for host in ("localhost", "127.0.0.1"):
            for path, data in files.items():
                p = fetch([], proxychains, conf, web.url(path, host=host), data)
                web.check_via_thor([path])
                log(f"ok  proxychains4 curl {web.url(path, host=host)}: {len(data)} bytes, {p.seconds:.2f} s")

    why = netns_supported()
    if why:
        log(f"not run: the proxy_dns part with a name only the exit resolves ({why})")
        return
    try:
        with NetnsWebHost(files) as host:
            conf = write_config(host.tmp, 9050)
            with ThorUp(relays=3, socks_port=9050, prefix=host.thor_prefix(),
                        extra=["--exit-policy", host.exit_policy()]):
                for path, data in files.items():
                    p = fetch(host.client_prefix(), proxychains, conf, host.url(path), data)
                    check(f"{host.name}:{host.port}" in p.stderr,
                          f"proxychains4 did not send the name {host.name} to the proxy:\n{p.stderr}")
                    log(f"ok  proxychains4 (proxy_dns) curl {host.url(path)}: {len(data)} bytes, {p.seconds:.2f} s")
    except Skipped as e:
        log(f"not run: the proxy_dns part ({e})")


if __name__ == "__main__":
    main(test)
