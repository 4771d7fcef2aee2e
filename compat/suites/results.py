#!/usr/bin/env python3
"""Result helpers for compat/suites/run_*.sh.

  results.py add JSONL SUITE TEST STATUS SECONDS LOGFILE [PARSER]
      Appends one test outcome to JSONL. STATUS is pass, fail, skip or timeout (a timeout is
      recorded as fail with reason "timeout"). The short reason is extracted from LOGFILE with
      the suite's parser (rdkafka, librdkafka, gotest, generic).
  results.py lrk-list TEST_C [SCENARIO]
      Prints the test numbers of librdkafka's tests/test.c (tests[] table, manual 8xxx tests
      excluded) that have a sub-test in SCENARIO (default: "default"), one per line, with the
      count of sub-tests that need a broker: "NNNN COUNT".
  results.py lrk-add JSONL SUITE TEST_C NUM SCENARIO LOCAL LOGFILE RC SECONDS [QUICK]
      Records every sub-test of test number NUM (e.g. 0045_subscribe_update_mock) from one
      `test-runner` run: its summary table gives PASSED/FAILED/SKIPPED and the failure string;
      sub-tests filtered out silently get skip with the reason (local, scenario); RC 124/137
      (killed by `timeout`) marks unfinished sub-tests as failed with "timeout". With QUICK=1
      (default) a "passed" sub-test that ran for under 2 ms is recorded as skip: quick mode
      silently skips every SUB_TEST() that is not SUB_TEST_QUICK().
  results.py lrk-quick-skipped JSONL TEST_C SCENARIO
      Prints "NNNN COUNT" for the test numbers whose latest record in SCENARIO is a quick-mode
      skip (to run them again without -Q).
  results.py junit JSONL SUITE JUNIT_XML LOGDIR
      Converts a pytest JUnit XML file into JSONL records (kafka-python).
  results.py summary JSONL [RUNNER_RC]
      Prints "N passed, M failed, K skipped" over the latest record of each test (a full-mode
      retry replaces librdkafka's quick-mode record) and exits 1 if a test failed or RUNNER_RC,
      when given, is neither 0 nor 1 (pytest's "all passed" and "some failed").
  results.py finish JSONL OUT_JSON SUITE VERSION SECONDS [KEY=VALUE...]
      Writes compat/results/<suite>.json:
        {"suite", "version", "duration_s", "generated", "totals": {pass, fail, skip},
         "meta": {...}, "tests": {name: {"status", "reason", "duration_s", "log"}}}
      With RESULTS_MERGE=1 the tests of JSONL replace theirs in the existing OUT_JSON, whose
      other tests, duration, time and settings stay, and meta.rerun records the rerun.
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


def reason_gotest(log):
    """go test -v output: the test's own messages ("    file_test.go:NN: text"), the failing or
    skipping ones first, else the last line."""
    lines = log.splitlines()
    m = re.search(r"^panic: (test timed out after \S+)", log, re.M)
    if m:
        return _clip(m.group(1) + " (go test -timeout)")
    msgs = []
    for i, l in enumerate(lines):
        if re.match(r"^\s+\S+_test\.go:\d+: \S", l) and "FAILED TESTING -- NOT DELETING" not in l:
            msgs.append(l.strip())
        elif re.match(r"^\s+(Error|Messages):\s", l):        # testify's assertion report
            text = l.split(":", 1)[1].strip()
            if i + 1 < len(lines) and re.match(r"^\s{8,}\S", lines[i + 1]) and ":" not in lines[i + 1].strip()[:12]:
                text += " " + lines[i + 1].strip()
            msgs.append(text)
    if msgs:
        return _clip(" / ".join(dict.fromkeys(msgs))[:REASON_MAX])
    return reason_generic(log)


def parse_testc(path):
    """[(name, flags_expr, scenario)] of librdkafka's tests[] table."""
    text = _read(path)
    start = text.index("struct test tests[] = {")
    end = text.index("{NULL}", start)
    block = text[start:end]
    out = []
    for chunk in block.split("_TEST(")[1:]:
        m = re.match(r"\s*(\w+)\s*,\s*([^,)]*)", chunk)
        if not m:
            continue
        name, flags = m.group(1), " ".join(m.group(2).split())
        sc = re.search(r'\.scenario\s*=\s*"([^"]*)"', chunk)
        out.append((name, flags, sc.group(1) if sc else "default"))
    return out


def _in_scenario(entry_scenario, scenario):
    return scenario in entry_scenario.split(",")


