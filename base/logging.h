// Minimal leveled logging to stderr, shared by every package (Debian's Abseil has no absl/log).
//
//   TESSERA_LOG(INFO) << "loaded " << n << " tensors";
//
// Lines are written whole under a mutex, prefixed with the level, UTC time and source location.
// TESSERA_CHECK is for broken invariants of our own code only, never for user input (STYLE.md 3).
#pragma once

#include <sstream>
#include <string>

namespace tessera {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3, kFatal = 4 };

// Messages below this level are dropped. Default kInfo; the server sets it from --log_level.
void SetMinLogLevel(LogLevel level);
LogLevel MinLogLevel();

namespace logging_internal {

class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();  // Writes the line; aborts for kFatal.
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};

// Swallows the stream expression when the level is filtered out.
struct Voidify {
  void operator&(std::ostream&) {}
};

}  // namespace logging_internal
}  // namespace tessera

#define TESSERA_LOG_LEVEL_DEBUG ::tessera::LogLevel::kDebug
#define TESSERA_LOG_LEVEL_INFO ::tessera::LogLevel::kInfo
#define TESSERA_LOG_LEVEL_WARNING ::tessera::LogLevel::kWarning
#define TESSERA_LOG_LEVEL_ERROR ::tessera::LogLevel::kError
#define TESSERA_LOG_LEVEL_FATAL ::tessera::LogLevel::kFatal

#define TESSERA_LOG(level)                                                                         \
  !(TESSERA_LOG_LEVEL_##level >= ::tessera::MinLogLevel())                                         \
      ? (void)0                                                                                    \
      : ::tessera::logging_internal::Voidify() &                                                   \
            ::tessera::logging_internal::LogMessage(TESSERA_LOG_LEVEL_##level, __FILE__, __LINE__) \
                .stream()

#define TESSERA_CHECK(cond)                                                                   \
  (cond) ? (void)0                                                                            \
         : ::tessera::logging_internal::Voidify() &                                           \
               ::tessera::logging_internal::LogMessage(::tessera::LogLevel::kFatal, __FILE__, \
                                                       __LINE__)                              \
                       .stream()                                                              \
                   << "check failed: " #cond " "
