"""Data: tables, features, splits, multi-task datasets, task samplers and built-in datasets."""

from polytask.data.dataset import Batch, MultiTaskData
from polytask.data.features import FeatureEncoder, FeaturePreprocessor
from polytask.data.prepare import PreparedData, encode_frame, prepare_data
from polytask.data.sampling import ShuffledBatches, TaskMixture, task_probabilities

__all__ = [
    "Batch",
    "FeatureEncoder",
    "FeaturePreprocessor",
    "MultiTaskData",
    "PreparedData",
    "ShuffledBatches",
    "TaskMixture",
    "encode_frame",
    "prepare_data",
    "task_probabilities",
]
