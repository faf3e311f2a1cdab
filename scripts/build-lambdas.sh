#!/usr/bin/env bash
# Builds the deployable artifacts exactly as `sam build` does (cargo lambda,
# release, arm64 for provided.al2023) and checks each: a zip holding one
# `bootstrap` that is an aarch64 ELF executable.
set -euo pipefail
source "$(dirname "$0")/env.sh"
export PATH="$VENV/bin:$PATH"
OUT="$ROOT/target/lambda-arm64"
# A target dir of its own: a cross build also takes the lock of the host's
# target/release (its build scripts and proc macros live there), which would
# stall any x86_64 release build meanwhile (`make bench` builds the zips in
# the background while `cargo lambda watch --release` starts its functions).
export CARGO_TARGET_DIR="${LAMBDA_TARGET_DIR:-$ROOT/target/lambda-build}"

cargo lambda build --release --arm64 --output-format zip --lambda-dir "$OUT" \
  --bin producer --bin consumer

"$VENV/bin/python" - "$OUT" <<'PY'
import struct, sys, zipfile, pathlib
out = pathlib.Path(sys.argv[1])
for fn in ("producer", "consumer"):
    z = out / fn / "bootstrap.zip"
    with zipfile.ZipFile(z) as zf:
        names = zf.namelist()
        assert names == ["bootstrap"], f"{z}: expected only bootstrap, got {names}"
        info = zf.getinfo("bootstrap")
        mode = info.external_attr >> 16
        assert mode & 0o111, f"{z}: bootstrap is not executable"
        head = zf.open("bootstrap").read(20)
    assert head[:4] == b"\x7fELF", f"{z}: bootstrap is not an ELF file"
    machine = struct.unpack("<H", head[18:20])[0]
    assert machine == 183, f"{z}: bootstrap is not aarch64 (e_machine {machine})"
    print(f"{fn}: {z.stat().st_size} bytes zipped, aarch64 bootstrap OK")
PY
