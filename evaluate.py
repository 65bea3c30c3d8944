"""Evaluate a checkpoint by the field's protocol: `python evaluate.py --workdir runs/pn [--episodes 600]`.

Reads the config from the checkpoint; test-time settings (ways, shots, queries, inner steps) can be overridden;
`--data PATH` evaluates on your own image folder (PATH/<class>/<image>, every class a test class). The last line
on stdout is one JSON object, also written to WORKDIR/eval_<split>.json.
"""
import json

from absl import app, flags, logging

from fewjax.eval.cli import EVAL_FLAGS, evaluate_workdir
from fewjax.train.cli import parse_flags
from fewjax.train.distributed import DISTRIBUTED_FLAGS, initialize_distributed

EVAL_FLAGS.define()
DISTRIBUTED_FLAGS.define()


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
    initialize_distributed(flags.FLAGS)
    print(json.dumps(evaluate_workdir(flags.FLAGS)))


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
