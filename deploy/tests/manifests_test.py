#!/usr/bin/env python3
"""Renders every kustomize overlay offline and checks the fields that make the deployment work:
probes, ports, grace period against the drain, GPU requests, selectors that actually select, the
monitoring objects, the HPA <-> prometheus-adapter names, the InferencePool and its picker."""
import json
import os
import subprocess
import sys
import unittest

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploy_testlib as lib  # noqa: E402

# A 24 GB checkpoint read at a pessimistic 20 MB/s (cold network storage) is 20 minutes; the
# startup probe must allow at least that before the kubelet restarts a loading replica.
CHECKPOINT_BYTES = 24e9
SLOW_READ_BYTES_PER_S = 20e6
# Seconds between SIGTERM's arrival (after preStop) and SIGKILL that the process needs beyond the
# drain itself to close listeners and exit.
EXIT_MARGIN_S = 5


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def port_by_name(container, name):
    (p,) = [p for p in container["ports"] if p["name"] == name]
    return p["containerPort"]


class OverlayTest(unittest.TestCase):
    def test_all_overlays_render(self):
        for overlay in lib.OVERLAYS:
            with self.subTest(overlay=overlay):
                docs = lib.render(overlay)
                for d in docs:
                    if d["kind"] != "Namespace":
                        self.assertEqual(d["metadata"].get("namespace"), "tessera", d["metadata"]["name"])
                lib.tessera_container(docs)

    def test_server_container(self):
        for overlay in lib.OVERLAYS:
            with self.subTest(overlay=overlay):
                docs = lib.render(overlay)
                dep, c = lib.tessera_container(docs)
                spec = dep["spec"]["template"]["spec"]
                flags = lib.parse_flags(c["args"])
                grpc_port = port_by_name(c, "grpc")
                http_port = port_by_name(c, "http")
                self.assertEqual(int(flags["grpc_port"]), grpc_port)
                self.assertEqual(int(flags["http_port"]), http_port)
                self.assertEqual(flags["device"], "cuda")

                # GPU: requested and limited (extended resources need both equal).
                res = c["resources"]
                self.assertEqual(res["requests"]["nvidia.com/gpu"], 1)
                self.assertEqual(res["limits"]["nvidia.com/gpu"], 1)

                # Probes: startup on the gRPC health service, readiness /ready, liveness /health.
                startup = c["startupProbe"]
                self.assertEqual(startup["grpc"]["port"], grpc_port)
                self.assertGreaterEqual(startup["periodSeconds"] * startup["failureThreshold"],
                                        CHECKPOINT_BYTES / SLOW_READ_BYTES_PER_S)
                ready = c["readinessProbe"]["httpGet"]
                self.assertEqual(ready["path"], "/ready")
                self.assertIn(ready["port"], ("http", http_port))
                live = c["livenessProbe"]["httpGet"]
                self.assertEqual(live["path"], "/health")
                self.assertIn(live["port"], ("http", http_port))

                # Drain: the grace period covers preStop + --drain_grace_s + exit.
                pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
                self.assertEqual(pre_stop[:1], ["/bin/sleep"])
                pre_stop_s = float(pre_stop[1])
                drain_s = float(flags["drain_grace_s"])
                self.assertGreaterEqual(spec["terminationGracePeriodSeconds"],
                                        pre_stop_s + drain_s + EXIT_MARGIN_S)

                # Model: mounted read-only where --model points.
                (mount,) = [m for m in c["volumeMounts"] if m["name"] == "model"]
                self.assertEqual(mount["mountPath"], flags["model"])
                self.assertTrue(mount["readOnly"])
                (vol,) = [v for v in spec["volumes"] if v["name"] == "model"]
                if "persistentVolumeClaim" in vol:
                    self.assertTrue(vol["persistentVolumeClaim"]["readOnly"])
                else:
                    self.assertEqual(vol["hostPath"]["type"], "Directory")

                # Non-root, read-only root filesystem.
                self.assertTrue(spec["securityContext"]["runAsNonRoot"])
                self.assertNotEqual(spec["securityContext"]["runAsUser"], 0)
                self.assertTrue(c["securityContext"]["readOnlyRootFilesystem"])

    def test_services_pdb_select_the_pods(self):
        for overlay in lib.OVERLAYS:
            with self.subTest(overlay=overlay):
                docs = lib.render(overlay)
                dep, c = lib.tessera_container(docs)
                pod_labels = dep["spec"]["template"]["metadata"]["labels"]
                self.assertTrue(selects(dep["spec"]["selector"]["matchLabels"], pod_labels))
                want = {"tessera-grpc": "grpc", "tessera-http": "http", "tessera-metrics": "http"}
                for name, target in want.items():
                    svc = lib.one(docs, "Service", name)
                    self.assertTrue(selects(svc["spec"]["selector"], pod_labels), name)
                    self.assertEqual([p["targetPort"] for p in svc["spec"]["ports"]], [target])
                self.assertEqual(lib.one(docs, "Service", "tessera-metrics")["spec"]["clusterIP"], "None")
                pdb = lib.one(docs, "PodDisruptionBudget", "tessera")
                self.assertTrue(selects(pdb["spec"]["selector"]["matchLabels"], pod_labels))
                replicas = dep["spec"].get("replicas")
                if replicas is not None and "maxUnavailable" in pdb["spec"]:
                    self.assertLessEqual(pdb["spec"]["maxUnavailable"], max(replicas - 1, 1))

    def test_example_claim_is_the_one_mounted(self):
        with open(lib.runfile("deploy/k8s/examples/model-pvc.yaml")) as f:
            pv, pvc = yaml.safe_load_all(f)
        dep, _ = lib.tessera_container(lib.render("monitored"))
        (vol,) = [v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "model"]
        self.assertEqual(pvc["metadata"]["name"], vol["persistentVolumeClaim"]["claimName"])
        self.assertEqual(pvc["metadata"]["namespace"], dep["metadata"]["namespace"])
        self.assertEqual(pvc["spec"]["accessModes"], ["ReadOnlyMany"])
        self.assertEqual(pvc["spec"]["volumeName"], pv["metadata"]["name"])
        self.assertEqual(pv["spec"]["claimRef"]["name"], pvc["metadata"]["name"])
        self.assertTrue(pv["spec"]["nfs"]["readOnly"])

    def test_single_node_uses_host_path(self):
        docs = lib.render("single-node")
        dep, _ = lib.tessera_container(docs)
        self.assertEqual(dep["spec"]["replicas"], 1)
        self.assertIn("tessera.dev/model-gemma-4", dep["spec"]["template"]["spec"]["nodeSelector"])
        self.assertFalse(lib.find(docs, "ServiceMonitor"))
        self.assertFalse(lib.find(docs, "HorizontalPodAutoscaler"))

    def test_monitoring_objects(self):
        for overlay in ("monitored", "gateway"):
            with self.subTest(overlay=overlay):
                docs = lib.render(overlay)
                sm = lib.one(docs, "ServiceMonitor", "tessera")
                svc = lib.one(docs, "Service", "tessera-metrics")
                self.assertTrue(selects(sm["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"]))
                self.assertEqual([e["port"] for e in sm["spec"]["endpoints"]],
                                 [p["name"] for p in svc["spec"]["ports"]])
                self.assertEqual(sm["spec"]["endpoints"][0]["path"], "/metrics")
                # The rules select job="tessera-metrics": the job name the operator gives this
                # ServiceMonitor's targets is the Service's name.
                self.assertNotIn("jobLabel", sm["spec"])
                rule = lib.one(docs, "PrometheusRule", "tessera")
                exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
                raw = [e for e in exprs if "tessera:" in e or "up{" in e]
                self.assertTrue(raw)
                for e in raw:
                    self.assertIn('job="%s"' % svc["metadata"]["name"], e)
                cm = lib.one(docs, "ConfigMap", "tessera-grafana-dashboard")
                self.assertEqual(cm["metadata"]["labels"]["grafana_dashboard"], "1")
                dash = json.loads(cm["data"]["tessera-dashboard.json"])
                self.assertEqual(dash["uid"], "tessera-overview")

    def test_dashboard_structure(self):
        with open(lib.runfile("deploy/k8s/components/monitoring/tessera-dashboard.json")) as f:
            dash = json.load(f)
        ids = [p["id"] for p in dash["panels"]]
        self.assertEqual(len(ids), len(set(ids)))
        cells = set()
        for p in dash["panels"]:
            g = p["gridPos"]
            self.assertLessEqual(g["x"] + g["w"], 24, p["title"])
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    self.assertNotIn((x, y), cells, f"panel {p['title']!r} overlaps another")
                    cells.add((x, y))
            if p["type"] == "row":
                continue
            self.assertEqual(p["datasource"]["uid"], "${datasource}")
            refs = [t["refId"] for t in p["targets"]]
            self.assertEqual(len(refs), len(set(refs)), p["title"])
            for t in p["targets"]:
                self.assertIn('namespace=~"$namespace"', t["expr"], p["title"])
        variables = {v["name"] for v in dash["templating"]["list"]}
        self.assertEqual(variables, {"datasource", "namespace", "pod"})
        titles = " ".join(p["title"] for p in dash["panels"]).lower()
        for topic in ("time to first token", "inter-token", "end-to-end", "error", "running and waiting",
                      "kv cache", "prefix cache", "tokens /s", "preemptions", "media"):
            self.assertIn(topic, titles)

    def test_prometheusrule_matches_rule_file(self):
        sync = lib.runfile("deploy/monitoring/sync_prometheusrule.py")
        p = subprocess.run([sys.executable, sync, "--check",
                            lib.runfile("deploy/monitoring/prometheus/tessera-rules.yaml"),
                            lib.runfile("deploy/k8s/components/monitoring/prometheusrule.yaml")],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_autoscaler_reads_what_the_adapter_serves(self):
        for overlay in ("monitored", "gateway"):
            with self.subTest(overlay=overlay):
                docs = lib.render(overlay)
                dep, _ = lib.tessera_container(docs)
                self.assertNotIn("replicas", dep["spec"])  # The HPA owns it.
                hpa = lib.one(docs, "HorizontalPodAutoscaler", "tessera")
                self.assertEqual(hpa["spec"]["scaleTargetRef"]["name"], "tessera")
                self.assertEqual(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment")
                (metric,) = hpa["spec"]["metrics"]
                self.assertEqual(metric["type"], "Pods")
                with open(lib.runfile("deploy/monitoring/prometheus-adapter/values.yaml")) as f:
                    adapter = yaml.safe_load(f)
                served = {r["name"]["as"] for r in adapter["rules"]["custom"]}
                self.assertIn(metric["pods"]["metric"]["name"], served)
                (rule,) = [r for r in adapter["rules"]["custom"]
                           if r["name"]["as"] == metric["pods"]["metric"]["name"]]
                self.assertIn("tessera:num_requests_waiting", rule["seriesQuery"])
                self.assertGreaterEqual(hpa["spec"]["minReplicas"], 2)

    def test_inference_gateway(self):
        docs = lib.render("gateway")
        dep, c = lib.tessera_container(docs)
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        flags = lib.parse_flags(c["args"])
        self.assertIn("emit_vllm_metrics", flags)  # The picker reads vLLM's names.
        pool = lib.one(docs, "InferencePool", "tessera")
        self.assertEqual(pool["apiVersion"], "inference.networking.k8s.io/v1")
        self.assertTrue(selects(pool["spec"]["selector"]["matchLabels"], pod_labels))
        self.assertEqual([p["number"] for p in pool["spec"]["targetPorts"]], [int(flags["http_port"])])
        epp_ref = pool["spec"]["endpointPickerRef"]
        epp_svc = lib.one(docs, "Service", epp_ref["name"])
        self.assertIn(epp_ref["port"]["number"], [p["port"] for p in epp_svc["spec"]["ports"]])
        epp = lib.one(docs, "Deployment", epp_ref["name"])
        self.assertTrue(selects(epp_svc["spec"]["selector"], epp["spec"]["template"]["metadata"]["labels"]))
        (epp_c,) = epp["spec"]["template"]["spec"]["containers"]
        self.assertIn("--pool-name=tessera", epp_c["args"])
        self.assertGreaterEqual(epp["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
                                dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])
        config_file = [a for a in epp_c["args"] if a.startswith("--config-file=")][0].split("=", 1)[1]
        cm = lib.one(docs, "ConfigMap", "tessera-epp")
        self.assertIn(os.path.basename(config_file), cm["data"])
        picker = yaml.safe_load(cm["data"][os.path.basename(config_file)])
        self.assertEqual({p["type"] for p in picker["plugins"]},
                         {"queue-scorer", "kv-cache-utilization-scorer", "prefix-cache-scorer"})
        role = lib.one(docs, "Role", "tessera-epp")
        self.assertIn("pods", [r for rule in role["rules"] for r in rule["resources"]])
        binding = lib.one(docs, "RoleBinding", "tessera-epp")
        (subject,) = binding["subjects"]
        self.assertEqual((subject["name"], subject["namespace"]),
                         (epp["spec"]["template"]["spec"]["serviceAccountName"], "tessera"))
        route = lib.one(docs, "HTTPRoute", "tessera")
        (backend,) = route["spec"]["rules"][0]["backendRefs"]
        self.assertEqual((backend["kind"], backend["name"]), ("InferencePool", "tessera"))


if __name__ == "__main__":
    unittest.main()
