#!/usr/bin/env python3
"""A ChatGPT client that reaches an OpenAI-compatible API through Thor.

Standard library only: it opens the TCP connection through Thor's SOCKS5 proxy itself (asking the exit
to resolve the API's host name, as socks5h:// does), then speaks HTTP(S) over it.

    export OPENAI_API_KEY=sk-...            # or --api-key-file FILE
    python3 examples/chatgpt_client.py "Explain onion routing in one sentence."
    python3 examples/chatgpt_client.py --base-url http://127.0.0.1:8000/v1 --model test "hi"

Options: --proxy socks5h://127.0.0.1:9050 (default; socks5h://USER:PASS@HOST:PORT picks a circuit of its
own), --base-url (default https://api.openai.com/v1),
--model (default gpt-4o-mini), --api-key-file, --timeout.
"""
import argparse
import http.client
import json
import os
import socket
import ssl
import struct
import sys
import urllib.parse

SOCKS_ERRORS = {
    1: "general failure", 2: "not allowed by the exit's policy", 3: "network unreachable",
    4: "host unreachable (the exit could not resolve it)", 5: "connection refused",
    6: "timed out", 7: "command not supported", 8: "address type not supported",
}


def socks5_connect(proxy_host, proxy_port, username, password, host, port, timeout):
    """Returns a socket connected to host:port through a SOCKS5 proxy; the proxy resolves the name."""
    try:
        s = socket.create_connection((proxy_host, proxy_port), timeout=timeout)
    except OSError as e:
        raise ConnectionError(f"cannot reach the Thor proxy at {proxy_host}:{proxy_port} ({e.strerror or e}); "
                              "is `thor proxy` or `thor up` running?") from None
    try:
        methods = b"\x02" if username else b"\x00"
        s.sendall(b"\x05\x01" + methods)
        ver, method = _recv_exact(s, 2)
        if ver != 5 or method == 0xFF:
            raise ConnectionError("the SOCKS proxy accepted none of our authentication methods")
        if method == 2:
            u, p = username.encode(), (password or "").encode()
            s.sendall(b"\x01" + bytes([len(u)]) + u + bytes([len(p)]) + p)
            if _recv_exact(s, 2)[1] != 0:
                raise ConnectionError("the SOCKS proxy refused our username and password")
        name = host.encode("idna")
        s.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack(">H", port))
        _, code, _, atype = _recv_exact(s, 4)
        if code != 0:
            raise ConnectionError(f"Thor could not reach {host}:{port}: {SOCKS_ERRORS.get(code, code)}")
        _recv_exact(s, {1: 4, 4: 16}.get(atype, 0) or _recv_exact(s, 1)[0])
        _recv_exact(s, 2)
        return s
    except BaseException:
        s.close()
        raise


def _recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the SOCKS proxy closed the connection")
        data += chunk
    return data


class ThorHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host, port, proxy, timeout):
        super().__init__(host, port, timeout=timeout)
        self._proxy = proxy

    def connect(self):
        self.sock = socks5_connect(*self._proxy, self.host, self.port, self.timeout)


class ThorHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host, port, proxy, timeout):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._proxy = proxy

    def connect(self):
        raw = socks5_connect(*self._proxy, self.host, self.port, self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)


def chat(prompt, base_url, model, api_key, proxy, timeout):
    url = urllib.parse.urlsplit(base_url.rstrip("/") + "/chat/completions")
    proxy_url = urllib.parse.urlsplit(proxy)
    if proxy_url.scheme not in ("socks5h", "socks5"):
        raise SystemExit("--proxy must be socks5h://HOST:PORT")
    # Credentials in the proxy URL choose the circuit: Thor isolates streams by SOCKS username/password.
    unquote = urllib.parse.unquote
    proxy_addr = (proxy_url.hostname, proxy_url.port or 9050,
                  proxy_url.username and unquote(proxy_url.username), proxy_url.password and unquote(proxy_url.password))
    port = url.port or (443 if url.scheme == "https" else 80)
    cls = ThorHTTPSConnection if url.scheme == "https" else ThorHTTPConnection
    conn = cls(url.hostname, port, proxy_addr, timeout)
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": prompt}]})
    conn.request("POST", url.path, body=body, headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {api_key}"})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise SystemExit(f"API error {resp.status}: {data[:500].decode(errors='replace')}")
    try:
        return json.loads(data)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise SystemExit(f"the API's answer is not a chat completion: {data[:500].decode(errors='replace')}")


def main():
    ap = argparse.ArgumentParser(description="Ask an OpenAI-compatible API through Thor.")
    ap.add_argument("prompt")
    ap.add_argument("--proxy", default=os.environ.get("THOR_PROXY", "socks5h://127.0.0.1:9050"))
    ap.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1"))
    ap.add_argument("--model", default=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"))
    ap.add_argument("--api-key-file")
    ap.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args()
    if args.api_key_file:
        with open(args.api_key_file) as f:
            api_key = f.read().strip()
    else:
        api_key = os.environ.get("OPENAI_API_KEY")
    if not api_key:
        raise SystemExit("no API key: set OPENAI_API_KEY or pass --api-key-file")
    try:
        print(chat(args.prompt, args.base_url, args.model, api_key, args.proxy, args.timeout))
    except (OSError, http.client.HTTPException) as e:
        raise SystemExit(f"chatgpt_client: {e}")


if __name__ == "__main__":
    sys.exit(main())
