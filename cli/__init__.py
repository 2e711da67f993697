# The first code the `fs` script runs: `fs ingest run` turns SIGTERM/SIGINT into a stop request from
# this instant, before the seconds of imports and start-up (fs/stopping.py).
import sys as _sys

if any(a == "ingest" and b == "run" for a, b in zip(_sys.argv, _sys.argv[1:], strict=False)):
    from fs_platform import stopping as _stopping

    _stopping.catch()
