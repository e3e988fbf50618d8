#!/usr/bin/env bash
# Builds what tools/gpu/validate.sh runs on a GPU machine that has no Rust: the `protokd` binary
# and the protokd-gpu test binaries, stripped, copied into BIN_DIR (keep it git-ignored).
#
#   tools/gpu/bundle.sh BIN_DIR
set -euo pipefail
BIN=$1
mkdir -p "$BIN"
cargo build --release --bin protokd
cp target/release/protokd "$BIN/"
cargo test --release -p protokd-gpu --no-run --message-format=json 2>/dev/null | python3 -c '
import json, shutil, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        shutil.copy(m["executable"], sys.argv[1] + "/" + m["target"]["name"])
' "$BIN"
strip "$BIN"/*
ls -la "$BIN"
