#!/usr/bin/env python3
"""Differential conformance: the same scenarios against Apache Kafka and zombi, diffed.

    run.py --kafka HOST:PORT --zombi HOST:PORT [--fast] [--only NAME...] [--json OUT]

Runs every scenario of scenarios.py against both brokers (Kafka first), normalises what
legitimately differs (node ids, cluster ids, hosts and ports, topic ids, generated member and
producer ids, throttle times, error message texts) and compares the rest field by field. A
difference listed in known.json (scenario, JSON path pattern, reason) is reported as KNOWN and
passes; any other difference fails the scenario. Prints PASS/FAIL lines and, last,
"N passed, M failed".
"""

import argparse
import fnmatch
import json
import os
import re
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import scenarios  # noqa: E402
import wire  # noqa: E402

NODE_KEYS = {"node_id", "leader_id", "controller_id", "broker_id", "replica_nodes", "isr_nodes",
             "offline_replicas", "eligible_leader_replicas", "last_known_elr", "leader"}
DROP_KEYS = {"throttle_time_ms", "error_message", "message", "batch_index_error_message"}
ID_KEYS = {"member_id", "leader", "producer_id"}
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ZERO_UUID = "00000000-0000-0000-0000-000000000000"


class Normaliser:
    def __init__(self, node_id, port, cluster_id):
        self.node_id = node_id
        self.port = port
        self.cluster_id = cluster_id
        self.ids = {}

    def ident(self, kind, value):
        if value in (None, "", -1):
            return value
        key = (kind, value)
        if key not in self.ids:
            self.ids[key] = "<%s-%d>" % (kind, sum(1 for k in self.ids if k[0] == kind) + 1)
        return self.ids[key]

    def __call__(self, x, key=None):
        if isinstance(x, dict):
            out = {}
            for k, v in x.items():
                if k in DROP_KEYS:
                    continue
                out[k] = self(v, k)
            return out
        if isinstance(x, (list, tuple)):
            return [self(v, key) for v in x]
        x = wire.jsonable(x)
        if key in NODE_KEYS and isinstance(x, int) and not isinstance(x, bool):
            return "<node>" if x == self.node_id else x
        if key in ("member_id", "leader") and isinstance(x, str):
            return self.ident("member", x)
        if key == "producer_id" and isinstance(x, int) and x >= 0:
            return self.ident("producer", x)
        if key == "host" and isinstance(x, str):
            return "<host>"
        if key == "port" and x == self.port:
            return "<port>"
        if key == "cluster_id" and x == self.cluster_id:
            return "<cluster>"
        if key == "client_host" and isinstance(x, str):
            return "<client-host>"
        if isinstance(x, str) and UUID_RE.match(x) and x != ZERO_UUID:
            return "<uuid>"
        return x


def flatten(x, path=""):
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            out.update(flatten(v, "%s/%s" % (path, k)))
        if not x:
            out[path] = {}
        return out
    if isinstance(x, list):
        out = {}
        for i, v in enumerate(x):
            out.update(flatten(v, "%s[%d]" % (path, i)))
        if not x:
            out[path] = []
        return out
    return {path: x}


def diff(k, z):
    fk, fz = flatten(k), flatten(z)
    out = []
    for p in sorted(set(fk) | set(fz)):
        a, b = fk.get(p, "<absent>"), fz.get(p, "<absent>")
        if a != b:
            out.append((p, a, b))
    return out


def api_versions_ranges(bootstrap):
    with wire.Conn(bootstrap) as c:
        r = c.call("ApiVersions", 3, client_software_name="zombi-diff", client_software_version="1")
    return {k["api_key"]: (k["min_version"], k["max_version"]) for k in r["api_keys"]}


def identity(bootstrap):
    with wire.Conn(bootstrap) as c:
        r = c.call("Metadata", 12, topics=[])
    return r["brokers"][0]["node_id"], r["brokers"][0]["port"], r["cluster_id"]


def common_versions(kafka, zombi):
    by_key = {}
    for name, cls in wire.CLASSES.items():
        if name.endswith("Request"):
            by_key[cls.API_KEY] = (name[:-len("Request")], cls.max_version)
    out = {}
    for key, (name, schema_max) in by_key.items():
        if key in kafka and key in zombi:
            lo = max(kafka[key][0], zombi[key][0])
            hi = min(kafka[key][1], zombi[key][1], schema_max)
            if lo <= hi:
                out[name] = (lo, hi)
    return out, by_key


