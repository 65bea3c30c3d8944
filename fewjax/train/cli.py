"""Command-line parsing for the launchers: config overrides that name a missing key fail in one clear line."""
from __future__ import annotations

import difflib
import sys

from absl import flags


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with config-override errors turned into one line naming the key (exit code 2).

    A `--config` that parses is also validated here, so a bad value (`--config.task_loop=loop`) fails the same
    way, in one line, before anything is built or compiled.
    """
    try:
        rest = flags.FLAGS(argv)
        if "config" in flags.FLAGS and flags.FLAGS.config is not None:
            from fewjax.train.config import validate

            try:
                validate(flags.FLAGS.config)
            except ValueError as e:
                _fail(argv[0], str(e))
        return rest
    except flags.Error as e:
        _fail(argv[0], str(e))
    except (KeyError, AttributeError) as e:
        key = _override_key(argv, e)
        known = _known_keys()
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" Did you mean --config.{close[0]}?" if close else ""
        _fail(argv[0], f"--config.{key}: the config has no key {key!r}.{hint} "
                       "Run with --helpfull to list flags; the keys are those of the config file's get_config().")
    return []  # unreachable


def _override_key(argv, error) -> str:
    overrides = [a.split("=", 1)[0][len("--config."):] for a in argv if a.startswith("--config.")]
    text = str(error)
    for key in overrides:
        if key.split(".")[-1] in text:
            return key
    return overrides[0] if overrides else text


def _known_keys() -> list[str]:
    try:
        from fewjax.train.config import base_config

        out, stack = [], [("", base_config())]
        while stack:
            prefix, d = stack.pop()
            for k, v in d.items():
                (stack.append((f"{prefix}{k}.", v)) if hasattr(v, "items") else out.append(f"{prefix}{k}"))
        return out
    except Exception:  # the hint is optional
        return []


def _fail(prog: str, message: str) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(2)
