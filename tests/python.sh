#!/bin/sh
# The Python binding (python/agave/) against the built library: runs
# tests/python/test_agave.py with PYTHONPATH=python and AGAVE_LIBRARY at
# $AGAVE_BUILD/lib. Needs a Python 3 with NumPy (Debian's python3-numpy,
# which scripts/deps.sh check installs); without one the test is skipped
# (exit 77) with a message saying so.
#
# usage: tests/python.sh   (run by make check from the top of the tree)
set -eu
. tests/support/preamble.sh
lib=$src/$build/lib/libagave.so.$major
[ -e "$lib" ] || fail "$lib is not built"

# The first Python 3 that has NumPy: $PYTHON, then python3 on PATH, then
# Debian's own (a PATH may lead to another Python first, e.g. pyenv's).
python=""
for p in ${PYTHON:-} python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import numpy' >/dev/null 2>&1; then
        python=$p
        break
    fi
done
[ -n "$python" ] || skip "no Python 3 with NumPy found (apt-get install python3-numpy)"

# Under the sanitizers the library needs the ASan runtime loaded first.
preload=""
case "$san" in
*address*) preload=$($cc -print-file-name=libasan.so) ;;
esac

echo "python: $($python --version 2>&1), NumPy $($python -c 'import numpy; print(numpy.__version__)')"
ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" LD_PRELOAD="$preload" \
    PYTHONPATH=$src/python AGAVE_LIBRARY=$lib PYTHONDONTWRITEBYTECODE=1 \
    "$python" tests/python/test_agave.py 2>&1
echo "python: all checks passed"
