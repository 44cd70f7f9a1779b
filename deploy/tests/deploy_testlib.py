"""Shared helpers of the deploy/ tests: locate files, render the kustomize overlays, read flags.

Tests run as Bazel sh_tests; deploy/ files come in as runfiles (data), the server binary as
//server:tessera. docs/deploy.md (outside any Bazel package) and tools/setup.sh are read from the
source tree, found through the real path of this file (as tests/testdata.cc does).
"""
import copy
import os
import re
import shutil
import subprocess
import tempfile

import yaml

OVERLAYS = ["single-node", "monitored", "gateway"]


def runfiles_root():
    srcdir = os.environ.get("TEST_SRCDIR")
    if srcdir:
        return os.path.join(srcdir, "tessera")
    return workspace_dir()


def runfile(path):
    return os.path.join(runfiles_root(), path)


def workspace_dir():
    env = os.environ.get("TESSERA_WORKSPACE_DIR")
    if env:
        return env
    # .../deploy/tests/deploy_testlib.py in the source tree.
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))


def tmpdir():
    return tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))


_K8S_COPY = None


def k8s_copy():
    """deploy/k8s copied with symlinks resolved: kustomize refuses files whose real path lies
    outside the kustomization root, and runfiles are symlinks."""
    global _K8S_COPY
    if _K8S_COPY is None:
        _K8S_COPY = os.path.join(tmpdir(), "k8s")
        shutil.copytree(runfile("deploy/k8s"), _K8S_COPY, symlinks=False)
    return _K8S_COPY


_RENDERED = {}


def render(overlay):
    """`kubectl kustomize` of deploy/k8s/overlays/<overlay>, offline; returns the documents."""
    if overlay not in _RENDERED:
        _RENDERED[overlay] = _render(overlay)
    return copy.deepcopy(_RENDERED[overlay])


def _render(overlay):
    out = subprocess.run(["kubectl", "kustomize", os.path.join(k8s_copy(), "overlays", overlay)],
                         check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def find(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return found


def one(docs, kind, name=None):
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def tessera_container(docs):
    dep = one(docs, "Deployment", "tessera")
    (c,) = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "tessera"]
    return dep, c


def parse_flags(args):
    """['--a=1', '--b', ...] -> {'a': '1', 'b': None}; every argument must be a --flag."""
    flags = {}
    for a in args:
        m = re.fullmatch(r"--([A-Za-z0-9_]+)(?:=(.*))?", a)
        assert m, f"argument {a!r} is not of the form --flag[=value]"
        flags[m.group(1)] = m.group(2)
    return flags


def binary_flags(binary):
    """Flag names the real binary accepts, from its --helpfull output."""
    p = subprocess.run([binary, "--helpfull"], capture_output=True, text=True, timeout=60)
    text = p.stdout + p.stderr
    names = set(re.findall(r"^\s+--([A-Za-z0-9_]+)\s", text, re.M))
    names |= set(re.findall(r"^\s+-{1,2}([A-Za-z0-9_]+)\s", text, re.M))
    assert names, f"no flags found in --helpfull output:\n{text[:2000]}"
    return names, text
