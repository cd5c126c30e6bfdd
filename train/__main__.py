"""`python -m edgeclf.train`: the same `main` as `edgeclf train`."""

import sys

# `python -m train` is gone (issue 20), but from the checkout's root it still finds this folder through the
# current directory: refuse, rather than run a second copy of the code under the old name.
if __spec__ is None or __spec__.name != "edgeclf.train.__main__":
    print("`python -m train` is gone: run `python -m edgeclf.train` or `edgeclf train`", file=sys.stderr)
    raise SystemExit(2)

from edgeclf.train.cli import main  # noqa: E402 - not before the check above

raise SystemExit(main(None, "python -m edgeclf.train"))
