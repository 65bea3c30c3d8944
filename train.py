"""Train a few-shot learner: `python train.py --config configs/omniglot_protonet.py:5w1s --workdir runs/pn`.

Overrides: `--config.total_steps=2000 --config.optim.lr=3e-4`. Starting again in the same workdir resumes.
Multi-host: `--coordinator_address HOST:PORT --num_processes N --process_id I` (or nothing on SLURM / TPU pods).
Exit codes: 0 done, 1 failed, 2 bad flag, 75 workdir in use, 128+N stopped by signal N (checkpoint saved; resume).
"""
import json
import sys
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

from fewjax.train import train_and_evaluate
from fewjax.train.cli import parse_flags, run_or_fail
from fewjax.train.distributed import DISTRIBUTED_FLAGS, initialize_distributed

config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/omniglot_protonet.py:5w1s.", lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and TensorBoard logs go (resumes if present).")
flags.mark_flags_as_required(["config", "workdir"])
flags.register_validator("workdir", lambda w: w is None or not Path(w).exists() or Path(w).is_dir(),
                         "is an existing file, not a directory: pass a new or existing directory for the run")
DISTRIBUTED_FLAGS.define()


def main(argv):
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
    initialize_distributed(flags.FLAGS)
    result = run_or_fail(argv[0], lambda: train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir))
    print(json.dumps(result))
    if "interrupted_at_step" in result:
        sys.exit(128 + result["signal"])


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
