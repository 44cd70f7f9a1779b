// Where tests find the source tree and the shared fixtures.
//
// CI clones the repository somewhere and puts shared/ beside the clone (`<clone>/../shared`), so
// fixtures live at `<workspace source dir>/../shared/fixtures`. A test finds the source dir by
// following one of its runfiles (a symlink under the processwrapper sandbox) back to the tree.
#pragma once

#include <string>

namespace tessera::testing {

// The workspace source directory (the clone), e.g. "/work/main". Found from the realpath of this
// library's own runfile "tests/testdata.cc"; falls back to $TESSERA_WORKSPACE_DIR when set, and to
// the current directory. Never empty.
std::string WorkspaceDir();

// `<WorkspaceDir()>/../shared/fixtures`, or $TESSERA_SHARED_FIXTURES_DIR when set.
std::string SharedFixturesDir();

}  // namespace tessera::testing
