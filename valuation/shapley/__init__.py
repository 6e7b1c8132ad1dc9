"""Data Shapley family: semivalues (TMC/Beta Shapley, MSR Banzhaf, exact, leave-one-out),
Data-OOB and KNN-Shapley, with the stopping rules that end Monte Carlo runs."""

from .exact import exact_banzhaf as exact_banzhaf
from .exact import exact_semivalue as exact_semivalue
from .exact import exact_shapley as exact_shapley
from .exact import leave_one_out as leave_one_out
from .knn import embeddings as embeddings
from .knn import knn_shapley as knn_shapley
from .msr import msr_banzhaf as msr_banzhaf
from .oob import data_oob as data_oob
from .permutation import beta_shapley as beta_shapley
from .permutation import permutation_semivalue as permutation_semivalue
from .permutation import tmc_shapley as tmc_shapley
from .stopping import Rule as Rule
from .stopping import max_draws as max_draws
from .stopping import max_evaluations as max_evaluations
from .stopping import max_time as max_time
from .stopping import rank_stable as rank_stable
from .stopping import stderr_below as stderr_below
from .weights import Weights as Weights
from .weights import banzhaf as banzhaf
from .weights import beta as beta
from .weights import loo as loo
from .weights import shapley as shapley
