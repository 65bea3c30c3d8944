#!/usr/bin/env bash
# Few-shot text columns (bench/text_fewshot.py, issue 17) on a lent GPU. The encoder's weights (model.safetensors,
# 87 MiB) are larger than what one device call carries (64 MiB in all), so they travel in two halves, in two calls
# made one right after the other on the same warm machine:
#
#   here:    bash bench/text_device.sh pack       # shared/ (text data, the model folder without its weights),
#                                                 # .xfer/a and .xfer/b (the halves); checks the sizes
#   call 1:  run(command="bash bench/text_device.sh receive", carry=[".xfer/a"], timeout_s=60)
#   call 2:  run(command="python3 -m pip install -q --no-index --no-deps .whl/*.whl && TEXT_SECONDS=480
#                bash bench/text_device.sh run", carry=[".xfer/b", ".whl"], timeout_s=590)
#
# `run` joins the halves (removed again on exit), checks them against the model folder's SHA256SUMS, then runs each
# TEXT_COLUMNS entry (SETTING:METHOD, default the two FewRel 5w5s columns still open) with the 600 episodes of 15
# queries the README matrix uses, within TEXT_SECONDS in all. $OUT gets text_fewshot_new.jsonl (the records this
# call added: append them to bench/results/text_fewshot.jsonl) and each column's progress file (copy it into
# bench/results/text_fewshot_progress/): a column cut by the time limit continues from it with the same
# bench/text_fewshot.py command, here or on a GPU. .whl/ holds ml-collections and tensorboardX, as for
# bench/device_first.sh. Exit status: 1 when a column failed (not when the time limit cut it), 2 on bad use.
set -uo pipefail
cd "$(dirname "$0")/.."
MODEL=all-MiniLM-L6-v2
WEIGHTS=shared/models/$MODEL/model.safetensors
PY=${PYTHON:-python3}
OUT=${OUT:-bench/results/text_device}
limit=$((64 * 1024 * 1024))
stash=${TMPDIR:-/tmp}/fewjax_xfer
columns=${TEXT_COLUMNS:-fewrel_5w5s:setfit fewrel_5w5s:prompt_meta}   # not COLUMNS: bash sets that to the width
bytes() { local n; n=$(du -sb "$@" 2>/dev/null | awk '{s += $1} END {print s + 0}'); echo "${n:-0}"; }

case "${1:-}" in
pack)
  src=${SHARED_SRC:-../shared}
  [ -f "$src/models/$MODEL/model.safetensors" ] || { echo "no $src/models/$MODEL: set SHARED_SRC" >&2; exit 2; }
  mkdir -p shared/models shared/data .xfer/a .xfer/b
  chmod -R u+w "shared/models/$MODEL" shared/data/text 2>/dev/null; rm -rf "shared/models/$MODEL" shared/data/text
  cp -r "$src/models/$MODEL" shared/models/ && cp -r "$src/data/text" shared/data/ || exit 1
  chmod -R u+w shared/models shared/data/text && rm "$WEIGHTS"
  size=$(stat -c %s "$src/models/$MODEL/model.safetensors")
  half=$(( (size + 1) / 2 ))
  head -c "$half" "$src/models/$MODEL/model.safetensors" > .xfer/a/weights.part
  tail -c +"$((half + 1))" "$src/models/$MODEL/model.safetensors" > .xfer/b/weights.part
  tracked=$(git ls-files -z | xargs -0 -r du -cb 2>/dev/null | awk '$2 == "total" {s += $1} END {print s + 0}')
  for part in a b; do
    total=$((tracked + $(bytes shared) + $(bytes .xfer/$part) + $(bytes .whl)))
    echo "call with .xfer/$part: $((total / 1048576)) MiB of the 64 MiB a call carries"
    [ "$total" -lt "$limit" ] || { echo "over the limit: move what shared/ holds besides data/text and models/$MODEL" \
      "out of it (e.g. shared/data/omniglot, shared/peers)" >&2; exit 1; }
  done
  ;;
receive)
  [ -f .xfer/a/weights.part ] || { echo "no .xfer/a/weights.part: carry .xfer/a" >&2; exit 2; }
  mkdir -p "$stash" && cp .xfer/a/weights.part "$stash/a.part" && ls -l "$stash"
  ;;
run)
  a=.xfer/a/weights.part; [ -f "$a" ] || a=$stash/a.part
  [ -f "$a" ] && [ -f .xfer/b/weights.part ] || { echo "missing a half: 'receive' with .xfer/a first, then 'run' with" \
    ".xfer/b, on the same warm machine" >&2; exit 2; }
  trap 'rm -f "$WEIGHTS"' EXIT   # 87 MiB left in shared/ would put every later call over its limit
  cat "$a" .xfer/b/weights.part > "$WEIGHTS"
  (cd "shared/models/$MODEL" && grep ' model.safetensors$' SHA256SUMS | sha256sum -c -) || exit 1
  export FEWJAX_SHARED=$PWD/shared PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  records=bench/results/text_fewshot.jsonl
  before=$(cat "$records" 2>/dev/null | wc -l)
  end=$((SECONDS + ${TEXT_SECONDS:-480})) status=0
  mkdir -p "$OUT"
  for column in $columns; do
    left=$((end - SECONDS)); [ "$left" -gt 30 ] || break
    echo "== ${column} (${left} s left)"
    timeout -k 20 -s TERM "$left" "$PY" bench/text_fewshot.py --settings "${column%%:*}" --methods "${column##*:}" \
      --episodes 600 --test_queries 15 2>&1 | tr '\r' '\n' | grep -v '^\s*$' | tail -4
    rc=${PIPESTATUS[0]}
    case $rc in 0) ;; 124|137) echo "${column}: cut by the time limit; its progress file keeps what was scored" ;;
      *) echo "${column}: failed (exit $rc)" >&2; status=1 ;; esac
  done
  tail -n +"$((before + 1))" "$records" > "$OUT/text_fewshot_new.jsonl" 2>/dev/null
  for column in $columns; do
    cp bench/results/text_fewshot_progress/"${column##*:}_${column%%:*}"_*.npz "$OUT/" 2>/dev/null
  done
  ls -l "$OUT"
  exit "$status"
  ;;
*)
  echo "usage: bash bench/text_device.sh pack|receive|run (see the top of this file)" >&2; exit 2 ;;
esac
