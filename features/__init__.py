"""From battles to feature matrices: reading, validation, blocks and their cache.

The names below are the package's public surface; import them from here
(``from features import read_battles``), not from the inner modules. Nothing
heavy is imported: the transformer block (torch) loads only when a profile
asks for it.
"""

import features._openmp  # noqa: F401  # before scikit-learn, LightGBM or XGBoost load libgomp
from features.battle_files import read_table
from features.battles import (
    CLASSES,
    LABEL_NAMES,
    REPAIR_KINDS,
    SWAP_LABELS,
    TEXT_COLUMNS,
    RepairReport,
    as_battles,
    battle_fingerprint,
    battle_ids,
    read_battles,
    repair_report,
    swap,
    truncate_battles,
)
from features.blocks import FeatureBlock, FeatureMatrix, make_block, swap_columns
from features.errors import (
    BattleFormatError,
    ConfigError,
    DataFileError,
    InvalidParameterError,
    ModelIntegrityError,
    NotFittedError,
    UserInputError,
)
from features.partitions import BattlePartition, plan_partitions, read_partition
from features.pipeline import FeaturePipeline, state_fingerprint
from features.store import FeatureStore, block_key

__all__ = [
    "CLASSES",
    "LABEL_NAMES",
    "REPAIR_KINDS",
    "SWAP_LABELS",
    "TEXT_COLUMNS",
    "BattleFormatError",
    "BattlePartition",
    "ConfigError",
    "DataFileError",
    "FeatureBlock",
    "FeatureMatrix",
    "FeaturePipeline",
    "FeatureStore",
    "InvalidParameterError",
    "ModelIntegrityError",
    "NotFittedError",
    "RepairReport",
    "UserInputError",
    "as_battles",
    "battle_fingerprint",
    "battle_ids",
    "block_key",
    "make_block",
    "plan_partitions",
    "read_battles",
    "read_partition",
    "read_table",
    "repair_report",
    "state_fingerprint",
    "swap",
    "swap_columns",
    "truncate_battles",
]
