"""Gold reward models: the world's gold, labelling (hard, Bradley-Terry, flipped), torch adapters."""

from gold_rm.gold import COMPONENTS, GoldConfig, GoldRM, describe
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
    "GoldConfig",
    "GoldRM",
    "TorchGoldRM",
    "comparison_arrays",
    "describe",
    "label_pairs",
    "make_comparisons",
    "read_comparisons",
    "write_comparisons",
]
