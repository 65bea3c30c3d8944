"""Evaluation by the field's protocol: a fixed, seeded set of test episodes, mean accuracy and 95% CI."""
from fewjax.eval.evaluate import TEST_SEED, VAL_SEED, evaluate

__all__ = ["TEST_SEED", "VAL_SEED", "evaluate"]
