"""Stand-in for the RPi package (tests only): see GPIO.py."""
