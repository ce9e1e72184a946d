"""pioreactord: the supervisor daemon and its client, pioctl."""

__version__ = "0.2.0"  # the one place (setup.cfg reads it); shown by `pioctl version` and status
