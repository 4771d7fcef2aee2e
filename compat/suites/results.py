#!/usr/bin/env python3
"""Result helpers for compat/suites/run_*.sh.

  results.py add JSONL SUITE TEST STATUS SECONDS LOGFILE [PARSER]
      Appends one test outcome to JSONL. STATUS is pass, fail, skip or timeout (a timeout is
      recorded as fail with reason "timeout"). The short reason is extracted from LOGFILE with
      the suite's parser (rdkafka, librdkafka, generic).
  results.py junit JSONL SUITE JUNIT_XML LOGDIR
      Converts a pytest JUnit XML file into JSONL records (kafka-python).
  results.py finish JSONL OUT_JSON SUITE VERSION SECONDS [KEY=VALUE...]
      Writes compat/results/<suite>.json:
        {"suite", "version", "duration_s", "generated", "totals": {pass, fail, skip},
         "meta": {...}, "tests": {name: {"status", "reason", "duration_s", "log"}}}
"""
import json
import os
import re
import sys
import time
import xml.etree.ElementTree as ET

REASON_MAX = 300


def _clip(text, n=REASON_MAX):
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


def _read(path):
    try:
        with open(path, "r", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def reason_rdkafka(log):
    """First panic message of a Rust libtest run."""
    lines = log.splitlines()
    for i, line in enumerate(lines):
        m = re.search(r"panicked at [^\n]*", line)
        if m:
            msg = []
            for nxt in lines[i + 1 : i + 6]:
                if nxt.startswith("note:") or nxt.startswith("stack backtrace") or not nxt.strip():
                    break
                msg.append(nxt.strip())
            where = line.split("panicked at", 1)[1].strip().rstrip(":")
            return _clip("%s (at %s)" % (" ".join(msg) or line, where))
    for line in lines:
        if "error" in line.lower():
            return _clip(line)
    return ""


def reason_librdkafka(log):
    """librdkafka test-runner: the TEST FAILED / SKIPPING line, else the last failure line."""
    keep = []
    for line in log.splitlines():
        line = re.sub(r"\x1b\[[0-9;]*m", "", line)
        if re.search(r"TEST FAILURE|Test assertion failed|### Test .* FAILED|: FAILED:|SKIPPING|skipping", line):
            keep.append(line)
        elif re.search(r"^\s*\[\S+ +/ *[0-9.]+s\] .*(Assert|failed|Failed|error|Error)", line):
            keep.append(line)
    for line in keep:
        if "SKIPPING" in line or "skipping" in line.lower():
            return _clip(re.sub(r"^.*?SKIPPING", "SKIPPING", line))
    for line in keep:
        if "TEST FAILURE" not in line and "### Test" not in line:
            return _clip(line)
    return _clip(keep[0]) if keep else ""


def reason_generic(log):
    lines = [l for l in log.splitlines() if l.strip()]
    return _clip(lines[-1]) if lines else ""


PARSERS = {"rdkafka": reason_rdkafka, "librdkafka": reason_librdkafka, "generic": reason_generic}


def cmd_add(args):
    jsonl, suite, test, status, seconds, logfile = args[:6]
    parser = PARSERS[args[6] if len(args) > 6 else "generic"]
    log = _read(logfile)
    reason = ""
    if status == "timeout":
        status = "fail"
        detail = parser(log)
        reason = "timeout" + (": last error: " + detail if detail else "")
    elif status != "pass":
        reason = parser(log)
    rec = {"suite": suite, "test": test, "status": status, "reason": _clip(reason),
           "duration_s": round(float(seconds), 2), "log": logfile}
    with open(jsonl, "a") as f:
        f.write(json.dumps(rec) + "\n")


def cmd_junit(args):
    jsonl, suite, xml_path, logdir = args
    os.makedirs(logdir, exist_ok=True)
    tree = ET.parse(xml_path)
    with open(jsonl, "a") as out:
        for tc in tree.iter("testcase"):
            cls = tc.get("classname", "")
            name = tc.get("name", "")
            module = cls.split(".")[-1] if cls else ""
            test = "%s::%s" % (module, name) if module else name
            status, reason, text = "pass", "", ""
            for ch in tc:
                if ch.tag in ("failure", "error"):
                    status = "fail"
                    reason = ch.get("message") or ""
                    if ch.tag == "error":
                        reason = "error in fixture: " + reason
                    text = ch.text or ""
                elif ch.tag == "skipped":
                    status = "skip"
                    reason = ch.get("message") or ""
                    text = ch.text or ""
            for ch in tc:
                if ch.tag in ("system-out", "system-err") and ch.text:
                    text += "\n--- %s ---\n%s" % (ch.tag, ch.text)
            logfile = ""
            if text:
                logfile = os.path.join(logdir, re.sub(r"[^A-Za-z0-9_.-]+", "_", test) + ".log")
                with open(logfile, "w") as f:
                    f.write(text)
            rec = {"suite": suite, "test": test, "status": status, "reason": _clip(reason),
                   "duration_s": round(float(tc.get("time") or 0), 2), "log": logfile}
            out.write(json.dumps(rec) + "\n")


def cmd_finish(args):
    jsonl, out_json, suite, version, seconds = args[:5]
    meta = dict(kv.split("=", 1) for kv in args[5:])
    tests = {}
    if os.path.exists(jsonl):
        with open(jsonl) as f:
            for line in f:
                line = line.strip()
                if line:
                    rec = json.loads(line)
                    tests[rec["test"]] = {k: rec[k] for k in ("status", "reason", "duration_s", "log")}
    totals = {"pass": 0, "fail": 0, "skip": 0}
    for t in tests.values():
        totals[t["status"]] = totals.get(t["status"], 0) + 1
    doc = {"suite": suite, "version": version, "duration_s": round(float(seconds), 1),
           "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "totals": totals, "meta": meta, "tests": dict(sorted(tests.items()))}
    with open(out_json + ".tmp", "w") as f:
        json.dump(doc, f, indent=1, sort_keys=False)
        f.write("\n")
    os.replace(out_json + ".tmp", out_json)
    print("%s: %d passed, %d failed, %d skipped in %.0f s -> %s"
          % (suite, totals["pass"], totals["fail"], totals["skip"], float(seconds), out_json))


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    cmd, args = sys.argv[1], sys.argv[2:]
    {"add": cmd_add, "junit": cmd_junit, "finish": cmd_finish}[cmd](args)


if __name__ == "__main__":
    main()
