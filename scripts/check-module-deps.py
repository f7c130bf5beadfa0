#!/usr/bin/env python3
"""Module dependencies of the host library (host/src), and a check that they form no cycle.

A top-level module (`config`, `pipeline`, `http.rs`, ...) depends on another when its code,
outside `#[cfg(test)]` items and outside comments, names `crate::<other>` (also in a grouped
`use crate::{a, b::c}`). Prints one line per module, `module -> what it imports`, lowest layer
first; exits 1 and prints each cycle with the lines that make it when there is one. The binary
(host/src/bin, a crate of its own that uses the library as `rtscore::`) is on top of it all and
not part of the graph.

    python3 scripts/check-module-deps.py
"""

import collections
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "host", "src")

# Entries of host/src that are not modules of the library.
NOT_MODULES = {"lib.rs", "main.rs", "bin"}


def strip(src):
    """`src` without comments, and with string and char literals emptied (so a brace or a
    `crate::` inside them counts for nothing). Newlines are kept, so line numbers hold."""
    out = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    out.append("\n" if src[i] == "\n" else "")
                    i += 1
        elif re.match(r'b?r#*"', src[i:i + 40]) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            m = re.match(r'b?r(#*)"', src[i:])
            end = src.find('"' + m.group(1), i + m.end())
            end = n if end < 0 else end + 1 + len(m.group(1))
            out.append('""' + "\n" * src.count("\n", i, end))
            i = end
        elif c == '"' or (c == "b" and src.startswith('b"', i) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_"))):
            j = i + (2 if c == "b" else 1)
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append('""' + "\n" * src.count("\n", i, j))
            i = j + 1
        elif c == "'":
            # A char literal ('x', '\n', '\u{1F600}') or a lifetime ('a).
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", src[i:])
            if m:
                out.append("' '")
                i += m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def drop_test_items(code):
    """`code` (already stripped) without the items under `#[cfg(test)]`: the attribute and the
    item after it, up to its `;` or the end of its `{ ... }` block."""
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]", code):
        if m.start() < i:
            continue
        out.append(code[i:m.start()])
        j, depth = m.end(), 0
        while j < len(code):
            ch = code[j]
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    j += 1
                    break
            elif ch == ";" and depth == 0:
                j += 1
                break
            j += 1
        out.append("\n" * code.count("\n", m.start(), j))
        i = j
    out.append(code[i:])
    return "".join(out)


def modules():
    names = {}
    for entry in sorted(os.listdir(ROOT)):
        path = os.path.join(ROOT, entry)
        if entry in NOT_MODULES:
            continue
        if entry.endswith(".rs"):
            names.setdefault(entry[:-3], []).append(path)
        elif os.path.isdir(path):
            names.setdefault(entry, []).extend(
                os.path.join(d, f) for d, _, fs in sorted(os.walk(path)) for f in sorted(fs) if f.endswith(".rs")
            )
    return names


def imported(code, mods):
    """(top-level module, line number) of every `crate::` path in `code`."""
    for m in re.finditer(r"\bcrate\s*::\s*(\{|\w+)", code):
        line = code.count("\n", 0, m.start()) + 1
        if m.group(1) != "{":
            if m.group(1) in mods:
                yield m.group(1), line
            continue
        # A grouped import: the first segment of each top-level entry in the braces.
        depth, j, start = 1, m.end(), m.end()
        entries = []
        while j < len(code) and depth:
            if code[j] == "{":
                depth += 1
            elif code[j] == "}":
                depth -= 1
            elif code[j] == "," and depth == 1:
                entries.append(code[start:j])
                start = j + 1
            j += 1
        entries.append(code[start:j - 1])
        for e in entries:
            head = re.match(r"\s*(\w+)", e)
            if head and head.group(1) in mods:
                yield head.group(1), line


def graph():
    mods = modules()
    deps = {m: collections.defaultdict(list) for m in mods}
    for m, files in mods.items():
        for f in files:
            with open(f, encoding="utf-8") as fh:
                code = drop_test_items(strip(fh.read()))
            for target, line in imported(code, mods):
                if target != m:
                    deps[m][target].append(f"{os.path.relpath(f, os.path.join(ROOT, '..', '..'))}:{line}")
    return deps


def cycles(deps):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(deps[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(deps):
        if v not in index:
            visit(v)
    return found


def one_cycle(deps, comp):
    """A shortest cycle through the first module of `comp`, as a list of modules."""
    start, inside = comp[0], set(comp)
    prev, queue = {start: None}, collections.deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(deps[v]):
            if w not in inside:
                continue
            if w == start:
                path = [v]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return path[::-1] + [start]
            if w not in prev:
                prev[w] = v
                queue.append(w)
    return comp


def layers(deps):
    """Modules ordered lowest first: a module comes after everything it imports (ties by name);
    modules in a cycle come last."""
    order, done = [], set()
    remaining = set(deps)
    while remaining:
        ready = sorted(m for m in remaining if all(d in done for d in deps[m]))
        if not ready:
            return order + sorted(remaining)
        order += ready
        done |= set(ready)
        remaining -= set(ready)
    return order


def main():
    deps = graph()
    width = max(map(len, deps))
    for m in layers(deps):
        print(f"{m:<{width}} -> {' '.join(sorted(deps[m]))}")
    found = cycles(deps)
    if not found:
        print(f"no cycle among {len(deps)} modules")
        return 0
    for comp in found:
        path = one_cycle(deps, comp)
        print(f"\ncycle among {', '.join(comp)}:\n  {' -> '.join(path)}", file=sys.stderr)
        for a, b in zip(path, path[1:]):
            sites = deps[a][b]
            print(f"  {a} -> {b}: {', '.join(sites[:3])}{' ...' if len(sites) > 3 else ''}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
