#!/usr/bin/env python3
"""What can be checked of deploy/Dockerfile without a container engine: every flag its CMD and the
Kubernetes manifests pass exists in the real server binary (--helpfull); ports, paths, user and drain
agree between the Dockerfile, the manifests and docs/deploy.md; the build stage's package list
extraction from tools/setup.sh works; runtime_deps.sh resolves the real binary's libraries."""
import json
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploy_testlib as lib  # noqa: E402

BINARY = lib.runfile("server/tessera")


def dockerfile():
    with open(lib.runfile("deploy/Dockerfile")) as f:
        text = f.read()
    # Join continuation lines, drop comments.
    text = re.sub(r"\\\n", " ", text)
    return [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]


def instruction(lines, name, stage="runtime"):
    """Instructions `name` in the given stage (the last FROM ... AS stage)."""
    out, current = [], None
    for l in lines:
        if l.upper().startswith("FROM "):
            m = re.search(r"\bAS\s+(\S+)", l, re.I)
            current = m.group(1) if m else None
            continue
        if current == stage and l.split()[0].upper() == name:
            out.append(l[len(name):].strip())
    return out


class DockerfileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lines = dockerfile()
        cls.flags, cls.help = lib.binary_flags(BINARY)
        (entry,) = instruction(cls.lines, "ENTRYPOINT")
        (cmd,) = instruction(cls.lines, "CMD")
        cls.entrypoint = json.loads(entry)
        cls.cmd = json.loads(cmd)
        cls.cmd_flags = lib.parse_flags(cls.cmd)

    def test_cmd_flags_exist_in_binary(self):
        self.assertEqual(len(self.entrypoint), 1, "flags belong in CMD so they can be overridden")
        for flag in self.cmd_flags:
            self.assertIn(flag, self.flags, f"Dockerfile CMD uses --{flag}, unknown to the binary")

    def test_manifest_flags_exist_in_binary(self):
        for overlay in lib.OVERLAYS:
            _, c = lib.tessera_container(lib.render(overlay))
            self.assertNotIn("command", c, "the image's ENTRYPOINT is the binary")
            for flag in lib.parse_flags(c["args"]):
                self.assertIn(flag, self.flags, f"{overlay} passes --{flag}, unknown to the binary")

    def test_binary_path(self):
        copies = instruction(self.lines, "COPY")
        (binary_copy,) = [c for c in copies if "/out/bin/tessera" in c]
        self.assertEqual(binary_copy.split()[-1], self.entrypoint[0])

    def test_ports_user_model_and_drain_match_manifests(self):
        expose = {int(p) for e in instruction(self.lines, "EXPOSE") for p in e.split()}
        grpc, http = int(self.cmd_flags["grpc_port"]), int(self.cmd_flags["http_port"])
        self.assertEqual(expose, {grpc, http})
        (health,) = instruction(self.lines, "HEALTHCHECK")
        url = re.search(r"http://127\.0\.0\.1:(\d+)(/\S*)", health)
        self.assertEqual(int(url.group(1)), http)
        (user,) = instruction(self.lines, "USER")
        uid = int(user.split(":")[0])
        self.assertNotEqual(uid, 0)
        for overlay in lib.OVERLAYS:
            with self.subTest(overlay=overlay):
                dep, c = lib.tessera_container(lib.render(overlay))
                flags = lib.parse_flags(c["args"])
                ports = {p["name"]: p["containerPort"] for p in c["ports"]}
                self.assertEqual(ports, {"grpc": grpc, "http": http})
                self.assertEqual(c["readinessProbe"]["httpGet"]["path"], url.group(2))
                self.assertEqual(dep["spec"]["template"]["spec"]["securityContext"]["runAsUser"], uid)
                self.assertEqual(flags["model"], self.cmd_flags["model"])
                self.assertEqual(flags["drain_grace_s"], self.cmd_flags["drain_grace_s"])
                (mount,) = [m for m in c["volumeMounts"] if m["name"] == "model"]
                self.assertEqual(mount["mountPath"], self.cmd_flags["model"])

    def test_setup_package_list_extraction(self):
        # The build stage installs tools/setup.sh's PACKAGES by evaluating this exact sed range.
        (run,) = [r for r in instruction(self.lines, "RUN", stage="build") if "PACKAGES=(" in r]
        setup = os.path.join(lib.workspace_dir(), "tools", "setup.sh")
        script = ('eval "$(sed -n "/^PACKAGES=(/,/^)/p" %s)"; printf "%%s\\n" "${PACKAGES[@]}"' % setup)
        out = subprocess.run(["bash", "-c", script], check=True, capture_output=True, text=True).stdout
        packages = out.split()
        for needed in ("bazel-bootstrap", "g++", "libgrpc++-dev", "prometheus-cpp-dev"):
            self.assertIn(needed, packages)
        self.assertFalse([p for p in packages if p.startswith("#")])
        # ... and then runs the script itself, which builds the binary the runtime stage copies.
        (build,) = [r for r in instruction(self.lines, "RUN", stage="build") if "./tools/setup.sh" in r]
        self.assertIn("bazel-bin/server/tessera /out/bin/tessera", build)
        self.assertTrue(os.access(setup, os.X_OK))

    def test_runtime_deps_of_real_binary(self):
        out = lib.tmpdir()
        p = subprocess.run([lib.runfile("deploy/docker/runtime_deps.sh"), BINARY, out],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(os.path.join(out, "runtime-packages.txt")) as f:
            packages = f.read().split()
        self.assertIn("libc6", packages)
        self.assertTrue(any(p.startswith("libgrpc++") for p in packages), packages)
        st = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Status}\n"] + packages,
                            capture_output=True, text=True)
        installed = {l.split()[0] for l in st.stdout.splitlines() if l.endswith("install ok installed")}
        self.assertEqual(set(packages) - installed, set())
        # Every library the loader resolves is covered: owned by a listed package or copied.
        ldd = subprocess.run(["ldd", BINARY], capture_output=True, text=True, check=True).stdout
        copied = set(os.listdir(os.path.join(out, "lib")))
        libs = [(n, p) for n, p in re.findall(r"^\s*(\S+) => (/\S+)", ldd, re.M)
                if not n.startswith("libcuda.so") and n not in copied]
        spellings = {p: {p, os.path.realpath(p), p.removeprefix("/usr"), "/usr" + p} for _, p in libs}
        query = sorted(set().union(*spellings.values()))
        owners = {}
        for line in subprocess.run(["dpkg-query", "-S"] + query, capture_output=True,
                                   text=True).stdout.splitlines():
            pkgs, path = line.split(": ", 1)
            owners[path] = {x.strip().split(":")[0] for x in pkgs.split(",")}
        for name, path in libs:
            owned_by = set().union(*(owners.get(s, set()) for s in spellings[path]))
            self.assertTrue(owned_by & set(packages),
                            f"{name} ({path}) is neither copied nor owned by a listed package")

    def test_paths_named_in_docs_and_manifests_exist(self):
        ws = lib.workspace_dir()
        sources = [os.path.join(ws, "docs", "deploy.md"), lib.runfile("deploy/Dockerfile")]
        for root, _, files in os.walk(lib.runfile("deploy")):
            if os.path.basename(root) == "tests":
                continue  # The tests name runfiles ("server/tessera"), not source paths.
            sources += [os.path.join(root, f) for f in files if f.endswith((".yaml", ".sh", ".py"))]
        with open(sources[0]) as f:
            doc = f.read()
        for overlay in lib.OVERLAYS:
            self.assertIn(f"deploy/k8s/overlays/{overlay}", doc)
        for path in sources:
            with open(path) as f:
                text = f.read()
            for ref in set(re.findall(r"(?<![\w/.-])((?:deploy|docs|tools|server)/[\w./-]*\w)", text)):
                self.assertTrue(os.path.exists(os.path.join(ws, ref)), f"{path} names {ref}, which is missing")


if __name__ == "__main__":
    unittest.main()
