"""First-order MAML on Omniglot (Finn et al. 2017; Nichol et al. 2018): MAML without the second-order term.

Run:       python train.py --config configs/omniglot_fomaml.py:5w1s --workdir runs/omniglot_fomaml_5w1s
Run time:  as configs/omniglot_maml.py, somewhat faster per step (no Hessian-vector products).
Expected:  published 5w1s 98.3, 5w5s 99.2, 20w1s 89.4, 20w5s 97.9;
           fewjax measured: see the README "Results" table.
Presets:   5w1s, 5w5s, 20w1s, 20w5s: the settings of configs/omniglot_maml.py with first_order=True.
"""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("omniglot_maml", Path(__file__).with_name("omniglot_maml.py"))
_maml = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_maml)


def get_config(preset: str = "5w1s"):
    return _maml.get_config(preset, method="fomaml")
