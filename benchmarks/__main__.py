"""`python -m edgeclf.benchmarks`: the same `main` as `edgeclf bench`."""

import sys

# `python -m benchmarks` is gone (issue 20), but from the checkout's root it still finds this folder through the
# current directory: refuse, rather than run a second copy of the code under the old name.
if __spec__ is None or __spec__.name != "edgeclf.benchmarks.__main__":
    print("`python -m benchmarks` is gone: run `python -m edgeclf.benchmarks` or `edgeclf bench`", file=sys.stderr)
    raise SystemExit(2)

from edgeclf.benchmarks.cli import main  # noqa: E402 - not before the check above

raise SystemExit(main(None, "python -m edgeclf.benchmarks"))
