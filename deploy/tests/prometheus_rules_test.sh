#!/usr/bin/env bash
# promtool check rules + promtool test rules on deploy/monitoring/prometheus.
set -euo pipefail
dir="${TEST_SRCDIR:-.}/tessera/deploy/monitoring/prometheus"
cd "$dir"
promtool check rules tessera-rules.yaml
promtool test rules tessera-rules.test.yaml
