"""The one table (absolute numbers, then Thor/Tor and Thor/microsocks) and the JSON record."""

import json

# key, label, format; every value is the median over repetitions (see run.py).
METRICS = [
    ("single_mb_s", "single stream (MB/s)", "{:.1f}"),
    ("multi_mb_s", "16 streams, aggregate (MB/s)", "{:.1f}"),
    ("ttfb_ms_median", "first byte, median (ms)", "{:.2f}"),
    ("ttfb_ms_p99", "first byte, p99 (ms)", "{:.2f}"),
    ("circuit_build_ms", "circuit build, median (ms)", "{:.1f}"),
    ("ready_s", "network ready (s)", "{:.2f}"),
    ("peak_rss_mib", "peak RSS, all processes (MiB)", "{:.1f}"),
    ("peak_rss_max_mib", "peak RSS, largest process (MiB)", "{:.1f}"),
    ("processes", "processes", "{:d}"),
    ("cpu_s_per_gib", "CPU s per GiB carried", "{:.2f}"),
    ("open_streams_ok", "streams held open and answered, of {n}", "{:d}"),
    ("open_streams_s", "open {n} streams at once (s)", "{:.2f}"),
    ("open_streams_proxy_rss_mib", "RSS of the proxy, {n} open (MiB)", "{:.1f}"),
    ("open_streams_rss_mib", "RSS of all, {n} open (MiB)", "{:.1f}"),
    # Thor only (Tor's relays do not speak Thor's protocol): one relay holding {c} circuits at once.
    ("relay_circuits_held", "relay: circuits held at once, of {c}", "{:d}"),
    ("relay_circuits_s", "relay: build {c} circuits (s)", "{:.2f}"),
    ("relay_rss_before_mib", "relay: RSS before (MiB)", "{:.1f}"),
    ("relay_rss_held_mib", "relay: RSS, {c} circuits held (MiB)", "{:.1f}"),
    ("relay_healthy", "relay: carries requests afterwards", "{}"),
]
# A ratio of process counts says nothing; the relay rows have nothing to compare with.
NO_RATIO = {"processes", "relay_circuits_held", "relay_circuits_s", "relay_rss_before_mib", "relay_rss_held_mib",
            "relay_healthy"}

PEER_ORDER = ["direct", "microsocks", "tor", "thor"]


def _fmt(fmt, value):
    if value is None:
        return "-"
    return fmt.format(value)


def _ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def table(results, open_streams=None, relay_circuits=None):
    """results: {peer name: result dict}; returns the table as text."""
    peers = [p for p in PEER_ORDER if p in results] + [p for p in results if p not in PEER_ORDER]
    thor = results.get("thor", {}).get("summary") if results.get("thor", {}).get("ok") else None
    tor = results.get("tor", {}).get("summary") if results.get("tor", {}).get("ok") else None
    ms = results.get("microsocks", {}).get("summary") if results.get("microsocks", {}).get("ok") else None
    header = ["metric"] + peers + ["Thor/Tor", "Thor/microsocks"]
    rows = [header]
    for key, label, fmt in METRICS:
        if key.startswith("relay_") and not relay_circuits:
            continue
        row = [label.format(n=open_streams, c=relay_circuits)]
        for p in peers:
            r = results[p]
            row.append(_fmt(fmt, r["summary"].get(key)) if r.get("ok") else "n/a")
        for other in (tor, ms):
            ratio = _ratio(thor.get(key), other.get(key)) if thor and other and key not in NO_RATIO else None
            row.append("-" if ratio is None else f"{ratio:.2f}x")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for n, r in enumerate(rows):
        lines.append("| " + " | ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i])
                                       for i, c in enumerate(r)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 1) + ":" if i else "-" * (w + 2)
                                        for i, w in enumerate(widths)) + "|")
    notes = [f"{p}: not measured: {results[p]['error']}" for p in peers if not results[p].get("ok")]
    notes += [f"{p}: {e}" for p in peers for e in results[p].get("step_errors", [])]
    return "\n".join(lines + notes)


def ratios(results):
    out = {}
    thor = results.get("thor")
    if not thor or not thor.get("ok"):
        return out
    for other in ("tor", "microsocks", "direct"):
        r = results.get(other)
        if not r or not r.get("ok"):
            continue
        out[f"thor/{other}"] = {key: _ratio(thor["summary"].get(key), r["summary"].get(key))
                                for key, _, _ in METRICS if key not in NO_RATIO}
    return out


def write_json(path, record):
    with open(path, "w") as f:
        json.dump(record, f, indent=2, sort_keys=False)
        f.write("\n")
