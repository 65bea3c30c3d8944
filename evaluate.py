"""Evaluate a checkpoint by the field's protocol: `python evaluate.py --workdir runs/pn [--episodes 600]`.

Reads the config from the checkpoint; test-time settings (ways, shots, queries, inner steps) can be overridden;
`--data PATH` evaluates on your own image folder (PATH/<class>/<image>, every class a test class; the foreground is
made high as in the built-in Omniglot, see --invert). The last line on stdout is one JSON object, also written to
WORKDIR/eval_<split>.json (a warning if the workdir is read-only). Exit codes: 0 done, 1 failed, 2 bad flag.
"""
from absl import app

from fewjax.cli.common import parse_flags
from fewjax.cli.distributed import DISTRIBUTED_FLAGS
from fewjax.cli.evaluate import EVAL_FLAGS, main

EVAL_FLAGS.define()
DISTRIBUTED_FLAGS.define()

if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
