#!/usr/bin/env python3
"""examples/chatgpt_client.py, run by Debian's python3 with nothing but the standard library, against a
local OpenAI-compatible stand-in (POST /v1/chat/completions answering with a canned completion that
echoes the prompt) through Thor: key from the environment and from a file, proxy credentials, and
clear errors for a wrong key and for a proxy that is not running."""
import json
import os
import tempfile

from thor_e2e import SOURCE_ROOT, ThorUp, WebServer, check, free_port, log, main, run

PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else "python3"
CLIENT = os.path.join(SOURCE_ROOT, "examples", "chatgpt_client.py")
API_KEY = "sk-test-" + os.urandom(8).hex()


def completions(req):
    """The stand-in for the API: checks the request like the real one would, echoes the prompt."""
    if req.headers.get("Authorization") != f"Bearer {API_KEY}":
        return 401, "application/json", json.dumps({"error": {"message": "Incorrect API key provided"}}).encode()
    try:
        body = json.loads(req.body)
        prompt = body["messages"][-1]["content"]
        model = body["model"]
    except (ValueError, KeyError, IndexError, TypeError):
        return 400, "application/json", b'{"error": {"message": "bad request"}}'
    reply = {"id": "chatcmpl-thor", "object": "chat.completion", "created": 0, "model": model,
             "choices": [{"index": 0, "finish_reason": "stop",
                          "message": {"role": "assistant", "content": f"[{model}] you said: {prompt}"}}],
             "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
    return 200, "application/json", json.dumps(reply).encode()


def test():
    check(os.path.exists(CLIENT), f"{CLIENT} is missing")
    prompt = "Explain onion routing in one sentence. " + os.urandom(4).hex() + " — ünïcode ✓"
    with WebServer(post={"/v1/chat/completions": completions}) as api, ThorUp(relays=3) as net, \
            tempfile.TemporaryDirectory() as tmp:
        base_url = f"http://localhost:{api.port}/v1"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "THOR_PROXY"))}
        args = [PYTHON, CLIENT, "--base-url", base_url, "--model", "test-model", "--timeout", "30"]

        p = run(args + ["--proxy", f"socks5h://{net.socks}", prompt], env=dict(env, OPENAI_API_KEY=API_KEY))
        out = p.stdout.decode()
        check(out == f"[test-model] you said: {prompt}\n", f"key from OPENAI_API_KEY: printed {out!r}")
        reqs = api.check_via_thor(["/v1/chat/completions"])
        check(json.loads(reqs[0].body)["messages"][0]["content"] == prompt, "the API did not get the prompt intact")
        log(f"ok  chatgpt_client.py, key from the environment: {out.strip()!r} in {p.seconds:.2f} s")

        key_file = os.path.join(tmp, "openai.key")
        with open(key_file, "w") as f:
            f.write(API_KEY + "\n")
        p = run(args + ["--proxy", f"socks5h://dave:s%40cret@{net.socks}", "--api-key-file", key_file, "hi"], env=env)
        check(p.stdout.decode() == "[test-model] you said: hi\n", f"key from a file: printed {p.stdout!r}")
        api.check_via_thor(["/v1/chat/completions"])
        log(f"ok  chatgpt_client.py, key from a file, proxy credentials: {p.seconds:.2f} s")

        p = run(args + ["--proxy", f"socks5h://{net.socks}", "hi"], env=dict(env, OPENAI_API_KEY="sk-wrong"),
                check_rc=False)
        check(p.returncode != 0 and "API error 401" in p.stderr and "Traceback" not in p.stderr,
              f"a wrong key: exit {p.returncode}, stderr {p.stderr!r}")
        log(f"ok  chatgpt_client.py, wrong key: exit {p.returncode}, {p.stderr.strip()!r}")

        p = run(args + ["--proxy", f"socks5h://127.0.0.1:{free_port()}", "hi"], env=dict(env, OPENAI_API_KEY=API_KEY),
                check_rc=False)
        check(p.returncode != 0 and "chatgpt_client:" in p.stderr and "Traceback" not in p.stderr,
              f"no proxy running: exit {p.returncode}, stderr {p.stderr!r}")
        log(f"ok  chatgpt_client.py, no proxy: exit {p.returncode}, {p.stderr.strip()!r}")


if __name__ == "__main__":
    main(test)
