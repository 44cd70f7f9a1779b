// tessera.v1.Inference over gRPC's callback API (STYLE.md 9): one reactor per streaming call owns
// its state, writes from OnWriteDone, turns OnCancel (client gone, deadline) into an abort in the
// engine, and deletes itself in OnDone.
#pragma once

#include "server/serving_state.h"
#include "tessera/v1/inference.grpc.pb.h"

namespace tessera::server {

struct InferenceServiceOptions {
  // Longest a Converse session may stay open with no input, in addition to the engine's TTL.
  absl::Duration session_idle_timeout = absl::Minutes(5);
};

class InferenceService final : public v1::Inference::CallbackService {
 public:
  InferenceService(ServingState* state, InferenceServiceOptions options = {})
      : state_(state), options_(options) {}

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const v1::GenerateRequest* request) override;
  grpc::ServerBidiReactor<v1::ConverseRequest, v1::ConverseResponse>* Converse(
      grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* context,
                                  const v1::AbortRequest* request,
                                  v1::AbortResponse* response) override;
  grpc::ServerUnaryReactor* CountTokens(grpc::CallbackServerContext* context,
                                        const v1::CountTokensRequest* request,
                                        v1::CountTokensResponse* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const v1::GetModelInfoRequest* request,
                                         v1::GetModelInfoResponse* response) override;

 private:
  ServingState* const state_;
  const InferenceServiceOptions options_;
};

// Copies engine events into a GenerateResponse (exposed for the Converse reactor and tests).
void AppendDelta(const scheduler::TokenDelta& delta, v1::GenerateResponse* out);
// The delta's token ids and logprobs, not its text.
void AppendTokens(const scheduler::TokenDelta& delta, v1::GenerateResponse* out);
void SetFinished(const scheduler::Completion& completion, v1::GenerateResponse* out);

}  // namespace tessera::server
