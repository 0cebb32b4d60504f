"""repalign_jax: the effective theory of representation learning of
"When Representations Align" (van Rossem & Saxe, ICML 2024) in JAX.

Solve the theory's 3-variable system, fit its effective learning rates to
networks by gradient-based optimisation through diffrax, and predict the final
representational structure.
"""

from importlib import metadata as _metadata

from ._chunks import Chunk as Chunk
from ._chunks import plan_chunks as plan_chunks
from ._compile_cache import enable_compile_cache as enable_compile_cache
from ._data import Dataset as Dataset
from ._data import digits as digits
from ._data import first_of_class as first_of_class
from ._data import gaussian_blobs as gaussian_blobs
from ._data import load_mnist as load_mnist
from ._data import mnist_5k as mnist_5k
from ._data import pair_indices as pair_indices
from ._data import pairwise_distances as pairwise_distances
from ._data import read_idx as read_idx
from ._data import two_point as two_point
from ._data import xor as xor
from ._fit import EXPLAINS_R2 as EXPLAINS_R2
from ._fit import FitOptions as FitOptions
from ._fit import FitResult as FitResult
from ._fit import FitWarning as FitWarning
from ._fit import explains as explains
from ._fit import fit_effective_rates as fit_effective_rates
from ._fit import fit_objective as fit_objective
from ._fit import initial_guess as initial_guess
from ._gain_series import GAIN_SERIES_GAINS as GAIN_SERIES_GAINS
from ._gain_series import GAIN_SERIES_LRS as GAIN_SERIES_LRS
from ._gain_series import paper_lr as paper_lr
from ._networks import ACTIVATION_NAMES as ACTIVATION_NAMES
from ._networks import ACTIVATIONS as ACTIVATIONS
from ._networks import Network as Network
from ._networks import NetworkSpec as NetworkSpec
from ._networks import apply as apply
from ._networks import init_state as init_state
from ._networks import params_from_torch as params_from_torch
from ._networks import xavier_normal as xavier_normal
from ._pipeline import TrainedAndFitted as TrainedAndFitted
from ._pipeline import run_grid as run_grid
from ._pipeline import train_and_fit as train_and_fit
from ._progress import Meter as Meter
from ._progress import Progress as Progress
from ._rates import EffectiveRates as EffectiveRates
from ._rungrid import GridMismatch as GridMismatch
from ._rungrid import Group as Group
from ._rungrid import GroupDone as GroupDone
from ._rungrid import RunStore as RunStore
from ._rungrid import run_columns as run_columns
from ._rungrid import run_groups as run_groups
from ._rungrid import runs_in_memory as runs_in_memory
from ._rungrid import todo as todo
from ._sharding import use_host_cores as use_host_cores
from ._sharpness import AUTO_LR_C as AUTO_LR_C
from ._sharpness import auto_lr as auto_lr
from ._sharpness import initial_sharpness as initial_sharpness
from ._sharpness import lambda_max_of as lambda_max_of
from ._snapshot import SnapshotMismatch as SnapshotMismatch
from ._structure import classical_mds as classical_mds
from ._structure import exponential_weighting as exponential_weighting
from ._structure import pearson_offdiagonal as pearson_offdiagonal
from ._structure import predicted_final_distances as predicted_final_distances
from ._theory import FixedPoints as FixedPoints
from ._theory import PairwiseDistances as PairwiseDistances
from ._theory import SolverOptions as SolverOptions
from ._theory import conserved_c as conserved_c
from ._theory import coupling as coupling
from ._theory import final_distance as final_distance
from ._theory import final_distance_matrix as final_distance_matrix
from ._theory import fixed_points as fixed_points
from ._theory import identical_targets_solution as identical_targets_solution
from ._theory import reduced_vector_field as reduced_vector_field
from ._theory import representation_loss as representation_loss
from ._theory import solve_effective as solve_effective
from ._theory import structure_scales as structure_scales
from ._theory import theory_loss as theory_loss
from ._theory import valid_state as valid_state
from ._theory import vector_field as vector_field
from ._train import TrainConfig as TrainConfig
from ._train import TrainResult as TrainResult
from ._train import train_networks as train_networks
from ._trajectory import PairTrajectory as PairTrajectory
from ._trajectory import measure_hyw as measure_hyw
from ._trajectory import to_pair_trajectory as to_pair_trajectory

#: The public API: everything above, nothing else (`from repalign_jax import *`).
__all__ = [
    "Chunk",
    "plan_chunks",
    "Meter",
    "Progress",
    "GridMismatch",
    "Group",
    "GroupDone",
    "RunStore",
    "run_columns",
    "run_groups",
    "runs_in_memory",
    "todo",
    "ACTIVATIONS",
    "ACTIVATION_NAMES",
    "AUTO_LR_C",
    "Dataset",
    "EffectiveRates",
    "FitOptions",
    "GAIN_SERIES_GAINS",
    "GAIN_SERIES_LRS",
    "FitResult",
    "EXPLAINS_R2",
    "FitWarning",
    "FixedPoints",
    "Network",
    "NetworkSpec",
    "PairTrajectory",
    "PairwiseDistances",
    "SnapshotMismatch",
    "SolverOptions",
    "TrainConfig",
    "TrainResult",
    "TrainedAndFitted",
    "apply",
    "auto_lr",
    "classical_mds",
    "conserved_c",
    "coupling",
    "digits",
    "enable_compile_cache",
    "exponential_weighting",
    "final_distance",
    "final_distance_matrix",
    "first_of_class",
    "explains",
    "fit_effective_rates",
    "fit_objective",
    "fixed_points",
    "gaussian_blobs",
    "identical_targets_solution",
    "init_state",
    "initial_guess",
    "initial_sharpness",
    "lambda_max_of",
    "load_mnist",
    "measure_hyw",
    "mnist_5k",
    "pair_indices",
    "pairwise_distances",
    "paper_lr",
    "params_from_torch",
    "pearson_offdiagonal",
    "predicted_final_distances",
    "read_idx",
    "reduced_vector_field",
    "representation_loss",
    "run_grid",
    "solve_effective",
    "structure_scales",
    "theory_loss",
    "to_pair_trajectory",
    "train_and_fit",
    "train_networks",
    "two_point",
    "use_host_cores",
    "valid_state",
    "vector_field",
    "xavier_normal",
    "xor",
]

try:
    __version__ = _metadata.version("repalign_jax")
except _metadata.PackageNotFoundError:  # run from a source tree that was not installed
    __version__ = "0+unknown"