def compare_api_versions(k_obs, z_obs, names):
    """zombi may leave out APIs or versions; it must not claim a version Kafka lacks."""
    diffs, notes = [], []
    for v, zk in z_obs.items():
        kk = k_obs[v]
        if zk["error_code"] != kk["error_code"]:
            diffs.append(("/%s/error_code" % v, kk["error_code"], zk["error_code"]))
    kr, zr = k_obs["v3"]["ranges"], z_obs["v3"]["ranges"]
    for key, (zlo, zhi) in sorted(zr.items()):
        name = names.get(key, ("api %d" % key,))[0]
        if key not in kr:
            diffs.append(("/ranges/%s" % name, "<absent>", [zlo, zhi]))
            continue
        klo, khi = kr[key]
        if zhi > khi:
            diffs.append(("/ranges/%s/max" % name, khi, zhi))
        if (zlo, zhi) != (klo, khi):
            notes.append("%s: kafka %d-%d, zombi %d-%d" % (name, klo, khi, zlo, zhi))
    missing = [names.get(k, ("api %d" % k,))[0] for k in sorted(kr) if k not in zr]
    if missing:
        notes.append("APIs zombi does not advertise: " + ", ".join(missing))
    return diffs, notes


def load_known(path):
    with open(path) as f:
        return json.load(f)["differences"]


def known_reason(known, scen, path):
    """The index and reason of the first known.json entry matching, or None."""
    for i, entry in enumerate(known):
        if entry["scenario"] in (scen, "*") and fnmatch.fnmatchcase(path, entry["path"]):
            return i, entry["reason"]
    return None


def run_one(fn, bootstrap, common, t0):
    ctx = scenarios.Ctx(bootstrap, common, t0)
    try:
        return wire.jsonable(fn(ctx)), None
    except Exception:
        return None, traceback.format_exc()
    finally:
        ctx.close()


def kafka_version(bootstrap):
    with wire.Conn(bootstrap) as c:
        r = c.call("ApiVersions", 3, client_software_name="zombi-diff", client_software_version="1")
    return "%s (ApiVersions v3: %d APIs)" % (os.environ.get("KAFKA_REF_VERSION", "?"),
                                             len(r["api_keys"]))


KIND_TITLES = {"bug": "zombi bug (to fix)", "not-built": "not built yet",
               "newer-kafka": "newer than zombi's Kafka 4.1 protocol", "one-node": "one node",
               "design": "by design"}


