"""Short actions the Pioreactor docs import (e.g. `pioreactor.actions.led_intensity`)."""
