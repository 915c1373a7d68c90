#!/usr/bin/env bash
# Cuts both registry GGUFs into chunks under .stage/ (ignored by git) and copies the essay haystack there, so that
# each can travel to the lent GPU machine in a call of its own. A call carries at most 64 MiB including the tracked
# tree (about 40 MB on 2026-12-03), so the chunk size is what the tree leaves, less 2 MB (CHUNK=bytes overrides).
# Needs the model packages installed (scripts/setup.sh) and ../shared/data/niah.
set -euo pipefail
cd "$(dirname "$0")/../.."
files() {
    python3 -c "from retmask_interp.core.real_models import get_spec, package_files
print(' '.join(str(p) for p in package_files(get_spec('$1'))))"
}
tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
CHUNK=${CHUNK:-$(( (67108864 - tree - 2000000) / 1000000 * 1000000 ))}
echo "tracked tree $tree bytes: chunks of $CHUNK bytes"
mkdir -p .stage/sm .stage/gm .stage/essays
rm -f .stage/sm/part* .stage/gm/part*
# shellcheck disable=SC2046
cat $(files smollm2-135m-instruct) | split -b $CHUNK -d -a 2 - .stage/sm/part
# shellcheck disable=SC2046
cat $(files gemma-3-270m) | split -b $CHUNK -d -a 2 - .stage/gm/part
[ -d ../shared/data/niah/PaulGrahamEssays ] && cp -r ../shared/data/niah/PaulGrahamEssays .stage/essays/
ls -la .stage/sm .stage/gm
