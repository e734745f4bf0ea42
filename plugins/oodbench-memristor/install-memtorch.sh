#!/usr/bin/env bash
# Install memtorch (GPL-3.0) into the Python environment given as $1 (default: the `python` on PATH).
# memtorch-cpu 1.1.6 ships only as an sdist whose metadata names the dead `sklearn` package, so its real
# dependencies are installed first and memtorch itself with --no-deps, compiled against the installed torch
# (--no-build-isolation). The C++ build takes 5-7 minutes on 2 cores; pip's wheel cache makes reinstalls fast.
# Idempotent: does nothing when `import memtorch` already works.
set -euo pipefail
python="${1:-python}"
if "$python" -c "import memtorch" 2>/dev/null; then
  exit 0
fi
"$python" -m pip install --quiet numpy pandas scipy scikit-learn matplotlib seaborn ipython lmfit ninja
"$python" -m pip install --quiet --no-build-isolation --no-deps memtorch-cpu==1.1.6
"$python" -c "import memtorch"
