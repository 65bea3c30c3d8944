"""`import fewjax` is light: kernels and types (JAX and optax), no Flax, Orbax, tokenizers or data loaders until used."""
import subprocess
import sys

HEAVY = ("flax", "orbax", "tokenizers", "safetensors", "PIL", "tensorboardX", "fewjax.models", "fewjax.data",
         "fewjax.train", "fewjax.eval", "fewjax.text", "fewjax.methods", "fewjax.experiment", "fewjax.cli",
         "fewjax.placement")


def loaded_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout.split()
    return {m for m in out if m.split(".")[0] in {h.split(".")[0] for h in HEAVY}}


def test_import_fewjax_loads_only_kernels_and_types():
    loaded = loaded_after("import fewjax; fewjax.maml_loss, fewjax.Task")
    assert not {m for m in loaded if m in HEAVY or m.split(".")[0] in {"flax", "orbax", "tokenizers", "PIL"}}, \
        sorted(loaded)


def test_subpackages_load_on_first_use():
    loaded = loaded_after("import fewjax; fewjax.models.Conv4; fewjax.evaluate; fewjax.load")
    assert {"fewjax.models", "fewjax.eval", "fewjax.experiment.load", "flax"} <= loaded
