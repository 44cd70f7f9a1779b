// Compiles structured-output specs (JSON Schema, any JSON object, regex, GBNF) for one vocabulary,
// caching compiled grammars by spec text in a bounded LRU. Thread-safe: concurrent requests for the
// same spec share one compilation.
//
//   GrammarCompiler compiler(vocabulary);                        // once, at startup
//   auto grammar = compiler.Compile(GrammarSpec::JsonSchema(s));  // per request (edge thread)
//   GrammarMatcher matcher(*grammar, {eos_id, end_of_turn_id});   // per sequence
//
// Errors are InvalidArgument naming the unsupported keyword / construct or the exceeded limit (the
// edge turns them into 400s).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "runtime/structured/automaton.h"
#include "runtime/structured/compiled_grammar.h"
#include "runtime/structured/json_schema.h"
#include "runtime/structured/stack_set.h"
#include "runtime/structured/vocabulary.h"

namespace tessera::runtime::structured {

struct GrammarSpec {
  enum class Kind {
    kJsonSchema,  // text: the schema (response_format json_schema, tool parameters)
    kJsonObject,  // any JSON object (response_format json_object); text unused
    kRegex,       // text: a regex the whole output matches
    kGbnf,        // text: a llama.cpp GBNF grammar
  };
  Kind kind = Kind::kJsonObject;
  std::string text;

  static GrammarSpec JsonSchema(std::string schema) {
    return {Kind::kJsonSchema, std::move(schema)};
  }
  static GrammarSpec JsonObject() { return {Kind::kJsonObject, ""}; }
  static GrammarSpec Regex(std::string pattern) { return {Kind::kRegex, std::move(pattern)}; }
  static GrammarSpec Gbnf(std::string grammar) { return {Kind::kGbnf, std::move(grammar)}; }
};

struct GrammarCompilerOptions {
  JsonGrammarOptions json;
  AutomatonLimits automaton;
  StepLimits steps;
  // Compiled grammars kept for reuse (most recently used first), by count and by approximate
  // memory; a grammar is evicted when either bound is exceeded.
  size_t cache_entries = 256;
  size_t cache_bytes = size_t{512} << 20;
  // Longest spec text accepted (bytes).
  size_t max_spec_bytes = size_t{1} << 20;
};

class GrammarCompiler {
 public:
  explicit GrammarCompiler(std::shared_ptr<const Vocabulary> vocabulary,
                           GrammarCompilerOptions options = {});

  absl::StatusOr<std::shared_ptr<const CompiledGrammar>> Compile(const GrammarSpec& spec);

  // A grammar built by the caller (e.g. the forced tool-call grammar of runtime/prompt), cached
  // under `key`, which must determine the grammar (e.g. the tools JSON and the tool_choice).
  // `build` runs only on a cache miss.
  absl::StatusOr<std::shared_ptr<const CompiledGrammar>> CompileCustom(
      const std::string& key, const std::function<absl::StatusOr<Grammar>()>& build);

  // Spec -> grammar IR only (no automaton, no tables): for validating specs cheaply.
  absl::StatusOr<Grammar> ToGrammar(const GrammarSpec& spec) const;

  struct CacheStats {
    int64_t hits = 0;
    int64_t misses = 0;
    size_t entries = 0;
    size_t bytes = 0;
  };
  CacheStats cache_stats() const;

  const Vocabulary& vocabulary() const { return *vocabulary_; }
  const std::shared_ptr<const Vocabulary>& shared_vocabulary() const { return vocabulary_; }

 private:
  using Result = absl::StatusOr<std::shared_ptr<const CompiledGrammar>>;
  struct Entry {
    std::string key;
    std::shared_ptr<const CompiledGrammar> grammar;
    size_t bytes;
  };

  Result CompileUncached(const GrammarSpec& spec) const;
  Result Cached(const std::string& key, const std::function<Result()>& compile);
  void Insert(const std::string& key, std::shared_ptr<const CompiledGrammar> grammar)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::shared_ptr<const Vocabulary> vocabulary_;
  const GrammarCompilerOptions options_;

  mutable absl::Mutex mu_;
  std::list<Entry> lru_ ABSL_GUARDED_BY(mu_);  // most recently used first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<std::string, std::shared_future<Result>> in_flight_ ABSL_GUARDED_BY(mu_);
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t hits_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t misses_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tessera::runtime::structured
