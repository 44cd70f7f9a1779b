#include "base/status_macros.h"

#include <memory>
#include <string>

#include "gtest/gtest.h"

namespace tessera {
namespace {

absl::StatusOr<std::unique_ptr<int>> MakeInt(int v) {
  if (v < 0) return absl::InvalidArgumentError("negative");
  return std::make_unique<int>(v);
}

absl::StatusOr<int> Doubled(int v) {
  TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<int> p, MakeInt(v));  // Move-only value.
  return *p * 2;
}

absl::Status Check(int v, int* out) {
  TESSERA_RETURN_IF_ERROR(MakeInt(v).status());
  TESSERA_ASSIGN_OR_RETURN(*out, Doubled(v));  // Assigns an existing lvalue.
  return absl::OkStatus();
}

TEST(StatusMacrosTest, AssignsOrReturnsTheError) {
  EXPECT_EQ(*Doubled(21), 42);
  EXPECT_EQ(Doubled(-1).status().message(), "negative");
  int out = 0;
  EXPECT_TRUE(Check(4, &out).ok());
  EXPECT_EQ(out, 8);
  out = 7;
  EXPECT_EQ(Check(-4, &out).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(out, 7);  // Untouched on error.
}

TEST(StatusMacrosTest, EvaluatesOnce) {
  int calls = 0;
  auto f = [&calls]() -> absl::StatusOr<int> { return ++calls; };
  auto g = [&]() -> absl::StatusOr<int> {
    TESSERA_ASSIGN_OR_RETURN(int a, f());
    TESSERA_ASSIGN_OR_RETURN(int b, f());  // Two on one function: distinct temporaries.
    return a * 10 + b;
  };
  EXPECT_EQ(*g(), 12);
  EXPECT_EQ(calls, 2);
}

}  // namespace
}  // namespace tessera
