// Where tests find their data: the fixtures in testdata/ and other files they list as Bazel `data`
// (read through the test's runfiles), and the source tree (for node_modules, which Bazel does not
// track).
#pragma once

#include <string>

namespace tessera::testing {

// The path of a workspace-relative file that the test lists in its `data` (directly or through a
// filegroup), e.g. RunfilePath("testdata/gemma4-tiny/config.json"). Resolved under $TEST_SRCDIR (or
// $RUNFILES_DIR) as `tessera/<path>`, whether or not it is there (a file missing from `data` fails
// the test naming this path); outside Bazel, relative to WorkspaceDir().
std::string RunfilePath(const std::string& workspace_relative);

// RunfilePath("testdata"): the reference fixtures (testdata/README.md). A test reads only what its
// `data` names, e.g. "//testdata:gemma4_tiny".
std::string FixturesDir();

// The workspace source directory (the clone), e.g. "/work/main". Found from the realpath of this
// library's own runfile "testdata/testdata.cc"; falls back to $TESSERA_WORKSPACE_DIR when set, and
// to the current directory. Never empty. Only for what Bazel does not track (node_modules).
std::string WorkspaceDir();

}  // namespace tessera::testing