def cmd_lrk_list(args):
    testc = args[0]
    scenario = args[1] if len(args) > 1 else "default"
    counts = {}
    for name, flags, sc in parse_testc(testc):
        num = name.split("_", 1)[0]
        if num.startswith("8") or "TEST_F_MANUAL" in flags or not _in_scenario(sc, scenario):
            continue
        counts.setdefault(num, 0)
        if "TEST_F_LOCAL" not in flags:
            counts[num] += 1
    for num in sorted(counts):
        print(num, counts[num])


ANSI = re.compile(r"\x1b\[[0-9;]*m")
ROW = re.compile(r"^\|\s*(\S+)\s*\|\s*(PASSED|FAILED|SKIPPED|RUNNING|DNS)\s*\|\s*([0-9.]+)s\s*\|\s*(.*)$")


def _first_failure_line(log, name):
    """Where and why the test failed: the first '### Test "NAME..." failed at ...' block of the
    log, else the first failure-looking line that the test printed."""
    lines = [ANSI.sub("", l) for l in log.splitlines()]
    for i, line in enumerate(lines):
        m = re.match(r'^### Test "(%s[^"]*)" failed at (\S+?):? at .*###' % re.escape(name), line)
        if m:
            why = ""
            for nxt in lines[i + 1: i + 4]:
                if nxt.strip() and not nxt.startswith("["):
                    why = nxt.strip()
                    break
            return "%s failed at %s %s" % (m.group(1), m.group(2), why)
    pat = re.compile(r"^\[%s\b" % re.escape(name))
    for line in lines:
        if re.search(r"Assertion|FAIL|failed|timed out|Timed out", line) and pat.search(line) \
                and "PASSED" not in line and "TEST FAILURE" not in line:
            return line.strip()
    return ""


def cmd_lrk_quick_skipped(args):
    """Test numbers (with their broker sub-test count) having a sub-test that quick mode
    reduced to nothing, per the latest records of JSONL in SCENARIO."""
    jsonl, testc, scenario = args
    last = {}
    with open(jsonl) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                if r.get("scenario") == scenario:
                    last[r["test"]] = r
    nums = sorted({n.split("_", 1)[0] for n, r in last.items()
                   if r["status"] == "skip" and "quick mode" in r["reason"].lower()})
    counts = {}
    for name, flags, sc in parse_testc(testc):
        num = name.split("_", 1)[0]
        if num in nums and _in_scenario(sc, scenario) and "TEST_F_LOCAL" not in flags:
            counts[num] = counts.get(num, 0) + 1
    for num in nums:
        print(num, counts.get(num, 0))


def cmd_lrk_add(args):
    jsonl, suite, testc, num, scenario, local, logfile, rc, seconds = args[:9]
    quick = (args[9] if len(args) > 9 else "1") == "1"
    rc = int(rc)
    local = local == "1"
    log = _read(logfile)
    rows = {}
    for line in log.splitlines():
        m = ROW.match(ANSI.sub("", line).strip())
        if m:
            rows[m.group(1)] = (m.group(2), float(m.group(3)), m.group(4).strip())
    run_ms = {m.group(1): float(m.group(2)) for m in
              re.finditer(r"\] (\S+): duration ([0-9.]+)ms", ANSI.sub("", log))}
    passed_lines = set(re.findall(r"Test (\S+) PASSED", ANSI.sub("", log)))
    timed_out = rc in (124, 137)
    crashed = not rows and not timed_out and rc != -1   # -1: not run (local-only number)
    entries = [e for e in parse_testc(testc) if e[0].split("_", 1)[0] == num
               and "TEST_F_MANUAL" not in e[1]]
    with open(jsonl, "a") as out:
        for name, flags, sc in entries:
            if not _in_scenario(sc, scenario):
                continue
            is_local = "TEST_F_LOCAL" in flags
            dur = 0.0
            if name in rows:
                state, dur, failstr = rows[name]
                if state == "PASSED":
                    status, reason = "pass", ""
                    ms = run_ms.get(name)
                    if quick and ms is not None and ms < 2.0:
                        status = "skip"
                        reason = ("quick mode (-Q): the test ran none of its sub-tests (%.3f ms); "
                                  "run with LIBRDKAFKA_QUICK=0" % ms)
                elif state == "FAILED":
                    status = "fail"
                    reason = failstr or _first_failure_line(log, name)
                elif state == "SKIPPED":
                    status, reason = "skip", failstr or "skipped"
                    if "negative test flags" in reason and is_local:
                        reason = "local test (mock cluster or unit test, no broker): run with LIBRDKAFKA_LOCAL=1"
                    elif "negative test flags" in reason and "SOCKEM" in flags:
                        reason = "needs socket emulation (sockem), excluded by -E"
                    elif "negative test flags" in reason and "KNOWN_ISSUE" in flags:
                        reason = "marked a known issue in librdkafka; the test-runner excludes those by default"
                else:
                    status = "fail"
                    reason = "still %s when the runner ended" % state.lower()
            elif is_local and not local:
                status, reason = "skip", "local test (mock cluster or unit test, no broker): run with LIBRDKAFKA_LOCAL=1"
            elif "SOCKEM" in flags:
                status, reason = "skip", "needs socket emulation (sockem), excluded by -E"
            elif "KNOWN_ISSUE" in flags and "KNOWN_ISSUE_" not in flags:
                status, reason = "skip", "marked a known issue in librdkafka; the test-runner excludes those by default"
            elif timed_out:
                if name in passed_lines:
                    status, reason = "pass", ""
                else:
                    status = "fail"
                    detail = _first_failure_line(log, name)
                    reason = detail or ("timeout: no result after %d s, test-runner killed (exit %d)"
                                        % (int(float(seconds)), rc))
            elif crashed:
                status = "fail"
                reason = "test-runner exited with status %d and no summary" % rc
                detail = _first_failure_line(log, name)
                if detail:
                    reason += "; " + detail
            else:
                status, reason = "skip", "filtered out by the test-runner (not run)"
            rec = {"suite": suite, "test": name, "status": status, "reason": _clip(reason),
                   "duration_s": round(dur, 2), "log": logfile, "scenario": scenario}
            out.write(json.dumps(rec) + "\n")