def write_section(path, report, known, kversion, args):
    """The differential harness's section of compat/REPORT.md (copied in by
    compat/suites/report.py)."""
    seen = {}
    for name, e in report["scenarios"].items():
        for d in e.get("differences") or []:
            if d["known"]:
                seen.setdefault(d["known_index"], []).append((name, d))
    w = []
    w.append("## Differential conformance against Apache Kafka")
    w.append("")
    w.append("`compat/differential/run.sh` runs %d scenarios (raw protocol requests built from "
             "Kafka's own message schemas, through kafka-python's protocol classes) against "
             "Apache Kafka %s and zombi, started side by side on 127.0.0.1, and diffs what a "
             "client observes after normalising node ids, cluster ids, ports, topic ids, "
             "generated member and producer ids, throttle times and error message texts. Last "
             "full run: %d passed, %d failed (%s). A scenario passes when every difference is "
             "listed in `compat/differential/known.json`; each listed difference is below. "
             "Every scenario's observations are in `$ZOMBI_CACHE/differential/last.json`."
             % (len(report["scenarios"]), kversion, report["passed"], report["failed"],
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))
    w.append("")
    w.append("| scenario | result | differences (all known) |")
    w.append("|---|---|---:|")
    for name, e in report["scenarios"].items():
        diffs = e.get("differences") or []
        unknown = [d for d in diffs if not d["known"]]
        res = "pass" if not unknown and not e.get("zombi_error") and not e.get(
            "kafka_error") else "**FAIL**"
        w.append("| `%s` | %s | %d |" % (name, res, len(diffs)))
    w.append("")
    notes = (report["scenarios"].get("api_versions") or {}).get("notes") or []
    if notes:
        w.append("ApiVersions, where the ranges differ (zombi may advertise less, never a version "
                 "Kafka lacks): " + "; ".join(notes) + ".")
        w.append("")
    for kind in ("bug", "not-built", "newer-kafka", "one-node", "design"):
        entries = [(i, k) for i, k in enumerate(known) if k.get("kind") == kind]
        if not entries:
            continue
        w.append("### %s" % KIND_TITLES[kind][0].upper() + KIND_TITLES[kind][1:])
        w.append("")
        w.append("| scenario | path | Kafka | zombi | reason |")
        w.append("|---|---|---|---|---|")
        for i, k in entries:
            hits = seen.get(i, [])
            if hits:
                name, d = hits[0]
                more = " (+%d more)" % (len(hits) - 1) if len(hits) > 1 else ""
                w.append("| `%s` | `%s`%s | `%s` | `%s` | %s |" % (
                    name, d["path"], more, json.dumps(d["kafka"])[:60],
                    json.dumps(d["zombi"])[:60], k["reason"].replace("|", "\\|")))
            else:
                w.append("| `%s` | `%s` | | | %s (not seen in the last run) |" % (
                    k["scenario"], k["path"], k["reason"].replace("|", "\\|")))
        w.append("")
    with open(path, "w") as f:
        f.write("\n".join(w) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kafka", required=True)
    ap.add_argument("--zombi", required=True)
    ap.add_argument("--fast", action="store_true", help="only the scenarios marked fast")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--json", help="write observations and differences here")
    ap.add_argument("--known", default=os.path.join(HERE, "known.json"))
    ap.add_argument("--verbose", action="store_true", help="print known differences too")
    ap.add_argument("--section", help="write the report card's markdown section here")
    args = ap.parse_args()

    known = load_known(args.known)
    kr, zr = api_versions_ranges(args.kafka), api_versions_ranges(args.zombi)
    common, names = common_versions(kr, zr)
    t0 = (int(time.time() * 1000) // 1000 - 3600) * 1000   # one hour ago, whole seconds
    norms = {"kafka": Normaliser(*identity(args.kafka)), "zombi": Normaliser(*identity(args.zombi))}
    passed = failed = 0
    report = {"t0": t0, "common_versions": common, "scenarios": {}}
    for name, fast, fn in scenarios.SCENARIOS:
        if args.fast and not fast:
            continue
        if args.only and name not in args.only:
            continue
        start = time.time()
        k_obs, k_err = run_one(fn, args.kafka, common, t0)
        z_obs, z_err = run_one(fn, args.zombi, common, t0)
        secs = time.time() - start
        entry = {"kafka": k_obs, "zombi": z_obs, "kafka_error": k_err, "zombi_error": z_err}
        report["scenarios"][name] = entry
        if k_err:
            failed += 1
            print("FAIL %s: the scenario broke against Kafka (a harness bug):\n%s" % (name, k_err))
            continue
        if z_err:
            failed += 1
            print("FAIL %s: the scenario broke against zombi:\n%s" % (name, z_err))
            continue
        norms["kafka"].ids.clear()
        norms["zombi"].ids.clear()
        k_n, z_n = norms["kafka"](k_obs), norms["zombi"](z_obs)
        notes = []
        if name == "api_versions":
            diffs, notes = compare_api_versions(k_obs, z_obs, names)
        else:
            diffs = diff(k_n, z_n)
        unknown, knowns = [], []
        for path, a, b in diffs:
            reason = known_reason(known, name, path)
            (knowns if reason else unknown).append((path, a, b, reason))
        entry["differences"] = [{"path": p, "kafka": a, "zombi": b,
                                 "known": r and r[1], "known_index": r and r[0]}
                                for p, a, b, r in unknown + knowns]
        entry["notes"] = notes
        label = "PASS" if not unknown else "FAIL"
        extra = " (%d known difference%s)" % (len(knowns), "" if len(knowns) == 1 else "s") \
            if knowns else ""
        print("%s %s%s [%.1f s]" % (label, name, extra, secs))
        for n in notes:
            print("    note: %s" % n)
        for p, a, b, r in unknown:
            print("    DIFF %s: kafka=%s zombi=%s" % (p, json.dumps(a), json.dumps(b)))
        if args.verbose:
            for p, a, b, r in knowns:
                print("    known %s: kafka=%s zombi=%s (%s)" % (p, json.dumps(a), json.dumps(b),
                                                             r[1]))
        if unknown:
            failed += 1
        else:
            passed += 1
    report["passed"], report["failed"] = passed, failed
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, sort_keys=True, default=str)
    if args.section:
        write_section(args.section, report, known, kafka_version(args.kafka), args)
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
