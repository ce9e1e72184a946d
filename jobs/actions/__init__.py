"""Short actions the Pioreactor docs import (`pioreactor.actions.led_intensity`)."""
