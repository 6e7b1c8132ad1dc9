"""metalearner: learns per-sample values for a target model and predicts them for unseen
samples without retraining that model (issue 6).

Data flow: `features.features_for_utility` turns samples into named, cross-fitted
features of the target model; `model.fit_ensemble` regresses values on them;
`MetaValuator` ties both to a `Utility` and returns `ValuationResult`s; `learn_values` is the
one call (teacher on a pool, meta-model on the rest); `transfer` carries a meta-model across
tasks. `DataRater` needs no teacher: it learns row weights from the target's validation loss
through its training (`metagrad`), and registers `value(..., method="rater")`.
"""

from .acquisition import Labelling as Labelling
from .acquisition import acquire_batch as acquire_batch
from .features import DEFAULT_GROUPS as DEFAULT_GROUPS
from .features import GROUPS as GROUPS
from .features import MODEL_AGNOSTIC as MODEL_AGNOSTIC
from .features import FeatureMap as FeatureMap
from .features import bootstrap_refits as bootstrap_refits
from .features import features_for_utility as features_for_utility
from .features import fold_refits as fold_refits
from .features import row_hash as row_hash
from .model import EnsembleFit as EnsembleFit
from .model import fit_ensemble as fit_ensemble
from .model import predict_members as predict_members
from .pipeline import LearnedValues as LearnedValues
from .pipeline import learn_values as learn_values
from .predictor import MetaValuator as MetaValuator
from .rater import DataRater as DataRater
from .transfer import fine_tune as fine_tune
from .transfer import fit_tasks as fit_tasks
from .transfer import make_task as make_task
from .transfer import predict_ranks as predict_ranks
