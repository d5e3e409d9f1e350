"""The measurements: bulk downloads with curl (every byte checked against its SHA-256), and time to
first byte with a small SOCKS5 client of our own, because it must time a fresh SOCKS connection
without counting the start of a process."""

import hashlib
import math
import os
import socket
import subprocess
import time

from .procs import BenchError

MB = 1e6
GIB = float(1 << 30)

# curl and urllib honour these; the benchmark's traffic must go exactly where it says.
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY",
               "ALL_PROXY", "NO_PROXY")
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}


def median(values):
    v = sorted(values)
    if not v:
        return None
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100)."""
    v = sorted(values)
    if not v:
        return None
    return v[max(0, math.ceil(p / 100 * len(v)) - 1)]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(1 << 20)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _recv_exact(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise BenchError("SOCKS proxy closed the connection during the handshake")
        out += chunk
    return out


def http_get(socks_port, host, port, path, timeout=30.0):
    """GET http://host:port/path on a fresh connection, through SOCKS5 on 127.0.0.1:socks_port
    (the destination sent as a name, as curl --socks5-hostname does) or directly when socks_port
    is None. Returns (seconds from connect() to the first byte of the response, body)."""
    t0 = time.perf_counter()
    sock = socket.create_connection(("127.0.0.1", socks_port if socks_port else port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if socks_port:
            sock.sendall(b"\x05\x01\x00")
            if _recv_exact(sock, 2) != b"\x05\x00":
                raise BenchError("SOCKS proxy refused the no-authentication method")
            name = host.encode()
            sock.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + port.to_bytes(2, "big"))
            head = _recv_exact(sock, 4)
            if head[1] != 0:
                raise BenchError(f"SOCKS proxy answered CONNECT with reply code {head[1]}")
            atyp = head[3]
            alen = 4 if atyp == 1 else 16 if atyp == 4 else _recv_exact(sock, 1)[0]
            _recv_exact(sock, alen + 2)
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        first = sock.recv(65536)
        ttfb = time.perf_counter() - t0
        if not first:
            raise BenchError("the connection closed before any response byte")
        chunks = [first]
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        sock.close()
    response = b"".join(chunks)
    head, sep, body = response.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if not sep or len(status) < 2 or not status[0].startswith(b"HTTP/1.") or status[1] != b"200":
        raise BenchError(f"unexpected HTTP response: {head[:80]!r}")
    return ttfb, body


def ttfb_series(socks_port, server, name, count, warmup):
    """Times to first byte (seconds) of `count` small requests, each on a new SOCKS connection,
    after `warmup` untimed ones; every body is checked."""
    size, digest = server.files[name]
    samples = []
    for i in range(warmup + count):
        ttfb, body = http_get(socks_port, "127.0.0.1", server.port, "/" + name)
        if len(body) != size or hashlib.sha256(body).hexdigest() != digest:
            raise BenchError(f"small request {i}: body of {len(body)} bytes does not match {name}")
        if i >= warmup:
            samples.append(ttfb)
    return samples


def _curl_argv(url, socks_port, out_path, max_time):
    argv = ["curl", "-sS", "--fail", "--max-time", str(int(max_time)), "-o", out_path,
            "-w", "%{size_download} %{time_total}"]
    if socks_port:
        argv += ["--socks5-hostname", f"127.0.0.1:{socks_port}"]
    else:
        argv += ["--noproxy", "*"]
    return argv + [url]


def _check_download(out_path, size, digest, what):
    try:
        got_size = os.path.getsize(out_path)
        if got_size != size:
            raise BenchError(f"{what}: got {got_size} bytes, expected {size}")
        if sha256_file(out_path) != digest:
            raise BenchError(f"{what}: SHA-256 of the {size} bytes received does not match the file served")
    finally:
        try:
            os.unlink(out_path)
        except OSError:
            pass


def _max_time(size, streams):
    # Generous: 0.5 MB/s per stream plus a minute, so a stalled peer fails instead of hanging.
    return 60 + size * streams / (0.5 * MB)


def single_stream(socks_port, server, name, scratch):
    """One download; returns MB/s from curl's own transfer time."""
    size, digest = server.files[name]
    out = os.path.join(scratch, "single.bin")
    r = subprocess.run(_curl_argv(server.url(name), socks_port, out, _max_time(size, 1)),
                       capture_output=True, text=True, env=CLEAN_ENV)
    if r.returncode != 0:
        raise BenchError(f"curl failed ({r.returncode}): {r.stderr.strip()}")
    got, seconds = r.stdout.split()
    _check_download(out, size, digest, "single-stream download")
    return {"bytes": int(got), "seconds": float(seconds), "mb_s": int(got) / float(seconds) / MB}


