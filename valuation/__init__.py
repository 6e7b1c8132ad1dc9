"""valuation: the JAX core of valuate, from (data, target model) to per-sample values.

Data flow: `data.load` -> `Dataset`; `models` -> `Model(init, apply)`; `training.fit` and the
utility engine `utility.make_utility` train a target model on many subsets at once; the value
families (`shapley`, `influence`, `dynamics`) turn that into a `ValuationResult` (higher = more
valuable). `value(...)` is the one entry point over all of them.
"""

from . import dynamics as dynamics
from . import influence as influence
from . import shapley as shapley
from .acquisition import acquire as acquire
from .api import METHODS as METHODS
from .api import value as value
from .bundled import load_bundled as load_bundled
from .bundled import make_classification as make_classification
from .compile_cache import enable_compile_cache as enable_compile_cache
from .data import Dataset as Dataset
from .data import align_classes as align_classes
from .data import load as load
from .data import regression_dataset as regression_dataset
from .errors import ValuationError as ValuationError
from .errors import ValuationWarning as ValuationWarning
from .models import Model as Model
from .models import from_equinox as from_equinox
from .models import linear_regression as linear_regression
from .models import logistic_regression as logistic_regression
from .models import mlp as mlp
from .results import ValuationResult as ValuationResult
from .runner import run as run
from .selection import Selection as Selection
from .selection import select as select
from .training import fit as fit
from .training import fit_logistic_newton as fit_logistic_newton
from .utility import Utility as Utility
from .utility import make_utility as make_utility