PARSERS = {"rdkafka": reason_rdkafka, "librdkafka": reason_librdkafka, "generic": reason_generic,
           "gotest": reason_gotest}


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
            # pytest node id: test/integration/test_x.py[::Class]::name
            parts = cls.split(".") if cls else []
            mod = max([i for i, p in enumerate(parts) if p.startswith("test")] or [-1])
            while mod >= 0 and parts[mod][:1].isupper():
                mod -= 1
            if mod >= 0:
                test = "::".join(["/".join(parts[: mod + 1]) + ".py"] + parts[mod + 1:] + [name])
            else:
                test = name
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
    generated = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if os.environ.get("RESULTS_MERGE") == "1" and os.path.exists(out_json):
        # A rerun of some tests: they replace their entries in the last full run's file, whose
        # duration, time and settings stay; meta.rerun says what was rerun, when and how.
        with open(out_json) as f:
            base = json.load(f)
        rerun = ", ".join(sorted(tests)) or "nothing"
        settings = " ".join("%s=%s" % kv for kv in sorted(meta.items()))
        base_meta = base.get("meta", {})
        note = "%s rerun at %s (%s); every other test is from the run at %s" % (
            rerun, generated, settings, base.get("generated"))
        if base_meta.get("rerun"):
            note = base_meta["rerun"] + "; then " + note
        merged = dict(base.get("tests", {}))
        merged.update(tests)
        tests = merged
        meta = dict(base_meta, rerun=note)
        seconds = base.get("duration_s", seconds)
        generated = base.get("generated", generated)
    totals = {"pass": 0, "fail": 0, "skip": 0}
    for t in tests.values():
        totals[t["status"]] = totals.get(t["status"], 0) + 1
    doc = {"suite": suite, "version": version, "duration_s": round(float(seconds), 1),
           "generated": generated,
           "totals": totals, "meta": meta, "tests": dict(sorted(tests.items()))}
    with open(out_json + ".tmp", "w") as f:
        json.dump(doc, f, indent=1, sort_keys=False)
        f.write("\n")
    os.replace(out_json + ".tmp", out_json)
    print("%s: %d passed, %d failed, %d skipped in %.0f s -> %s"
          % (suite, totals["pass"], totals["fail"], totals["skip"], float(seconds), out_json))


def cmd_summary(args):
    jsonl = args[0]
    last = {}
    with open(jsonl) as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                last[rec["test"]] = rec["status"]
    counts = {"pass": 0, "fail": 0, "skip": 0}
    for status in last.values():
        counts[status] += 1
    print("%d passed, %d failed, %d skipped" % (counts["pass"], counts["fail"], counts["skip"]))
    runner_failed = len(args) > 1 and int(args[1]) not in (0, 1)
    sys.exit(1 if counts["fail"] or runner_failed else 0)


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    cmd, args = sys.argv[1], sys.argv[2:]
    {"add": cmd_add, "junit": cmd_junit, "finish": cmd_finish, "summary": cmd_summary,
     "lrk-list": cmd_lrk_list, "lrk-add": cmd_lrk_add,
     "lrk-quick-skipped": cmd_lrk_quick_skipped}[cmd](args)


if __name__ == "__main__":
    main()
