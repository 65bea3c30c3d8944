#!/usr/bin/env bash
# The first thing to run when an accelerator is lent: one command, bounded in time, that measures fewjax against the
# PyTorch peers on that device and writes every record. It runs on the CPU too (--quick: a few minutes).
#
#   bash bench/device_check.sh [--quick] [--budget SECONDS]
#
# Steps (each under `timeout`, a failed step is recorded and the next one runs):
#   1. environment: python, jax devices, nvidia-smi; missing pure-Python dependencies (ml-collections, tensorboardX)
#      are installed from ./.whl without the network when they are not importable (the GPU image has jax, flax,
#      optax, orbax, chex, torch, but not these: put their wheels in .whl/ before the call, see bench/README.md);
#   2. the device's matrix-product peak (bench/peak.py: float32, and bfloat16 on an accelerator);
#   3. W1-W4 side by side: fewjax's trainer step against the PyTorch peers (bench/side_by_side.py, peers on the same
#      device through PEER_DEVICE), tasks/s and memory;
#   4. W5: 600 test episodes, MAML and ProtoNet, compile included (bench/throughput.py);
#   5. the MiniLM encoder forward, sentences/s (bench/text_encoder.py), when the model folder is there;
#   6. a summary table (bench/device_summary.py): tasks/s, ratio to the fastest peer, fraction of the peak.
# Records go to $OUT when set (the device tool's folder that comes back), else bench/results/device_check/.
# The peers are read from shared/peers, ../shared/bench/peers, or $PEERS (copy them into shared/peers before a
# device call: the ../shared beside the checkout does not travel).
set -uo pipefail
cd "$(dirname "$0")/.."
QUICK=0
BUDGET=420
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --budget) BUDGET="$2"; shift ;;
    *) echo "device_check.sh: unknown argument $1 (use --quick, --budget SECONDS)" >&2; exit 2 ;;
  esac
  shift
done
PY=${PYTHON:-python3}
DEST=${OUT:-bench/results/device_check}
mkdir -p "$DEST"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
LOG="$DEST/device_check.log"
START=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
step() {  # step NAME SECONDS COMMAND...: runs COMMAND under a time limit, never past the budget
  local name="$1" limit="$2"; shift 2
  local remaining; remaining=$(left)
  [ "$limit" -gt "$remaining" ] && limit=$remaining
  if [ "$limit" -le 5 ]; then
    echo "{\"step\": \"$name\", \"skipped\": \"budget of ${BUDGET} s spent\"}" >> "$DEST/steps.jsonl"; return
  fi
  echo "== $name (limit ${limit} s)" | tee -a "$LOG" >&2
  local t0; t0=$(date +%s)
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  echo "{\"step\": \"$name\", \"exit_code\": $rc, \"seconds\": $(( $(date +%s) - t0 ))}" >> "$DEST/steps.jsonl"
}

if ! "$PY" -c "import ml_collections, tensorboardX" 2>/dev/null; then
  "$PY" -m pip install --quiet --no-deps --no-index --find-links .whl ml-collections tensorboardX 2>&1 | tail -2
fi
PLATFORM=$("$PY" -c "import jax; print(jax.default_backend())")
if [ "$PLATFORM" = "cpu" ]; then DTYPES=float32; PEER_DEVICE=cpu; else DTYPES=float32,bfloat16; PEER_DEVICE=cuda; fi
export PEER_DEVICE
export BENCH_MACHINE="$PLATFORM: $("$PY" -c "import jax; d = jax.devices()[0]; print(d.device_kind, 'x', jax.device_count())")"
{
  echo "{\"platform\": \"$PLATFORM\", \"machine\": \"$BENCH_MACHINE\", \"quick\": $QUICK, \"budget_s\": $BUDGET,"
  echo " \"commit\": \"$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\", \"started\": \"$(date -Is)\"}"
} > "$DEST/environment.json"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$LOG"

if [ "$QUICK" = 1 ]; then
  STEPS=1; SIZE=1024; WORKLOADS=W1,W4; IMPLS=torch_loop; TASKS=(--tasks 4)
else
  STEPS=5; SIZE=4096; WORKLOADS=W1,W2,W3,W4; IMPLS=torchfunc,torch_loop,higher; TASKS=()
fi
step peak 60 "$PY" bench/peak.py --size "$SIZE" --dtypes "$DTYPES" --repeats 5 --out "$DEST/peak.json"

PEERS=${PEERS:-}
for candidate in shared/peers ../shared/bench/peers; do
  [ -z "$PEERS" ] && [ -f "$candidate/common.py" ] && PEERS=$candidate
done
if [ -n "$PEERS" ] && [ ! -f "$PEERS/common.py" ]; then
  echo "PEERS=$PEERS holds no peer scripts (common.py): fewjax alone" | tee -a "$LOG" >&2
  PEERS=
fi
TORCH_PY=${TORCH_PYTHON:-}
if [ -z "$TORCH_PY" ]; then
  for candidate in "$PY" /work/venv-torch/bin/python; do
    if [ -z "$TORCH_PY" ] && "$candidate" -c "import torch" 2>/dev/null; then TORCH_PY=$candidate; fi
  done
fi
if [ -n "$PEERS" ] && [ -n "$TORCH_PY" ]; then
  step side_by_side 240 "$PY" bench/side_by_side.py --torch-python "$TORCH_PY" --peers "$PEERS" --out "$DEST" \
    --workloads "$WORKLOADS" --impls "$IMPLS" --steps "$STEPS" --warmup 1 --timeout 120
else
  echo "no PyTorch peers (peers: '${PEERS}', torch python: '${TORCH_PY}'): fewjax alone" | tee -a "$LOG" >&2
  for w in ${WORKLOADS//,/ }; do
    step "fewjax_$w" 120 "$PY" bench/throughput.py --workload "$w" --steps "$STEPS" "${TASKS[@]}" --out "$DEST/fewjax.jsonl"
  done
fi
step W5_evaluation 120 "$PY" bench/throughput.py --workload W5 --out "$DEST/fewjax.jsonl"
MODEL=${FEWJAX_SHARED:-../shared}/models/all-MiniLM-L6-v2
[ -d shared/models/all-MiniLM-L6-v2 ] && MODEL=shared/models/all-MiniLM-L6-v2
if [ -d "$MODEL" ]; then
  step text_encoder 90 "$PY" bench/text_encoder.py --model "$MODEL" --lengths 32,64 --dtypes "$DTYPES" \
    --min_seconds "$([ "$QUICK" = 1 ] && echo 1 || echo 5)" --out "$DEST/text_encoder.json"
fi
"$PY" bench/device_summary.py "$DEST" | tee "$DEST/summary.md"
echo "device_check: $(( $(date +%s) - START )) s; records in $DEST" >&2
