"""The digital twin: the plant's process models calibrated against recorded runs.

Public API::

    fit, FitResult, ParameterEstimate      # least squares over the replayed runs
    write_overlay, apply_overlay           # the calibrated parameters as a plant overlay
    write_fit_report, record_calibration   # residual plots, correlations; the audit entry
    record_simulated_run                   # a run with known truth, for checks and examples
    copy_run_with_noise                    # a recorded run with measurement noise added
    whatif, WhatIf, duration_seconds       # a proposed change simulated ahead of a run
    whatif_live, live_inputs               # ... or ahead of a running line
    QualityPredictor, Mismatch             # the analyzer dead time ahead, beside the plant
    ParamRef, TwinError, with_parameters    # a parameter by name; the plant with new values

See docs/digital-twin.md.
"""

from modulecontrol.twin._fit import (
    FitPoint,
    FitResult,
    ParameterEstimate,
    apply_overlay,
    fit,
    write_overlay,
)
from modulecontrol.twin._model import ParamRef, TwinError, with_parameters
from modulecontrol.twin._predict import Mismatch, QualityPredictor
from modulecontrol.twin._record import copy_run_with_noise, record_simulated_run
from modulecontrol.twin._report import record_calibration, write_fit_report
from modulecontrol.twin._whatif import (
    WhatIf,
    duration_seconds,
    live_inputs,
    whatif,
    whatif_live,
)

__all__ = ["FitPoint", "FitResult", "Mismatch", "ParamRef", "ParameterEstimate",
           "QualityPredictor", "TwinError", "WhatIf", "apply_overlay", "copy_run_with_noise",
           "duration_seconds", "fit", "live_inputs", "record_calibration",
           "record_simulated_run", "whatif", "whatif_live", "with_parameters", "write_fit_report",
           "write_overlay"]
