"""What the contrast benchmark's Python tests share: the check that prints and counts, and the
re-run under Debian's python3 where scipy and matplotlib live (a pyenv python3 earlier in PATH
has neither)."""
import os
import sys

DEBIAN = "/usr/bin/python3"
checked = []


def check(ok, what, detail=""):
    """Prints ok: WHAT, or FAIL: WHAT with the detail and exits 1."""
    if not ok:
        print(f"FAIL: {what}" + (f"\n{detail}" if detail else ""), flush=True)
        sys.exit(1)
    checked.append(what)
    print(f"ok: {what}", flush=True)


def need_debian_python(required=True):
    """Re-runs the calling script under Debian's python3 when this interpreter lacks scipy or
    matplotlib; with required, exits with the packages to install when that is no help."""
    try:
        import matplotlib  # noqa: F401
        import scipy  # noqa: F401
    except ImportError as e:
        if os.path.exists(DEBIAN) and os.path.realpath(sys.executable) != os.path.realpath(DEBIAN):
            print(f"{e} under {sys.executable}; re-running under {DEBIAN}", flush=True)
            os.execv(DEBIAN, [DEBIAN] + sys.argv)
        if required:
            sys.exit(f"{e}: install python3-scipy and python3-matplotlib")
