"""How the Python reference programs of bench/reference/ end: main()'s status, or one line
naming the exception on stderr and status 1, so a driver reports a failed reference clearly."""
import os
import sys


def run(main):
    name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    try:
        sys.exit(main())
    except Exception as e:
        print(f"{name}: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
