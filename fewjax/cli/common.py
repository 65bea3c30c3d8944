"""Command-line plumbing for the launchers: one `error:` line instead of a traceback, and documented exit codes.

Exit codes of train.py and evaluate.py:
  0    done; the last stdout line is the JSON record
  1    failed with a clear error (a missing or corrupt file, a full disk, a diverged run)
  2    a bad flag or config value
  75   the workdir is in use by another run (EX_TEMPFAIL: try again when it is free)
  128+N  interrupted by signal N (143 SIGTERM, 130 Ctrl-C) after saving a checkpoint; run the same command to resume
"""
from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Callable, NoReturn, TypeVar

from absl import flags

from fewjax.experiment.config import FlagError, base_config, validate
from fewjax.experiment.checkpoint import CorruptCheckpointError
from fewjax.train.lock import WorkdirBusyError

EXIT_FAILED, EXIT_USAGE, EXIT_BUSY = 1, 2, 75

T = TypeVar("T")


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with config-override errors turned into one line naming the key (exit code 2).

    A `--config` that parses is also validated here, so a bad value (`--config.task_loop=loop`) fails the same
    way, in one line, before anything is built or compiled; so does a `--config` file that does not load.
    """
    try:
        rest = flags.FLAGS(argv)
        if "config" in flags.FLAGS and flags.FLAGS.config is not None:

            try:
                validate(flags.FLAGS.config)
            except ValueError as e:
                fail(argv[0], str(e))
            except OSError as e:  # ml_collections defers a config file's load failure to its first use
                fail(argv[0], config_load_error(flags.FLAGS["config"].config_filename, e))
        return rest
    except flags.Error as e:
        fail(argv[0], str(e))
    except (KeyError, AttributeError) as e:
        key = _override_key(argv, e)
        known = _known_keys()
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" Did you mean --config.{close[0]}?" if close else ""
        fail(argv[0], f"--config.{key}: the config has no key {key!r}.{hint} "
                      "Run with --helpfull to list flags; the keys are those of the config file's get_config().")


def config_load_error(config_arg: str, error: OSError) -> str:
    """One line for a `--config FILE[:preset]` that could not be loaded."""
    path = config_arg.split(":", 1)[0]
    if not Path(path).is_file():
        return (f"--config={config_arg}: no such file {path!r}; give the path of a config file, e.g. "
                "configs/omniglot_protonet.py:5w1s (relative to the current directory).")
    reason = str(error.__cause__ or error).strip().splitlines()[-1]
    return f"--config={config_arg}: cannot load it ({reason.strip()})."


def run_or_fail(prog: str, fn: Callable[[], T]) -> T:
    """`fn()`, with the expected failures printed as one `error:` line and an exit code (see the module docstring).

    Expected: a busy workdir, a bad flag value, an OS-level problem (missing or unwritable file, full disk), a
    corrupt checkpoint, a non-finite loss. Anything else keeps its traceback: it is a bug to report.
    """
    try:
        return fn()
    except WorkdirBusyError as e:
        fail(prog, str(e), EXIT_BUSY)
    except FlagError as e:
        fail(prog, str(e), EXIT_USAGE)
    except OSError as e:
        fail(prog, str(e) if e.filename else (e.strerror or str(e)), EXIT_FAILED)
    except (CorruptCheckpointError, FloatingPointError) as e:
        fail(prog, str(e), EXIT_FAILED)


def fail(prog: str, message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Prints `prog: error: message` to stderr and exits with `code`."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(code)


def _override_key(argv, error) -> str:
    overrides = [a.split("=", 1)[0][len("--config."):] for a in argv if a.startswith("--config.")]
    text = str(error)
    for key in overrides:
        if key.split(".")[-1] in text:
            return key
    return overrides[0] if overrides else text


def _known_keys() -> list[str]:
    try:

        out, stack = [], [("", base_config())]
        while stack:
            prefix, d = stack.pop()
            for k, v in d.items():
                (stack.append((f"{prefix}{k}.", v)) if hasattr(v, "items") else out.append(f"{prefix}{k}"))
        return out
    except Exception:  # the hint is optional
        return []
