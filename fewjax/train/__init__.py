"""Training: the loop (`train_and_evaluate`), the jitted step, the workdir lock and metrics."""
from fewjax.train.loop import train_and_evaluate

__all__ = ["train_and_evaluate"]
