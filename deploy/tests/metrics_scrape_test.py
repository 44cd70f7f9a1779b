#!/usr/bin/env python3
"""Every metric the alert/recording rules, the Grafana dashboard, the prometheus-adapter rules and the
endpoint picker read exists in a real scrape of the server's /metrics.

Starts //server:tessera on port 0 (its built-in tiny model on CPU), provokes a rejected request so the labelled rejection counter has a series, scrapes
/metrics on loopback and compares sample names exactly (histograms as _bucket/_sum/_count, counters
with _total). Then SIGTERMs the server with the manifests' --drain_grace_s and expects exit 0."""
import json
import os
import re
import signal
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploy_testlib as lib  # noqa: E402

BINARY = lib.runfile("server/tessera")
# The endpoint picker's default metric names (gateway-api-inference-extension v1.0), which the
# gateway overlay relies on through --emit_vllm_metrics.
EPP_METRICS = ["vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc"]
# Series Prometheus makes itself rather than scraping them.
SYNTHETIC = {"up"}

PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                   "or", "unless", "offset", "inf", "nan"}


def promql_metrics(expr):
    """Metric names an expression selects: identifiers outside strings, label matchers, ranges and
    grouping clauses that are not function calls or keywords."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)            # strings
    e = re.sub(r"\{[^}]*\}", " ", e)                         # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)                        # ranges / subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(\s*\()?", e):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in PROMQL_KEYWORDS:
            continue
        names.add(name)
    return names


def rule_queries():
    with open(lib.runfile("deploy/monitoring/prometheus/tessera-rules.yaml")) as f:
        groups = yaml.safe_load(f)["groups"]
    recorded = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    exprs = [r["expr"] for g in groups for r in g["rules"]]
    return recorded, exprs


def dashboard_queries():
    with open(lib.runfile("deploy/k8s/components/monitoring/tessera-dashboard.json")) as f:
        dash = json.load(f)
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((.*),\s*\w+\)", q)
            exprs.append(m.group(1) if m else q)
    return exprs


def adapter_queries():
    with open(lib.runfile("deploy/monitoring/prometheus-adapter/values.yaml")) as f:
        return [r["seriesQuery"] for r in yaml.safe_load(f)["rules"]["custom"]]


def sample_names(text):
    names = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            names.add(re.match(r"[^{\s]+", line).group(0))
    return names


def manifest_drain_grace_s():
    _, c = lib.tessera_container(lib.render("monitored"))
    return float(lib.parse_flags(c["args"])["drain_grace_s"])


class ServerUnderTest:
    def __init__(self, extra):
        flags, self.help = lib.binary_flags(BINARY)
        self.port_file = os.path.join(lib.tmpdir(), "ports.json")
        args = [BINARY, "--grpc_port=0", "--http_port=0", "--port_file=" + self.port_file,
                "--emit_vllm_metrics"] + extra
        # The built-in tiny model on CPU (//models:default, random weights, real tokenizer): exports
        # every family like a real checkpoint. Passed explicitly when it is among the runfiles.
        default_model = lib.runfile("models/default")
        if os.path.exists(os.path.join(default_model, "config.json")):
            args += ["--model=" + default_model]
        if "device" in flags:
            args += ["--device=cpu"]
        self.log = open(os.path.join(lib.tmpdir(), "server.log"), "w+")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        self.ports = None
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("server exited %d:\n%s" % (self.proc.returncode, self.output()))
            try:
                with open(self.port_file) as f:
                    self.ports = json.load(f)
                break
            except (OSError, ValueError):
                time.sleep(0.05)
        assert self.ports and self.ports.get("http"), f"no http port in {self.ports}:\n{self.output()}"
        self.base = "http://127.0.0.1:%d" % self.ports["http"]

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-4000:]

    def get(self, path, data=None):
        req = urllib.request.Request(self.base + path, data=data,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except urllib.error.URLError:
            return 0, ""  # Nothing listening (e.g. the server already exited).

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.get("/ready")[0] == 200:
                return
            time.sleep(0.1)
        raise AssertionError("/ready never answered 200:\n" + self.output())

    def stop(self, timeout):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode


class MetricsScrapeTest(unittest.TestCase):
    def test_queries_name_exported_metrics(self):
        drain = manifest_drain_grace_s()
        server = ServerUnderTest(["--drain_grace_s=%g" % drain])
        try:
            server.wait_ready()
            # A malformed request: rejected at the edge (invalid_argument), giving
            # tessera:request_rejected_total its first series.
            status, _ = server.get("/v1/completions", data=b"{not json")
            self.assertEqual(status, 400)
            status, text = server.get("/metrics")
            self.assertEqual(status, 200)
            exported = sample_names(text)

            recorded, rule_exprs = rule_queries()
            wanted = {}
            for source, exprs in (("rules", rule_exprs), ("dashboard", dashboard_queries()),
                                  ("prometheus-adapter", adapter_queries())):
                for e in exprs:
                    for name in promql_metrics(e):
                        wanted.setdefault(name, set()).add(source)
            for name in EPP_METRICS:
                wanted.setdefault(name, set()).add("endpoint picker")
            # The extraction itself must see the metrics we know are there.
            for must in ("tessera:time_to_first_token_seconds_bucket", "tessera:kv_cache_usage_perc",
                         "tessera:num_requests_waiting", "tessera:request_success_total"):
                self.assertIn(must, wanted)
            missing = sorted("%s (%s)" % (n, ", ".join(sorted(s))) for n, s in wanted.items()
                             if n not in exported and n not in recorded and n not in SYNTHETIC)
            self.assertEqual(missing, [], "not in the scrape:\n" + "\n".join(sorted(exported)))
            for name in recorded:
                self.assertRegex(name, r"^[a-z_]+:tessera_\w+:\w+$")
        finally:
            start = time.time()
            code = server.stop(timeout=drain + 10)
            elapsed = time.time() - start
        self.assertEqual(code, 0, "SIGTERM with the manifests' drain grace:\n" + server.output())
        self.assertLess(elapsed, drain)  # Nothing in flight: no reason to wait out the grace.

    def test_promql_metrics_extraction(self):
        self.assertEqual(
            promql_metrics('histogram_quantile(0.99, sum by (le, pod) (rate(a:b_bucket{x="y:z"}[5m])))'),
            {"a:b_bucket"})
        self.assertEqual(promql_metrics("sum(rate(x_total[$__rate_interval])) / sum(y) > 0.5"),
                         {"x_total", "y"})
        self.assertEqual(promql_metrics("up{job=\"j\"} == 0 and on (pod) z offset 5m"), {"up", "z"})


if __name__ == "__main__":
    unittest.main()