def multi_stream(socks_port, server, name, streams, scratch):
    """`streams` concurrent downloads, each its own curl; returns aggregate MB/s over the wall time
    from starting the first to the last one finishing."""
    size, digest = server.files[name]
    outs = [os.path.join(scratch, f"multi{i}.bin") for i in range(streams)]
    t0 = time.perf_counter()
    procs = [subprocess.Popen(_curl_argv(server.url(name), socks_port, out, _max_time(size, streams)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CLEAN_ENV)
             for out in outs]
    results = [p.communicate() for p in procs]
    wall = time.perf_counter() - t0
    errors = [f"stream {i}: curl exit {p.returncode}: {err.strip()}"
              for i, (p, (_, err)) in enumerate(zip(procs, results)) if p.returncode != 0]
    for i, out in enumerate(outs):
        if not errors:
            _check_download(out, size, digest, f"stream {i} of {streams}")
        elif os.path.exists(out):
            os.unlink(out)
    if errors:
        raise BenchError("; ".join(errors[:3]))
    total = size * streams
    per_stream = [float(out.split()[1]) for out, _ in results]
    return {"bytes": total, "seconds": wall, "mb_s": total / wall / MB,
            "slowest_stream_s": max(per_stream), "fastest_stream_s": min(per_stream)}


async def _open_stream(socks_port, port, timeout):
    import asyncio
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", socks_port or port), timeout)
    try:
        if socks_port:
            writer.write(b"\x05\x01\x00")
            if await asyncio.wait_for(reader.readexactly(2), timeout) != b"\x05\x00":
                raise BenchError("SOCKS proxy refused the no-authentication method")
            name = b"127.0.0.1"
            writer.write(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + port.to_bytes(2, "big"))
            head = await asyncio.wait_for(reader.readexactly(4), timeout)
            if head[1] != 0:
                raise BenchError(f"SOCKS proxy answered CONNECT with reply code {head[1]}")
            alen = {1: 4, 4: 16}.get(head[3])
            if alen is None:
                alen = (await asyncio.wait_for(reader.readexactly(1), timeout))[0]
            await asyncio.wait_for(reader.readexactly(alen + 2), timeout)
    except BaseException:
        writer.close()
        raise
    return reader, writer


async def _use_stream(reader, writer, name, size, digest, timeout):
    import asyncio
    writer.write(f"GET /{name} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    response = await asyncio.wait_for(reader.read(), timeout)
    writer.close()
    _, _, body = response.partition(b"\r\n\r\n")
    return len(body) == size and hashlib.sha256(body).hexdigest() == digest


def open_streams(socks_port, server, name, count, rss_of, concurrency=200, timeout=60.0):
    """Opens `count` streams through the proxy to the file server and keeps them all open at once;
    then measures rss_of() (the peer's memory while it holds them), and finally sends a request on
    every stream and checks every answer, so each counted stream really worked.
    Failures are counted, not raised: a proxy that holds 9,997 of 10,000 streams is a result.
    Returns {"requested", "opened", "verified", "seconds_to_open", "rss": rss_of(), ...}."""
    import asyncio
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count + 256
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            raise BenchError(f"{count} open streams need {want} file descriptors; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    size, digest = server.files[name]

    async def run():
        gate = asyncio.Semaphore(concurrency)

        async def one():
            async with gate:
                return await _open_stream(socks_port, server.port, timeout)

        t0 = time.perf_counter()
        results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
        seconds = time.perf_counter() - t0
        streams = [r for r in results if not isinstance(r, BaseException)]
        errors = [r for r in results if isinstance(r, BaseException)]
        try:
            rss = rss_of()

            async def use(rw):
                async with gate:
                    return await _use_stream(rw[0], rw[1], name, size, digest, timeout)

            checked = await asyncio.gather(*(use(rw) for rw in streams), return_exceptions=True)
        finally:
            for _, writer in streams:
                writer.close()
        verified = sum(1 for c in checked if c is True)
        bad = [c for c in checked if c is not True]
        return {"requested": count, "opened": len(streams), "verified": verified,
                "seconds_to_open": seconds, "rss": rss,
                "open_errors": len(errors), "first_open_error": repr(errors[0]) if errors else None,
                "first_wrong_answer": repr(bad[0]) if bad else None}

    return asyncio.run(run())
