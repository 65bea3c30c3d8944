"""Where the tests find the read-only shared material: `$FEWJAX_SHARED`, else `../shared` beside the repository."""
import os
from pathlib import Path

from fewjax.experiment.config import base_config

SHARED = Path(os.environ.get("FEWJAX_SHARED") or Path(__file__).resolve().parents[1] / ".." / "shared")
MINILM, DATA = SHARED / "models" / "all-MiniLM-L6-v2", SHARED / "data"
TEXT_READY = (MINILM / "model.safetensors").is_file() and (DATA / "text").is_dir()


def text_config(method="protonet", **overrides):
    """CLINC150 3-way 1-shot on MiniLM cut to its first layer (short compiles), 2 training steps."""
    c = base_config()
    c.method, c.dataset, c.data_dir = method, "clinc150", str(DATA)
    c.text.model, c.text.max_length, c.text.num_layers = str(MINILM), 32, 1
    c.distance, c.temperature = "cosine", 0.1
    c.ways = c.test_ways = 3
    c.shots = c.test_shots = 1
    c.queries = c.test_queries = 2
    c.meta_batch_size = 2
    c.inner_steps, c.eval_inner_steps, c.inner_lr = 1, 2, 0.5
    c.total_steps, c.log_every, c.eval_every, c.checkpoint_every = 2, 2, 2, 2
    c.val_episodes, c.test_episodes, c.eval_batch_size = 2, 4, 2
    c.update_from_flattened_dict(overrides)  # keys like "model.hidden"
    return c
