"""Gold reward models: the interface (`Gold`), the world's hand-written gold, the learned gold, labelling (hard,
Bradley-Terry, flipped), torch adapters."""

from gold_rm.factory import formula_gold, make_gold
from gold_rm.gold import COMPONENTS, GoldConfig, GoldRM, describe
from gold_rm.interface import Gold
from gold_rm.labels import (
    comparison_arrays,
    label_pairs,
    make_comparisons,
    read_comparisons,
    write_comparisons,
)
from gold_rm.torch_adapter import TorchGoldRM

__all__ = [
    "COMPONENTS",
    "Gold",
    "GoldConfig",
    "GoldRM",
    "TorchGoldRM",
    "comparison_arrays",
    "describe",
    "formula_gold",
    "label_pairs",
    "make_comparisons",
    "make_gold",
    "read_comparisons",
    "write_comparisons",
]
