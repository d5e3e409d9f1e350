#!/usr/bin/env python3
"""Thor against the real peers, side by side, on 127.0.0.1 only, in one command.

    python3 bench/run.py [--quick] [--only thor,tor,microsocks,direct] [--json out.json]
                         [--relay-circuits N]

Brings up a static file server (nginx) with random files of known SHA-256, then one peer at a time
(direct, microsocks, a private Tor network, a Thor network from `thor up`), measures it, and tears it
down; everything is stopped at the end, on error and on Ctrl-C. For Thor alone, one relay of the network
also holds --relay-circuits circuits at once (bench/circuit_load) while its memory is read. No traffic leaves the machine: every
listener is on 127.0.0.1 and every destination is the local file server. See docs/performance.md.
"""

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import measure, procs, relay_load, report  # noqa: E402
from harness.fileserver import FileServer  # noqa: E402
from harness.peers import Direct, Microsocks, Thor, Tor, ensure_thor  # noqa: E402
from harness.procs import BenchError  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MiB = 1 << 20
ALL_PEERS = ["direct", "microsocks", "tor", "thor"]

FULL = dict(single=256 * MiB, multi=64 * MiB, streams=16, small=1024, ttfb=200, warmup=20, reps=3, circuits=10,
            open_streams=10000, relay_circuits=10000, relay_circuit_streams=False)
