"""`pioreactor.exc`: the exceptions job code and plugins catch, under Pioreactor's names.

The hardware ones are raised on the job's side of a hardware request (`BackgroundJob.
hardware_request`): the daemon owns the pins and the HAT, and its refusal becomes one of these.
"""

from __future__ import annotations


class HardwareError(OSError):
    """A hardware device failed."""


class HardwareNotFoundError(HardwareError):
    """The hardware a job asked for is not there (no HAT, no I2C bus, a missing chip). Pioreactor
    raises it from the code that first touches the device; so do we."""


class PWMError(OSError):
    """A PWM output could not be driven."""


class PWMLockError(PWMError, RuntimeError):
    """The daemon refused the lock: the message names the job and pid that hold the pin."""


class HardwareRequestError(RuntimeError):
    """The daemon refused or failed a hardware request (its message says why)."""


class JobRequiredError(RuntimeError):
    """A job-only call (a PWM, a hardware request) made where no BackgroundJob runs."""


class JobPresentError(RuntimeError):
    """A job that must not be running is."""


class NotActiveWorkerError(Exception):
    """Pioreactor's inactive unit (a unit under pioreactord is always active)."""


class NotAssignedAnExperimentError(Exception):
    """Pioreactor's unit without an experiment (a unit under pioreactord always has one)."""


class DodgingTimingError(ValueError):
    """An OD-dodging job's delays do not fit between two OD readings."""
