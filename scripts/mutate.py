#!/usr/bin/env python3
"""Reads and applies the single-line mutants of scripts/mutants.txt
(scripts/mutate.sh drives it; docs/reliability.md describes the campaign).

A mutant is a block:

    [name] what a developer could plausibly have got wrong
    file: lib/train/optim.c          a path or a glob, relative to the tree
    in: double optim_grad_norm(       optional: search from the first line holding this
    suite: check-mpi                  optional: also run this make target
    - return sqrt(s);                 text found in exactly one line...
    + return s;                       ...and what replaces it there

Mutants are matched by their text, not by line numbers, so that they survive
code moving around: the "-" text must occur in exactly one line of the files
the glob names (or, with "in:", in the first such line after the anchor), and
exactly once in that line. When the glob names no file any more, files of the
same base name anywhere under lib/ and examples/ are tried (a file moved to
another folder). Lines starting with '#' are comments.

usage: mutate.py list MUTANTS
       mutate.py check MUTANTS ROOT          does every mutant apply? (exit 1 if not)
       mutate.py apply MUTANTS ROOT NAME     applies one; prints "PATH:LINE: old -> new"
       mutate.py get MUTANTS NAME FIELD      a field: title, suite
"""
import glob
import os
import sys


def parse(path):
    mutants, cur = [], None
    with open(path, encoding="utf-8") as f:
        for no, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line.startswith("["):
                end = line.index("]")
                cur = {"name": line[1:end], "title": line[end + 1:].strip(), "line": no,
                       "in": None, "suite": "", "file": None, "old": None, "new": None}
                mutants.append(cur)
                continue
            if cur is None:
                raise SystemExit(f"{path}:{no}: text before the first [name]")
            if line.startswith("file:"):
                cur["file"] = line[5:].strip()
            elif line.startswith("in:"):
                cur["in"] = line[3:].strip()
            elif line.startswith("suite:"):
                cur["suite"] = line[6:].strip()
            elif line.startswith("- "):
                cur["old"] = line[2:]
            elif line.startswith("+ "):
                cur["new"] = line[2:]
            elif line == "+":
                cur["new"] = ""
            else:
                raise SystemExit(f"{path}:{no}: cannot read '{line}'")
    names = set()
    for m in mutants:
        for key in ("file", "old", "new"):
            if m[key] is None:
                raise SystemExit(f"{path}:{m['line']}: [{m['name']}] has no '{key}'")
        if m["name"] in names:
            raise SystemExit(f"{path}:{m['line']}: [{m['name']}] is listed twice")
        names.add(m["name"])
    return mutants


def candidates(root, pattern):
    files = sorted(glob.glob(os.path.join(root, pattern)))
    if files:
        return files
    base = os.path.basename(pattern)
    moved = []
    for top in ("lib", "examples"):
        moved += glob.glob(os.path.join(root, top, "**", base), recursive=True)
    return sorted(moved)


def locate(root, m):
    """(path, index of the line) of the mutant's text, or a reason it has none."""
    files = candidates(root, m["file"])
    if not files:
        return None, f"no file matches {m['file']}"
    hits = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        start = 0
        if m["in"]:
            start = next((i for i, l in enumerate(lines) if m["in"] in l), None)
            if start is None:
                continue
        for i in range(start, len(lines)):
            if m["old"] in lines[i]:
                hits.append((path, i, lines[i].count(m["old"])))
                if m["in"]:
                    break
    if not hits:
        where = f" after '{m['in']}'" if m["in"] else ""
        return None, f"'{m['old']}' is not in {m['file']}{where}"
    if len(hits) > 1:
        places = ", ".join(f"{os.path.relpath(p, root)}:{i + 1}" for p, i, _ in hits[:4])
        return None, f"'{m['old']}' is in {len(hits)} lines ({places}): add an 'in:' anchor"
    path, i, count = hits[0]
    if count != 1:
        return None, f"'{m['old']}' occurs {count} times in {os.path.relpath(path, root)}:{i + 1}"
    return (path, i), None


def apply(root, m):
    where, why = locate(root, m)
    if why:
        raise SystemExit(f"[{m['name']}] {why}")
    path, i = where
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    old = lines[i]
    lines[i] = old.replace(m["old"], m["new"])
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    print(f"{os.path.relpath(path, root)}:{i + 1}: {old.strip()}  ->  {lines[i].strip()}")


def main(argv):
    if len(argv) < 3:
        raise SystemExit(__doc__)
    cmd, mutants = argv[1], parse(argv[2])
    by_name = {m["name"]: m for m in mutants}
    if cmd == "list":
        for m in mutants:
            print(m["name"])
    elif cmd == "check":
        bad = 0
        for m in mutants:
            where, why = locate(argv[3], m)
            if why:
                bad += 1
                print(f"[{m['name']}] {why}")
        print(f"{len(mutants) - bad} of {len(mutants)} mutants apply")
        return 1 if bad else 0
    elif cmd == "apply":
        if argv[4] not in by_name:
            raise SystemExit(f"no mutant named {argv[4]}")
        apply(argv[3], by_name[argv[4]])
    elif cmd == "get":
        print(by_name[argv[3]][argv[4]])
    else:
        raise SystemExit(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
