#!/usr/bin/env python3
"""SIGTERM while a stream runs, with the drain grace the Kubernetes manifests configure: readiness
turns off, new requests are refused, the in-flight stream completes, the process exits 0 well
within terminationGracePeriodSeconds (the serving drain test with the deployment's numbers)."""
import http.client
import json
import os
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploy_testlib as lib  # noqa: E402
from metrics_scrape_test import ServerUnderTest  # noqa: E402


# Long enough that the stream is still running when SIGTERM arrives (the built-in model makes about
# 30 tokens/s on these CPUs: its 262k-row output layer), short enough to finish well within the grace.
MAX_TOKENS = 128


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
            first_chunk = threading.Event()

            def stream():
                conn = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=60)
                conn.request("POST", "/v1/completions", body=json.dumps({
                    "prompt": "Tell me a long story.",
                    "max_tokens": MAX_TOKENS, "ignore_eos": True, "stream": True,
                    "stream_options": {"include_usage": True}}),
                    headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                body = [r.readline().decode()]
                first_chunk.set()
                body.append(r.read().decode())
                result["reply"] = (r.status, "".join(body))

            t = threading.Thread(target=stream)
            t.start()
            self.assertTrue(first_chunk.wait(timeout=60), server.output())
            # The stream is running: SIGTERM now, as the kubelet would after preStop.
            sent = time.time()
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(0.1)
            ready = server.get("/ready")
            refused = server.get("/v1/completions", data=b'{"prompt":"new","max_tokens":4}')
            t.join(timeout=drain_s)
            code = server.proc.wait(timeout=termination_s)
            elapsed = time.time() - sent
        finally:
            server.stop(timeout=5)
        status, body = result["reply"]
        self.assertEqual(status, 200, body)
        self.assertIn('"completion_tokens":%d' % MAX_TOKENS, body.replace(" ", ""))
        self.assertIn("[DONE]", body)
        # The stream was still running 0.1 s after SIGTERM (see the time printed below): the server
        # was up, not ready, and refusing new work.
        self.assertEqual(ready[0], 503, ready[1])
        self.assertEqual(refused[0], 503, refused[1])
        print("stream ended and server exited %.2f s after SIGTERM" % elapsed, file=sys.stderr)
        self.assertEqual(code, 0, server.output())
        self.assertLess(elapsed, termination_s)


if __name__ == "__main__":
    unittest.main()
