"""@llama_cpp_prebuilt: llama.cpp's prebuilt Linux x86-64 libraries from node-llama-cpp's npm package.

node_modules is in .bazelignore (tens of thousands of files no target needs), so a glob in
third_party/node cannot see them; this repository rule symlinks just the library folder
(third_party/node/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64) into an external
repository with one filegroup, `@llama_cpp_prebuilt//:libs`. Without node_modules (npm ci not run)
the filegroup is empty and the tests that dlopen these libraries skip, saying so.
"""

_LIB_DIR = "third_party/node/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64"

def _llama_cpp_prebuilt_impl(rctx):
    workspace = rctx.path(Label("//:WORKSPACE")).dirname
    src = rctx.path("%s/%s" % (workspace, _LIB_DIR))
    names = []
    if src.exists:
        for f in src.readdir():
            if f.basename.endswith(".so") or f.basename.endswith(".json"):
                rctx.symlink(f, f.basename)
                names.append(f.basename)
    rctx.file("BUILD", "\n".join([
        "package(default_visibility = [\"//visibility:public\"])",
        "filegroup(",
        "    name = \"libs\",",
        "    srcs = %s," % repr(sorted(names)),
        ")",
        "",
    ]))

llama_cpp_prebuilt = repository_rule(
    implementation = _llama_cpp_prebuilt_impl,
    # Re-read on every server start: `npm ci` may have run since.
    local = True,
)
