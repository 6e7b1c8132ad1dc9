"""Learning-dynamics signals: what one training run says about every sample.

Data flow: `record` trains the target model (per seed, one `vmap`) keeping the params after
every epoch and scores every sample against them (`Trace`); `signals` summarises each
trajectory (data maps, forgetting, AUM, EL2N/GraNd, validation-gradient alignment);
`signals_frame` tabulates them, `features_for_new_samples` does the same for unseen samples from
the checkpoints alone, and `dynamics_values` returns one signal as a `ValuationResult`.
"""

from .features import FEATURE_COLUMNS as FEATURE_COLUMNS
from .features import features_for_new_samples as features_for_new_samples
from .features import signal_matrix as signal_matrix
from .features import signals_frame as signals_frame
from .plot import data_map_plot as data_map_plot
from .record import Trace as Trace
from .record import record as record
from .record import trajectory as trajectory
from .record import with_extra_class as with_extra_class
from .values import SIGNAL_NAMES as SIGNAL_NAMES
from .values import aum_threshold_values as aum_threshold_values
from .values import dynamics_from_utility as dynamics_from_utility
from .values import dynamics_values as dynamics_values
from .values import signal_values as signal_values
