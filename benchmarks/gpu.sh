#!/usr/bin/env bash
# The GPU benchmark (benchmarks/gpu.py): simulation cost, throughput, peak GPU memory and the
# light pipeline, one JSON file and Markdown tables. On the GPU machine, from the repository root
# (the repository is not installed there; this script sets PYTHONPATH):
#
#     bash benchmarks/gpu.sh --out $OUT/gpu.json
#
# It must finish in under 5 minutes there (one H200). On a CPU, every code path in seconds:
#
#     bash benchmarks/gpu.sh --tiny --device cpu --out /tmp/gpu.json
#
# PYTHON names the interpreter (default: python3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python3}" benchmarks/gpu.py "$@"
