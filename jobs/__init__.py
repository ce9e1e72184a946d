"""pioreactor: the job-side runtime plugin authors import (the module paths of the Pioreactor docs).

Nothing here connects anywhere at import: a job connects to pioreactord when it is constructed.
"""
