"""train.py's command line: a config file with overrides and a workdir, then `fewjax.train.train_and_evaluate`."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from absl import flags, logging
from ml_collections import config_flags

from fewjax.cli.common import run_or_fail
from fewjax.cli.distributed import initialize_distributed
from fewjax.train import train_and_evaluate


def define_flags():
    config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/omniglot_protonet.py:5w1s.",
                                    lock_config=True)
    flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and TensorBoard logs go (resumes if present).")
    flags.mark_flags_as_required(["config", "workdir"])
    flags.register_validator("workdir", lambda w: w is None or not Path(w).exists() or Path(w).is_dir(),
                             "is an existing file, not a directory: pass a new or existing directory for the run")


def main(argv):
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
    initialize_distributed(flags.FLAGS)
    result = run_or_fail(argv[0], lambda: train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir))
    print(json.dumps(result))
    if "interrupted_at_step" in result:
        sys.exit(128 + result["signal"])
