#include "runtime/structured/grammar_compiler.h"

#include "absl/strings/str_cat.h"
#include "runtime/structured/gbnf_parser.h"
#include "runtime/structured/regex_parser.h"

namespace tessera::runtime::structured {

GrammarCompiler::GrammarCompiler(std::shared_ptr<const Vocabulary> vocabulary,
                                 GrammarCompilerOptions options)
    : vocabulary_(std::move(vocabulary)), options_(std::move(options)) {}

absl::StatusOr<Grammar> GrammarCompiler::ToGrammar(const GrammarSpec& spec) const {
  if (spec.text.size() > options_.max_spec_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "grammar spec is ", spec.text.size(), " bytes; the limit is ", options_.max_spec_bytes));
  }
  switch (spec.kind) {
    case GrammarSpec::Kind::kJsonSchema:
      return JsonSchemaToGrammar(spec.text, options_.json);
    case GrammarSpec::Kind::kJsonObject:
      return AnyJsonObjectGrammar(options_.json);
    case GrammarSpec::Kind::kRegex:
      return RegexToGrammar(spec.text);
    case GrammarSpec::Kind::kGbnf:
      return ParseGbnf(spec.text, vocabulary_.get());
  }
  return absl::InvalidArgumentError("unknown grammar kind");
}

GrammarCompiler::Result GrammarCompiler::CompileUncached(const GrammarSpec& spec) const {
  auto grammar = ToGrammar(spec);
  if (!grammar.ok()) return grammar.status();
  return CompiledGrammar::Create(*grammar, vocabulary_, options_.automaton, options_.steps);
}

absl::StatusOr<std::shared_ptr<const CompiledGrammar>> GrammarCompiler::Compile(
    const GrammarSpec& spec) {
  return Cached(absl::StrCat(static_cast<int>(spec.kind), ":", spec.text),
                [&] { return CompileUncached(spec); });
}

absl::StatusOr<std::shared_ptr<const CompiledGrammar>> GrammarCompiler::CompileCustom(
    const std::string& key, const std::function<absl::StatusOr<Grammar>()>& build) {
  return Cached(absl::StrCat("custom:", key), [&]() -> Result {
    auto grammar = build();
    if (!grammar.ok()) return grammar.status();
    return CompiledGrammar::Create(*grammar, vocabulary_, options_.automaton, options_.steps);
  });
}

GrammarCompiler::Result GrammarCompiler::Cached(const std::string& key,
                                                const std::function<Result()>& compile) {
  std::promise<Result> promise;
  std::shared_future<Result> pending;  // another thread is compiling the same spec
  {
    absl::MutexLock lock(&mu_);
    if (auto it = index_.find(key); it != index_.end()) {
      ++hits_;
      lru_.splice(lru_.begin(), lru_, it->second);
      return it->second->grammar;
    }
    if (auto it = in_flight_.find(key); it != in_flight_.end()) {
      ++hits_;
      pending = it->second;
    } else {
      ++misses_;
      in_flight_.emplace(key, promise.get_future().share());
    }
  }
  if (pending.valid()) return pending.get();
  Result result = compile();
  {
    absl::MutexLock lock(&mu_);
    if (result.ok()) Insert(key, *result);
    in_flight_.erase(key);
  }
  promise.set_value(result);
  return result;
}

void GrammarCompiler::Insert(const std::string& key,
                             std::shared_ptr<const CompiledGrammar> grammar) {
  const size_t bytes = grammar->stats().memory_bytes + key.size();
  lru_.push_front({key, std::move(grammar), bytes});
  index_[key] = lru_.begin();
  bytes_ += bytes;
  while (!lru_.empty() && (lru_.size() > options_.cache_entries || bytes_ > options_.cache_bytes)) {
    const Entry& last = lru_.back();
    bytes_ -= last.bytes;
    index_.erase(last.key);
    lru_.pop_back();
  }
}

GrammarCompiler::CacheStats GrammarCompiler::cache_stats() const {
  absl::MutexLock lock(&mu_);
  return {hits_, misses_, lru_.size(), bytes_};
}

}  // namespace tessera::runtime::structured
