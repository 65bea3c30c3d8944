"""A run as data: its config (`config`), the data it samples (`data`), its state and outer optimizer (`state`),
its checkpoints (`checkpoint`, `integrity`), the records it writes (`records`), and `load`, which brings a trained run back (`fewjax.load`)."""
