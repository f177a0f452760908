"""What the contrast benchmark's pytest modules share: the check that prints and counts (pytest
-s shows them), and the packages they need. pytest-3 is Debian's, where scipy and matplotlib
live (a pyenv python3 earlier in PATH has neither)."""
checked = []


def check(ok, what, detail=""):
    """Prints ok: WHAT, or fails the test with WHAT and the detail."""
    assert ok, f"{what}" + (f"\n{detail}" if detail else "")
    checked.append(what)
    print(f"ok: {what}", flush=True)


def need_debian_python(required=True):
    """Fails (with the Debian packages to install) when scipy or matplotlib is missing and
    `required`; stats.py alone falls back without them."""
    try:
        import matplotlib  # noqa: F401
        import scipy  # noqa: F401
    except ImportError as e:
        if required:
            raise ImportError(f"{e}: install python3-scipy and python3-matplotlib") from e
