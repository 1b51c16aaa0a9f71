#!/usr/bin/env bash
# Fills .whl/ with what benchmarks/gpu_run.sh needs on the GPU machine and its image lacks (that image has
# Python 3.12, torch, accelerate 1.15, transformers 5.17, but no TRL, datasets or a new enough transformers;
# nothing can be fetched there). Run it here, where PyPI is reachable. About 21 MB, under the 64 MiB a device
# call may carry. .whl/ stays out of git.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
# The versions this repository is tested with (pyproject.toml), and the dependencies the image does not hold.
for spec in trl==1.16.0 transformers==5.24.0 datasets==5.2.0 accelerate==1.16.0 peft==0.21.2 tokenizers==0.23.3 \
    "dill<0.4.2" "multiprocess<0.70.20" "regex>=2025.10.22"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "$spec"
done
du -sh .whl
