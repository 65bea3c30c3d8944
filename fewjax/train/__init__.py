"""Training: config, methods, the jitted step, the loop, checkpoints and metrics."""
from fewjax.train.checkpoint import Checkpoints
from fewjax.train.config import base_config, validate
from fewjax.train.loop import train_and_evaluate

__all__ = ["Checkpoints", "base_config", "train_and_evaluate", "validate"]
