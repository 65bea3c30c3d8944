"""The command lines of train.py and evaluate.py: flags, one `error:` line per expected failure, exit codes."""
