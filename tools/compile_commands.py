#!/usr/bin/env python3
"""Writes compile_commands.json at the workspace root for clangd, from Bazel's action graph.

    python3 tools/compile_commands.py

bear cannot see inside Bazel's sandboxed actions, so this asks Bazel itself (`bazel aquery`) for the
exact compiler command of every C++ compile action; clangd runs them from the execution root.
"""
import json
import os
import subprocess
import sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.chdir(root)
subprocess.run(["bazel", "build", "//..."], check=True)
execroot = subprocess.run(["bazel", "info", "execution_root"], check=True, capture_output=True,
                          text=True).stdout.strip()
out = subprocess.run(
    ["bazel", "aquery", 'mnemonic("CppCompile", //...)', "--output=jsonproto",
     "--include_artifacts=false"],
    check=True, capture_output=True, text=True).stdout
entries = []
for a in json.loads(out).get("actions", []):
    args = a["arguments"]
    src = next((args[i + 1] for i, x in enumerate(args[:-1]) if x == "-c"), None)
    if src is not None:
        entries.append({"directory": execroot, "arguments": args, "file": src})
with open("compile_commands.json", "w") as f:
    json.dump(entries, f, indent=1)
print(f"wrote compile_commands.json with {len(entries)} entries", file=sys.stderr)
