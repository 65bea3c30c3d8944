"""Evaluate a checkpoint by the field's protocol: `python evaluate.py --workdir runs/pn [--episodes 600]`.

Reads the config from the checkpoint; test-time settings (ways, shots, queries, inner steps) can be overridden;
`--data PATH` evaluates on your own image folder (PATH/<class>/<image>, every class a test class; the foreground is
made high as in the built-in Omniglot, see --invert). The last line on stdout is one JSON object, also written to
WORKDIR/eval_<split>.json (a warning if the workdir is read-only). Exit codes: 0 done, 1 failed, 2 bad flag.
"""
import json
from pathlib import Path

from absl import app, flags, logging

from fewjax.eval.cli import EVAL_FLAGS, evaluate_workdir, save_record
from fewjax.train.cli import parse_flags, run_or_fail
from fewjax.train.distributed import DISTRIBUTED_FLAGS, initialize_distributed

EVAL_FLAGS.define()
DISTRIBUTED_FLAGS.define()


def main(argv):
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
    initialize_distributed(flags.FLAGS)
    record = run_or_fail(argv[0], lambda: evaluate_workdir(flags.FLAGS, save=False))
    print(json.dumps(record), flush=True)
    save_record(Path(flags.FLAGS.workdir), record)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
