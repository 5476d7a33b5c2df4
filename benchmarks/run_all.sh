#!/usr/bin/env bash
# Run every benchmark one after the other (a quiet machine gives the fairest timings), keep what
# each printed in benchmarks/results/<name>.log beside its JSON, then rebuild the results section
# of benchmarks/README.md from them.   bash benchmarks/run_all.sh [--quick] [NAME ...]
set -uo pipefail
cd "$(dirname "$0")/.."
quick=()
if [ "${1:-}" = "--quick" ]; then quick=(--quick); shift; fi
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(overhead shape_memory speedup refine learning_curve train_throughput)
mkdir -p benchmarks/results
for name in "${names[@]}"; do
  echo "=== $name ${quick[*]}"
  PYTHONUNBUFFERED=1 python "benchmarks/$name.py" "${quick[@]}" 2>&1 | tee "benchmarks/results/$name.log"
done
python benchmarks/report.py
