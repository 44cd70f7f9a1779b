#!/usr/bin/env bash
# Lists what the Tessera binary needs at run time, for the runtime stage of deploy/Dockerfile:
#   runtime_deps.sh BINARY OUT_DIR
# writes OUT_DIR/runtime-packages.txt (the Debian packages owning each shared library the binary
# loads) and copies libraries that no package owns (the CUDA toolkit's, e.g. libcublasLt) into
# OUT_DIR/lib. The NVIDIA driver library (libcuda.so.1) is not copied: the NVIDIA container runtime
# mounts the host's. Fails if a library is neither owned by a package nor found.
set -euo pipefail
binary=$1
out=$2
mkdir -p "$out/lib"
libs=$(ldd "$binary")  # Fails the script for a missing or static binary.
: > "$out/runtime-packages.txt.tmp"
missing=0
while read -r name path; do
  case "$name" in
    libcuda.so.*|libnvidia-*) continue ;;  # Driver: provided by the host at run time.
  esac
  if [ -z "$path" ] || [ "$path" = "not" ]; then
    echo "runtime_deps: $name not found" >&2
    missing=1
    continue
  fi
  pkg=""
  # dpkg records the path the package shipped; with merged /usr the loader may report the other one.
  for candidate in "$path" "$(readlink -f "$path")" "${path#/usr}" "/usr$path"; do
    pkg=$(dpkg-query -S "$candidate" 2>/dev/null | head -n1 | cut -d: -f1) || true
    [ -n "$pkg" ] && break
  done
  if [ -n "$pkg" ]; then
    echo "$pkg" >> "$out/runtime-packages.txt.tmp"
  else
    cp -L "$path" "$out/lib/$name"
  fi
done < <(awk '/=>/ {print $1, $3}' <<< "$libs")
sort -u "$out/runtime-packages.txt.tmp" > "$out/runtime-packages.txt"
rm "$out/runtime-packages.txt.tmp"
exit $missing
