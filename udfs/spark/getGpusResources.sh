#!/usr/bin/env bash
# Spark GPU discovery script: prints {"name":"gpu","addresses":["0","1",...]} from nvidia-smi.
set -euo pipefail
addresses=$(nvidia-smi --query-gpu=index --format=csv,noheader | sed -e 's/ //g' -e 's/.*/"&"/' | paste -sd, -)
echo "{\"name\":\"gpu\",\"addresses\":[${addresses}]}"
