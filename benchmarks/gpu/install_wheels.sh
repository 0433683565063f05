# Sourced by the GPU scripts: install our wheels from .whl/ (built beforehand; the GPU machine has
# no package index) into a temporary site directory put first on PYTHONPATH, and cd to the root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out="${OUT:-bench-results}"
mkdir -p "$out"
site=$(mktemp -d)
python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/ptycho_*.whl
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PATH="$site/bin:$PATH" PYTHONUNBUFFERED=1
