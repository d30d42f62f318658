"""The cnnc runtime: data loading, training loops, checkpoints and callbacks for compiled models."""

from .callbacks import (Callback, EarlyStopping, History, LearningRateScheduler, ModelCheckpoint,
                        TrainingRun, exponential_decay, step_decay)
from .checkpoint import CheckpointError, CheckpointMismatch
from .checkpoint import load as load_checkpoint
from .checkpoint import read_extra as read_checkpoint_extra
from .checkpoint import save as save_checkpoint
from .data import (DIGITS_CLASSES, DataError, ImageFolder, batches, load_digits, load_image, split,
                   to_batch_dict, to_input_dict)
from .model import InputError, NonFiniteError
from .plot import plot_history
from .train import TrainingDiverged, evaluate, fit, predict

__all__ = [
    "Callback", "EarlyStopping", "History", "LearningRateScheduler", "ModelCheckpoint", "TrainingRun",
    "exponential_decay", "step_decay",
    "CheckpointError", "CheckpointMismatch", "load_checkpoint", "read_checkpoint_extra", "save_checkpoint",
    "DIGITS_CLASSES", "DataError", "ImageFolder", "batches", "load_digits", "load_image", "split", "to_batch_dict",
    "to_input_dict",
    "InputError", "NonFiniteError",
    "plot_history",
    "TrainingDiverged", "evaluate", "fit", "predict",
]
