"""cvil: cross-lingual vision-language training by knowledge distillation (the cViL paper), reimplemented.

Importing :mod:`cvil` is cheap and has no side effects: MLflow, Optuna and plotting are imported only where used.
"""

__version__ = "0.1.0"
