#!/usr/bin/env bash
# Run every benchmark one after the other (a quiet machine gives the fairest timings), keep what
# each printed in benchmarks/results/<name>.log beside its JSON, then rebuild the results section
# of benchmarks/README.md from them.
#   bash benchmarks/run_all.sh [--quick] [--gpu] [NAME ...]
# --gpu measures on the GPU (cuda) instead; results go to <name>.gpu.json and results/<name>.gpu.log.
set -uo pipefail
cd "$(dirname "$0")/.."
quick=()
gpu=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=(--quick); shift ;;
    --gpu) gpu=1; shift ;;
    *) break ;;
  esac
done
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(overhead shape_memory speedup refine learning_curve train_throughput folder_throughput video_flicker app_latency tuning heads real_gap)
mkdir -p benchmarks/results
for name in "${names[@]}"; do
  device=()
  log="benchmarks/results/$name.log"
  if [ $gpu = 1 ]; then
    log="benchmarks/results/$name.gpu.log"
    case "$name" in
      overhead) device=(--devices cuda) ;;
      train_throughput) device=(--device cuda --gpus 1 --kimg 4) ;;  # 0.384 kimg is a second on a GPU
      *) device=(--device cuda) ;;
    esac
  fi
  echo "=== $name ${quick[*]} ${device[*]}"
  PYTHONUNBUFFERED=1 python "benchmarks/$name.py" "${quick[@]}" "${device[@]}" 2>&1 | tee "$log"
done
python benchmarks/report.py
