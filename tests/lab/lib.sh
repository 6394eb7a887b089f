# Shared settings for the lab scripts (sourced, not run).
# The cache lives outside the clone so that fresh CI clones on the same machine reuse it.
LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LAB_CACHE="${COFFERS_LAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/coffers-lab}"
LAB_RUN="${COFFERS_LAB_RUN:-$LAB_DIR/run}"  # per-clone state: overlays, pids, logs, key copy
# The image key changes whenever build-image (its package list, hooks, sizes) changes.
LAB_IMAGE_KEY="$(sha256sum "$LAB_DIR/build-image" | cut -c1-12)"
LAB_IMAGE="$LAB_CACHE/image-$LAB_IMAGE_KEY"

lab_log() { echo "lab: $*" >&2; }
lab_die() { echo "lab: error: $*" >&2; exit 1; }
