"""pioreactord: the supervisor daemon and its client, pioctl."""
