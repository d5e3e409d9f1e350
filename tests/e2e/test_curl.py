#!/usr/bin/env python3
"""curl through `thor up`: --socks5-hostname (the exit resolves "localhost"), --socks5 (an IP target),
-x socks5h://user:pass@... (RFC 1929 credentials), and 64 MiB with its SHA-256 checked."""
import os
import tempfile

from thor_e2e import ThorUp, WebServer, check, log, main, page, require_program, run, sha256, sha256_file

BIG = 64 << 20


def test():
    curl = require_program("curl", "curl")
    small = page("curl-small-" + os.urandom(8).hex())
    big = os.urandom(BIG)
    files = {"/small.html": small, "/big.bin": big}
    with WebServer(files) as web, ThorUp(relays=3) as net, tempfile.TemporaryDirectory() as tmp:
        base = [curl, "--silent", "--show-error", "--fail", "--max-time", "30"]
        cases = [
            ("--socks5-hostname, name resolved at the exit", ["--socks5-hostname", net.socks], web.url("/small.html")),
            ("--socks5, IPv4 target", ["--socks5", net.socks], web.url("/small.html", host="127.0.0.1")),
            ("-x socks5h://user:pass@", ["-x", f"socks5h://alice:secret@{net.socks}"], web.url("/small.html")),
            ("-x socks5h:// with other credentials", ["-x", f"socks5h://bob:other@{net.socks}"], web.url("/small.html")),
        ]
        for what, flags, url in cases:
            p = run(base + flags + [url])
            check(p.stdout == small, f"{what}: wrong bytes: {len(p.stdout)} bytes, sha256 {sha256(p.stdout)}, "
                  f"expected {len(small)} bytes, sha256 {sha256(small)}")
            web.check_via_thor(["/small.html"])
            log(f"ok  curl {what}: {len(p.stdout)} bytes in {p.seconds:.2f} s")

        # A name nobody can resolve: curl must report the SOCKS failure, not hang or print bytes.
        p = run(base + ["--socks5-hostname", net.socks, "http://no-such-host.invalid/"], check_rc=False)
        check(p.returncode == 97 and p.stdout == b"", f"an unresolvable name: curl exit {p.returncode} "
              f"(expected 97, 'SOCKS5 connection failed'), stderr {p.stderr.strip()}")
        log(f"ok  curl unresolvable name: exit 97 ({p.stderr.strip()})")

        out = os.path.join(tmp, "big.bin")
        p = run(base + ["--max-time", "120", "--socks5-hostname", net.socks, "-o", out, web.url("/big.bin")],
                timeout=150)
        got = sha256_file(out)
        check(os.path.getsize(out) == BIG and got == sha256(big),
              f"64 MiB transfer: got {os.path.getsize(out)} bytes with sha256 {got}, expected {BIG} bytes, {sha256(big)}")
        web.check_via_thor(["/big.bin"])
        log(f"ok  curl 64 MiB, SHA-256 {got[:16]}...: {p.seconds:.2f} s, {BIG / p.seconds / 1e6:.1f} MB/s")


if __name__ == "__main__":
    main(test)
