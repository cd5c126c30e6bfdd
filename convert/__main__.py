"""`python -m edgeclf.convert`: the same `main` as `edgeclf convert`."""

import sys

# `python -m convert` is gone (issue 20), but from the checkout's root it still finds this folder through the
# current directory: refuse, rather than run a second copy of the code under the old name.
if __spec__ is None or __spec__.name != "edgeclf.convert.__main__":
    print("`python -m convert` is gone: run `python -m edgeclf.convert` or `edgeclf convert`", file=sys.stderr)
    raise SystemExit(2)

from edgeclf.convert.cli import main  # noqa: E402 - not before the check above

raise SystemExit(main(None, "python -m edgeclf.convert"))
