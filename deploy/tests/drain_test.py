#!/usr/bin/env python3
"""SIGTERM while a stream runs, with the drain grace the Kubernetes manifests configure: readiness
turns off, new requests are refused, the in-flight stream completes, the process exits 0 well
within terminationGracePeriodSeconds (the serving drain test with the deployment's numbers)."""
import os
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploy_testlib as lib  # noqa: E402
from metrics_scrape_test import ServerUnderTest  # noqa: E402


class DrainTest(unittest.TestCase):
    def test_sigterm_drains_stream_with_manifest_grace(self):
        dep, c = lib.tessera_container(lib.render("monitored"))
        drain_s = float(lib.parse_flags(c["args"])["drain_grace_s"])
        termination_s = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        server = ServerUnderTest(["--drain_grace_s=%g" % drain_s, "--http_host=127.0.0.1",
                                  "--grpc_host=127.0.0.1"])
        try:
            server.wait_ready()
            result = {}

            def stream():
                result["reply"] = server.get(
                    "/v1/chat/completions",
                    data=b'{"messages":[{"role":"user","content":"a long one"}],"max_tokens":64,'
                         b'"ignore_eos":true,"stream":true,'
                         b'"stream_options":{"include_usage":true}}')

            t = threading.Thread(target=stream)
            t.start()
            time.sleep(0.15)
            sent = time.time()
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(0.1)
            ready = server.get("/ready") if server.proc.poll() is None else (0, "")
            refused = (server.get("/v1/chat/completions",
                                  data=b'{"messages":[{"role":"user","content":"new"}]}')
                       if server.proc.poll() is None else (0, ""))
            t.join(timeout=drain_s)
            code = server.proc.wait(timeout=termination_s)
            elapsed = time.time() - sent
        finally:
            server.stop(timeout=5)
        status, body = result["reply"]
        self.assertEqual(status, 200, body)
        self.assertIn('"completion_tokens":64', body.replace(" ", ""))
        self.assertIn("[DONE]", body)
        if ready[0]:
            self.assertEqual(ready[0], 503, ready[1])
        if refused[0]:
            self.assertEqual(refused[0], 503, refused[1])
        self.assertEqual(code, 0, server.output())
        self.assertLess(elapsed, termination_s)


if __name__ == "__main__":
    unittest.main()
