#!/usr/bin/env python3
"""Checks the module graph of src/: which top-level modules refer to which (`crate::NAME`, and
`super::` from a module's own files does not cross modules), that the graph has no cycle, and the
import invariants ARCHITECTURE.md states. Exits 1 with the offending references otherwise.

Run from the repository root: `python3 scripts/check_layers.py [--graph]`.
"""
import pathlib
import re
import sys

SRC = pathlib.Path("src")
# Edges that still close a cycle and are to go (issue 12, the seams): each is left out of the
# cycle check so that no new cycle can land, and listed on every run until it is removed.
TOLERATED = {
}
# Crates only one module may use (ARCHITECTURE.md, "Invariants").
OWNERS = {
    "rocksdb": ["src/log/store.rs"],
    "iceberg": ["src/iceberg/"],
    "iceberg_catalog_sql": ["src/iceberg/"],
    "aws_sdk_s3": ["src/tier/"],
}


def module_of(path):
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".rs") if rel.parts else None


def strip_comments(text):
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def main():
    edges = {}
    failures = []
    for path in sorted(SRC.rglob("*.rs")):
        module = module_of(path)
        if module in ("main", "lib"):
            continue
        text = strip_comments(path.read_text())
        # Unit tests may reach anywhere; the layers are about the code that ships.
        text = re.split(r"#\[cfg\(test\)\]\s*mod tests\s*\{", text)[0]
        if path.name.endswith("_tests.rs") or path.name == "tests.rs":
            continue
        for target in set(re.findall(r"\bcrate::([a-z_]+)", text)):
            if target != module:
                edges.setdefault(module, {}).setdefault(target, []).append(str(path))
        for crate, owners in OWNERS.items():
            if re.search(rf"(?<![:\w]){crate}::", text) and not any(str(path).startswith(o) for o in owners):
                failures.append(f"{path} uses `{crate}`, which only {', '.join(owners)} may use")
    for (source, target), why in sorted(TOLERATED.items()):
        if target in edges.get(source, {}):
            print(f"tolerated, to remove: {source} -> {target}: {why}")
            del edges[source][target]
    if "--graph" in sys.argv:
        for module in sorted(edges):
            print(f"{module} -> {', '.join(sorted(edges[module]))}")
    # Depth-first search for cycles.
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(edges.get(node, {})):
            if state.get(target) == "open":
                cycle = stack[stack.index(target):] + [target]
                hops = []
                for a, b in zip(cycle, cycle[1:]):
                    hops.append(f"  {a} -> {b} (in {', '.join(sorted(set(edges[a][b])))})")
                failures.append("cycle " + " -> ".join(cycle) + ":\n" + "\n".join(hops))
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    if failures:
        print("\n".join(failures))
        return 1
    print(f"layers: {len(edges)} modules, no cycle, import invariants hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
