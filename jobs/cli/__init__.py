"""`pioreactor.cli`: the command-line names plugins register their jobs with."""