QUICK = dict(single=4 * MiB, multi=1 * MiB, streams=16, small=1024, ttfb=20, warmup=5, reps=1, circuits=3,
             open_streams=100, relay_circuits=200, relay_circuit_streams=False)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    def version(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return None

    commit = version(["git", "-C", REPO, "rev-parse", "--short", "HEAD"])
    return {"nproc": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "loadavg_at_end": os.getloadavg(),
            "tor": version(["tor", "--version"]), "nginx": version(["nginx", "-v"]),
            "curl": version(["curl", "--version"]), "thor_commit": commit}


def ensure_packages(peers):
    need = ["curl", "nginx"] + (["microsocks"] if "microsocks" in peers else []) + \
        (["tor", "tor-gencert"] if "tor" in peers else [])
    missing = [exe for exe in need if shutil.which(exe) is None and not os.path.exists("/usr/sbin/" + exe)]
    if missing:
        log(f"missing {', '.join(missing)}: installing the bench package set")
        subprocess.run(["bash", os.path.join(REPO, "scripts", "ensure-packages.sh"), "bench"], check=True)


def rss_now(peer):
    """Resident memory of the peer right now: its proxy process and all its processes together."""
    snap = procs.snapshot(peer.pids(), peer.label)
    proxy = snap.get(peer.proxy_pid())
    return {"proxy_mib": proxy["rss_kib"] / 1024 if proxy else None,
            "total_mib": sum(p["rss_kib"] for p in snap.values()) / 1024 if snap else None,
            "by_process": sorted(snap.values(), key=lambda p: p["name"])}


def measure_peer(peer, server, cfg, scratch):
    """Brings the peer up, runs every measurement cfg asks for, and returns its result."""
    small = "small.bin"
    size, digest = server.files[small]

    def probe(socks_port):
        _, body = measure.http_get(socks_port, "127.0.0.1", server.port, "/" + small, timeout=15)
        if len(body) != size:
            raise BenchError(f"probe got {len(body)} bytes, expected {size}")

    result = {"name": peer.name, "ok": False, "error": None, "runs": []}
    try:
        peer.start(probe)
        result["ready_s"] = peer.ready_s
        if isinstance(peer, Thor):
            result["thor_up_reported_ready_s"] = peer.reported_ready_s
        # Warm up: connections, circuits, caches, before anything is timed.
        for _ in range(cfg["warmup"]):
            probe(peer.socks_port)
        circuits = peer.circuit_build_s(cfg["circuits"])
        result["circuit_build_ms_samples"] = [c * 1e3 for c in circuits]
        pids = peer.pids()
        for rep in range(cfg["reps"]):
            before = procs.snapshot(pids)
            single = measure.single_stream(peer.socks_port, server, "single.bin", scratch)
            log(f"{peer.name}: run {rep + 1}: single stream {single['mb_s']:.1f} MB/s "
                f"({single['bytes'] / MiB:.0f} MiB in {single['seconds']:.2f} s, SHA-256 ok)")
            multi = measure.multi_stream(peer.socks_port, server, "multi.bin", cfg["streams"], scratch)
            log(f"{peer.name}: run {rep + 1}: {cfg['streams']} streams {multi['mb_s']:.1f} MB/s aggregate "
                f"({multi['bytes'] / MiB:.0f} MiB in {multi['seconds']:.2f} s, every SHA-256 ok)")
            after = procs.snapshot(pids)
            carried = single["bytes"] + multi["bytes"]
            cpu = procs.cpu_between(before, after) if pids else None
            ttfb = measure.ttfb_series(peer.socks_port, server, small, cfg["ttfb"], cfg["warmup"])
            run = {"single": single, "multi": multi,
                   "single_mb_s": single["mb_s"], "multi_mb_s": multi["mb_s"],
                   "ttfb_ms_median": measure.median(ttfb) * 1e3,
                   "ttfb_ms_p99": measure.percentile(ttfb, 99) * 1e3,
                   "cpu_s": cpu, "cpu_s_per_gib": cpu / (carried / measure.GIB) if cpu is not None else None}
            log(f"{peer.name}: run {rep + 1}: first byte median {run['ttfb_ms_median']:.2f} ms, "
                f"p99 {run['ttfb_ms_p99']:.2f} ms ({cfg['ttfb']} requests)"
                + (f", {run['cpu_s_per_gib']:.2f} CPU s/GiB" if cpu is not None else ""))
            result["runs"].append(run)
        # Peak RSS of each process (VmHWM) while carrying bulk and small requests, before the
        # open-streams test below grows it.
        final = procs.snapshot(peer.pids(), peer.label)
        result["processes"] = sorted(final.values(), key=lambda s: s["name"])
        if isinstance(peer, Thor) and cfg["relay_circuits"]:
            measure_relay_circuits(peer, cfg, probe, result)
        if cfg["open_streams"]:
            result["open_streams"] = held = measure.open_streams(
                peer.socks_port, server, small, cfg["open_streams"], lambda: rss_now(peer))
            rss = held["rss"]
            log(f"{peer.name}: {held['opened']} of {held['requested']} streams open at once in "
                f"{held['seconds_to_open']:.2f} s, {held['verified']} answered correctly"
                + (f" (first failure: {held['first_open_error'] or held['first_wrong_answer']})"
                   if held["verified"] != held["requested"] else "")
                + (f"; RSS meanwhile: proxy {rss['proxy_mib']:.1f} MiB, all processes {rss['total_mib']:.1f} MiB"
                   if rss["proxy_mib"] is not None else ""))
        result["ok"] = True
    except BenchError as e:
        result["error"] = str(e)
        log(f"{peer.name}: FAILED: {e}")
    except Exception as e:  # noqa: BLE001 - a bug here must not lose the other peers' numbers
        result["error"] = f"{type(e).__name__}: {e}"
        log(f"{peer.name}: FAILED:\n{traceback.format_exc()}")
    finally:
        peer.stop()

    runs = result["runs"]
    summary = {key: measure.median([r[key] for r in runs if r.get(key) is not None])
               for key in ("single_mb_s", "multi_mb_s", "ttfb_ms_median", "ttfb_ms_p99", "cpu_s_per_gib")}
    summary["ready_s"] = result.get("ready_s")
    summary["circuit_build_ms"] = measure.median(result.get("circuit_build_ms_samples") or [])
    processes = result.get("processes") or []
    summary["processes"] = len(processes) if processes else None
    summary["peak_rss_mib"] = sum(p["hwm_kib"] for p in processes) / 1024 if processes else None
    summary["peak_rss_max_mib"] = max(p["hwm_kib"] for p in processes) / 1024 if processes else None
    held = result.get("open_streams")
    summary["open_streams_proxy_rss_mib"] = held["rss"]["proxy_mib"] if held else None
    summary["open_streams_rss_mib"] = held["rss"]["total_mib"] if held else None
    summary["open_streams_s"] = held["seconds_to_open"] if held else None
    summary["open_streams_ok"] = held["verified"] if held else None
    load = result.get("relay_circuits")
    built = (load or {}).get("built")
    summary["relay_circuits_held"] = built["open"] if built else None
    summary["relay_circuits_s"] = built["seconds"] if built else None
    summary["relay_rss_before_mib"] = load.get("rss_before_mib") if load else None
    summary["relay_rss_held_mib"] = load.get("rss_held_mib") if load else None
    summary["relay_healthy"] = ("yes" if load["healthy"] else "no") if load and "healthy" in load else None
    result["summary"] = summary
    return result


def measure_relay_circuits(peer, cfg, probe, result):
    """One relay holding cfg["relay_circuits"] circuits at once. A failure here is recorded and
    reported, and the peer's other measurements go on."""
    n = cfg["relay_circuits"]
    try:
        load = relay_load.relay_circuits(peer, peer.circuit_load, n, probe, peer.dir,
                                         streams=cfg["relay_circuit_streams"], log=log)
    except BenchError as e:
        result["relay_circuits"] = {"requested": n, "error": str(e)}
        result.setdefault("step_errors", []).append(f"relay circuits: {e}")
        log(f"{peer.name}: relay circuits: FAILED: {e}")
        return
    result["relay_circuits"] = load
    built = load["built"]
    why = ", ".join(f"{k}: {v['count']} ({v['example']})" for k, v in built["failures"].items())
    log(f"{peer.name}: relay {load['relay']} held {built['open']} of {n} circuits"
        + (f" with {built['streams_echoed']} streams open and echoed" if load["streams"] else "")
        + f", built in {built['seconds']:.2f} s over {built['links']} links"
        + (f" ({built['failed']} failed: {why})" if built["failed"] else "")
        + f"; relay RSS {load['rss_before_mib']:.1f} MiB before, {load['rss_held_mib']:.1f} MiB with them held, "
        + (f"{load['rss_after_mib']:.1f} MiB after" if load["rss_after_mib"] is not None else "relay gone after")
        + "; " + ("healthy: a request through the proxy worked while held and after, and new circuits build"
                  if load["healthy"]
                  else f"NOT healthy: request while held: {load['probe_while_held']}, after: {load['probe_after']}; "
                       f"new circuits after: {load['new_circuits_after']}; "
                       f"circuits closed while held: {load['released'].get('closed_while_held')}"))
    if built.get("hint"):
        log(f"{peer.name}: relay circuits: {built['hint']}")
    if load["streams"] and built["streams_failed"]:
        why = ", ".join(f"{k}: {v['count']} ({v['example']})" for k, v in built["stream_failures"].items())
        log(f"{peer.name}: relay circuits: {built['streams_failed']} streams failed: {why}")
    if not load["healthy"] or built["open"] != n or (load["streams"] and built["streams_echoed"] != n):
        result.setdefault("step_errors", []).append(
            f"relay circuits: {built['open']} of {n} held, healthy: {load['healthy']}")


def raise_fd_limit(want):
    """Every child inherits this: a proxy that opens one upstream socket per client (microsocks) needs
    two descriptors per open stream."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))  # needs root above `hard`
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if hard < want:
            log(f"note: open file limit is {hard}; holding {(want - 1024) // 2} streams open may fail "
                f"for proxies that need two descriptors per stream")


def make_peer(name, workdir, args, cfg):
    if name == "direct":
        return Direct()
    if name == "microsocks":
        return Microsocks(workdir, log=log)
    if name == "tor":
        return Tor(workdir, relays=args.relays, log=log)
    if name == "thor":
        peer = Thor(workdir, ensure_thor(REPO, args.thor, log=log), relays=args.relays, log=log)
        peer.circuit_load = relay_load.ensure_circuit_load(REPO, args.thor, log=log) if cfg["relay_circuits"] else None
        return peer
    raise BenchError(f"unknown peer {name!r}: choose from {', '.join(ALL_PEERS)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one repetition: a smoke test in about a minute")
    ap.add_argument("--only", default=",".join(ALL_PEERS), help="comma-separated peers (default: all four)")
    ap.add_argument("--json", help="write every number to this file")
    ap.add_argument("--thor", help="the release thor binary (default: build-release/app/thor, built if missing)")
    ap.add_argument("--reps", type=int, help="repetitions (default 3, or 1 with --quick)")
    ap.add_argument("--open-streams", type=int,
                    help="streams held open at once through each proxy (default 10000, or 100 with --quick; 0: skip)")
    ap.add_argument("--relay-circuits", type=int,
                    help="circuits one Thor relay holds at once (default 10000, or 200 with --quick; 0: skip)")
    ap.add_argument("--relay-circuit-streams", action="store_true",
                    help="with --relay-circuits: one open stream per circuit as well (to an echo server)")
    ap.add_argument("--relays", type=int, default=3, help="relays in the Tor and Thor networks (default 3)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (configs and logs)")
    args = ap.parse_args()

    cfg = dict(QUICK if args.quick else FULL)
    if args.reps:
        cfg["reps"] = args.reps
    if args.open_streams is not None:
        cfg["open_streams"] = args.open_streams
    if args.relay_circuits is not None:
        cfg["relay_circuits"] = max(0, args.relay_circuits)
    cfg["relay_circuit_streams"] = args.relay_circuit_streams
    peers = [p.strip() for p in args.only.split(",") if p.strip()]
    for p in peers:
        if p not in ALL_PEERS:
            ap.error(f"--only: unknown peer {p!r} (choose from {', '.join(ALL_PEERS)})")

    # SIGINT, SIGTERM and SIGHUP unwind like Ctrl-C, so every `finally` below stops what it started.
    def interrupted(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, interrupted)  # also when started with SIGINT ignored (a background job)
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)

    ensure_packages(peers)
    # A relay holding a stream per circuit needs a descriptor for each (it inherits this limit).
    raise_fd_limit(max(2 * cfg["open_streams"], cfg["relay_circuits"] if cfg["relay_circuit_streams"] else 0) + 1024)
    workdir = tempfile.mkdtemp(prefix="thor-bench-")
    # Downloads land in memory so the disk does not limit the fastest peers.
    scratch = tempfile.mkdtemp(prefix="thor-bench-dl-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    load_at_start = os.getloadavg()
    log(f"work folder {workdir}; {'quick' if args.quick else 'full'} run of {', '.join(peers)}; "
        f"load average {load_at_start[0]:.2f} on {os.cpu_count()} CPUs"
        + (" (busy: numbers will be noisy)" if load_at_start[0] > 0.5 * (os.cpu_count() or 1) else ""))
    server = FileServer(workdir, {"single.bin": cfg["single"], "multi.bin": cfg["multi"], "small.bin": cfg["small"]})
    results = {}
    failed = False
    started = time.time()
    try:
        server.start(log)
        for name in peers:
            try:
                peer = make_peer(name, workdir, args, cfg)
            except (BenchError, subprocess.CalledProcessError) as e:
                results[name] = {"name": name, "ok": False, "error": str(e), "runs": [], "summary": {}}
                log(f"{name}: FAILED: {e}")
                continue
            log(f"{name}: starting")
            results[name] = measure_peer(peer, server, cfg, scratch)
    except BenchError as e:
        log(f"FAILED: {e}")
        failed = True
    except KeyboardInterrupt:
        log("interrupted: stopping everything")
        failed = True
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
        for name in ("single.bin", "multi.bin", "small.bin"):
            try:
                os.unlink(os.path.join(server.root, "www", name))
            except OSError:
                pass
        failed = failed or any(not r.get("ok") or r.get("step_errors") for r in results.values())
        if args.keep or failed:
            log(f"configs and logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    if results:
        text = report.table(results, cfg["open_streams"], cfg["relay_circuits"])
        print()
        print(text)
    if args.json:
        record = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                  "mode": "quick" if args.quick else "full", "config": cfg,
                  "machine": dict(machine(), loadavg_at_start=load_at_start),
                  "peers": results, "ratios": report.ratios(results)}
        report.write_json(args.json, record)
        log(f"wrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
