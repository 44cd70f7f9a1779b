#!/usr/bin/env bash
# Lists what the Tessera binary needs at run time, for the runtime stage of deploy/Dockerfile:
#   runtime_deps.sh BINARY OUT_DIR
# writes OUT_DIR/runtime-packages.txt (the Debian packages owning each shared library the binary
# loads) and copies libraries that no package owns (e.g. a CUDA toolkit installed from NVIDIA's
# runfile rather than apt) into OUT_DIR/lib. The NVIDIA driver library (libcuda.so.1) is skipped:
# the NVIDIA container runtime mounts the host's. Fails if a library is not found.
set -euo pipefail
binary=$1
out=$2
mkdir -p "$out/lib"
libs=$(ldd "$binary")  # Fails the script for a missing or static binary.

names=()
paths=()
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
  names+=("$name")
  paths+=("$path")
done < <(awk '/=>/ {print $1, $3}' <<< "$libs")

# dpkg records the path a package shipped; with merged /usr the loader may report the other spelling,
# or a symlink. Ask about every spelling of every library in one dpkg-query call (one per library
# takes a minute).
declare -A owner=()
candidates=()
for p in "${paths[@]}"; do
  candidates+=("$p" "$(readlink -f "$p")" "${p#/usr}" "/usr$p")
done
while IFS= read -r line; do
  pkgs=${line%%: /*}
  file=${line#*: }
  owner[$file]=${pkgs%%,*}
done < <(dpkg-query -S "${candidates[@]}" 2>/dev/null || true)

packages=()
for i in "${!paths[@]}"; do
  p=${paths[$i]}
  pkg=""
  for c in "$p" "$(readlink -f "$p")" "${p#/usr}" "/usr$p"; do
    if [ -n "${owner[$c]:-}" ]; then pkg=${owner[$c]}; break; fi
  done
  if [ -n "$pkg" ]; then
    packages+=("${pkg%%:*}")  # Drop the architecture qualifier (libfoo:amd64).
  else
    cp -L "$p" "$out/lib/${names[$i]}"
  fi
done
printf '%s\n' "${packages[@]}" | sort -u > "$out/runtime-packages.txt"
exit $missing
