#!/bin/sh
# Build llama-server from a llama.cpp source archive, CPU only, for this host's CPU.
# usage: build-llama-server.sh ARCHIVE WORKDIR OUTPUT KEY JOBS [CMAKE_ARG...]
# Writes OUTPUT through a temp name and a rename, then WORKDIR/built-from = KEY.
set -eu
archive=$1 work=$2 out=$3 key=$4 jobs=$5
shift 5
src="$work/src"
rm -rf "$src" "$work/build"
mkdir -p "$src" "$(dirname "$out")"
tar -xf "$archive" -C "$src"
# the server's CMakeLists sits in tools/server (examples/server in older trees)
server=$(find "$src" -path '*/tools/server/CMakeLists.txt' | head -n 1)
[ -n "$server" ] || server=$(find "$src" -path '*/examples/server/CMakeLists.txt' | head -n 1)
if [ -z "$server" ]; then
  echo "build-llama-server: no tools/server/CMakeLists.txt in $archive: not a llama.cpp source tree" >&2
  exit 2
fi
top=${server%/*/server/CMakeLists.txt}
# no network at build or run time: no curl, no TLS, no prebuilt web UI download
echo "build-llama-server: configuring $top (log: $work/build.log)"
cmake -S "$top" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_USE_PREBUILT_UI=OFF -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF "$@" >"$work/build.log" 2>&1 || { tail -n 40 "$work/build.log" >&2; exit 1; }
echo "build-llama-server: building llama-server with $jobs jobs"
cmake --build "$work/build" --target llama-server -j "$jobs" >>"$work/build.log" 2>&1 || { tail -n 40 "$work/build.log" >&2; exit 1; }
install -m 0755 "$work/build/bin/llama-server" "$out.coffers-tmp"
mv -f "$out.coffers-tmp" "$out"
printf '%s\n' "$key" > "$work/built-from.tmp"
mv -f "$work/built-from.tmp" "$work/built-from"
