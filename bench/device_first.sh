#!/usr/bin/env bash
# What to run first on a lent GPU, as ONE device call of under 10 minutes:
#   1. bench/device_check.sh (peak, W1-W4 against the peers, W5, encoder), within CHECK_BUDGET seconds (0: skipped);
#   2. the reproduction of PRESET (default maml_5w1s: configs/omniglot_maml.py:5w1s; also e.g. fomaml_5w1s,
#      maml_20w1s) on the published settings for TRAIN_SECONDS of training (SIGTERM, checkpoint, then 600 test
#      episodes of the best checkpoint, then 3,000 of Finn et al.'s protocol), recorded as run PRESET_gpu (partial
#      until its schedule ends) with its curve.
# $OUT gets device_check.tgz (unpack it with `tar -xzf device_check.tgz -C bench/results/`; one file, since a call
# returns at most 8), reproduction_new.jsonl (the records this call added: append them to
# bench/results/reproduction.jsonl) and the run's curve (bench/results/curves/). The records are copied after each
# step, so a call cut by its time limit still returns what was done. Exit status: 1 when a step failed.
#
# Before the call, on the development machine (shared/ and .whl/ are git-ignored and travel with the call):
#   mkdir -p shared/data && cp -r ../shared/bench/peers shared/peers && cp -r ../shared/data/omniglot shared/data/
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl ml-collections tensorboardX \
#     higher==0.2.1
# Then, with the device tool: run(command="python3 -m pip install -q --no-index --no-deps .whl/*.whl &&
#   bash bench/device_first.sh", timeout_s=590). Install the wheels into the interpreter, not with --target and
# PYTHONPATH: reproduce.py sets train.py's PYTHONPATH to the checkout. An H200 trained 97 MAML steps/s overall
# (compile, validation every 1,000 steps and checkpoints included), so the whole 60,000-step schedule is
# CHECK_BUDGET=0 TRAIN_SECONDS=520 with timeout_s=600, then at once the same command with TRAIN_SECONDS=150 on the
# still-warm machine, which resumes and finishes (bench/README.md, "On a GPU").
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/device_first}
CHECK_BUDGET=${CHECK_BUDGET:-240}
PRESET=${PRESET:-maml_5w1s}
TRAIN_SECONDS=${TRAIN_SECONDS:-${MAML_SECONDS:-240}}   # MAML_SECONDS: the name before PRESET existed
PY=${PYTHON:-python3}
CONFIG="configs/omniglot_${PRESET%_*}.py:${PRESET##*_}"
RUN="${PRESET}_gpu"
SHOTS=${PRESET##*w}; SHOTS=${SHOTS%s}
[[ -f "${CONFIG%:*}" && "${PRESET##*_}" =~ ^(5|20)w(1|5)s$ ]] ||
  { echo "PRESET=$PRESET: no preset ${CONFIG#configs/}; use METHOD_WAYSwSHOTSs, e.g. maml_5w1s or fomaml_20w1s" >&2; exit 2; }
mkdir -p "$OUT"
status=0
if [ "$CHECK_BUDGET" -gt 0 ]; then
  OUT="$OUT/device_check" PYTHON="$PY" bash bench/device_check.sh --budget "$CHECK_BUDGET" || status=1
  tar -czf "$OUT/device_check.tgz" -C "$OUT" device_check && rm -rf "$OUT/device_check"
fi
export FEWJAX_DATA_DIR=${FEWJAX_DATA_DIR:-$PWD/shared/data/omniglot}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
records=bench/results/reproduction.jsonl
before=$(wc -l < "$records")
keep() { tail -n +"$((before + 1))" "$records" > "$OUT/reproduction_new.jsonl"; }  # the records this call added
"$PY" bench/reproduce.py run "$RUN" --time-limit "$TRAIN_SECONDS" --partial -- \
  --config "$CONFIG" --config.eval_every=1000 --config.checkpoint_every=1000 2>&1 | tail -5
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
keep || status=1
"$PY" bench/curves.py record "$RUN" --every 100 > /dev/null && cp "bench/results/curves/$RUN.jsonl" "$OUT/" || status=1
# Finn et al.'s own test as well (their code draws `shots` queries per class; 3,000 episodes), the
# protocol of the CPU rows of fomaml and reptile; the results table shows the most-trained run's latest record.
"$PY" bench/reproduce.py run "$RUN" --no-train --partial --eval "${PRESET##*_}" --queries "$SHOTS" \
  --episodes 3000 2>&1 | tail -1
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
keep || status=1
ls -l "$OUT"
exit "$status"
