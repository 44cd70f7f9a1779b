// The generated API code compiles, links and round-trips a fully populated GenerateRequest.
#include <string>

#include "gtest/gtest.h"
#include "tessera/v1/inference.grpc.pb.h"
#include "tessera/v1/inference.pb.h"

namespace tessera::v1 {
namespace {

GenerateRequest MakeRequest() {
  GenerateRequest req;
  Message* sys = req.add_messages();
  sys->set_role("system");
  sys->add_parts()->set_text("Be brief.");
  Message* user = req.add_messages();
  user->set_role("user");
  user->add_parts()->set_text("What is in this picture and this clip?");
  Image* img = user->add_parts()->mutable_image();
  img->set_raw_rgb(std::string(48 * 96 * 3, '\x7f'));
  img->set_width(96);
  img->set_height(48);
  img->set_max_soft_tokens(70);
  PcmSamples* pcm = user->add_parts()->mutable_audio()->mutable_pcm();
  pcm->set_sample_rate(16000);
  for (int i = 0; i < 640; ++i) pcm->add_samples(0.001f * i);
  VideoFrame* frame = user->add_parts()->mutable_video()->add_frames();
  frame->set_timestamp_ms(1500);
  frame->mutable_image()->set_encoded("\x89PNG");
  frame->mutable_image()->set_mime_type("image/png");
  SamplingParams* s = req.mutable_sampling();
  s->set_temperature(0.7f);
  s->set_top_k(40);
  s->set_top_p(0.9f);
  s->set_min_p(0.05f);
  s->set_repetition_penalty(1.1f);
  s->set_presence_penalty(0.5f);
  s->set_frequency_penalty(0.25f);
  s->set_seed(1234);
  req.mutable_stopping()->set_max_tokens(64);
  req.mutable_stopping()->set_min_tokens(2);
  req.mutable_stopping()->add_stop("\n\n");
  req.mutable_stopping()->add_stop_token_ids(106);
  req.mutable_logprobs()->set_enabled(true);
  req.mutable_logprobs()->set_top_logprobs(5);
  req.set_priority(-3);
  req.set_cache_salt("tenant-a");
  req.set_request_id("req-1");
  return req;
}

TEST(InferenceProtoTest, GenerateRequestRoundTripsThroughTheWireFormat) {
  const GenerateRequest req = MakeRequest();
  std::string wire;
  ASSERT_TRUE(req.SerializeToString(&wire));
  GenerateRequest back;
  ASSERT_TRUE(back.ParseFromString(wire));
  EXPECT_EQ(back.SerializeAsString(), wire);
  ASSERT_EQ(back.messages_size(), 2);
  EXPECT_EQ(back.messages(1).parts_size(), 4);
  EXPECT_EQ(back.messages(1).parts(1).image().width(), 96u);
  EXPECT_EQ(back.messages(1).parts(1).image().raw_rgb().size(), 48u * 96 * 3);
  EXPECT_EQ(back.messages(1).parts(2).audio().pcm().samples_size(), 640);
  EXPECT_FLOAT_EQ(back.messages(1).parts(2).audio().pcm().samples(639), 0.639f);
  EXPECT_EQ(back.messages(1).parts(3).video().frames(0).timestamp_ms(), 1500u);
  EXPECT_TRUE(back.sampling().has_seed());
  EXPECT_EQ(back.sampling().seed(), 1234u);
  EXPECT_FLOAT_EQ(back.sampling().top_p(), 0.9f);
  EXPECT_EQ(back.stopping().stop(0), "\n\n");
  EXPECT_EQ(back.logprobs().top_logprobs(), 5u);
  EXPECT_EQ(back.priority(), -3);
  EXPECT_EQ(back.cache_salt(), "tenant-a");
}

TEST(InferenceProtoTest, UnsetOptionalFieldsAreDistinguishableFromZero) {
  GenerateRequest req;
  req.mutable_sampling()->set_temperature(0.0f);
  GenerateRequest back;
  ASSERT_TRUE(back.ParseFromString(req.SerializeAsString()));
  EXPECT_TRUE(back.sampling().has_temperature());
  EXPECT_FALSE(back.sampling().has_top_p());
  EXPECT_FALSE(back.sampling().has_seed());
}

TEST(InferenceProtoTest, ServiceDescriptorHasTheWholeContract) {
  const auto* service = Inference::service_full_name();
  EXPECT_STREQ(service, "tessera.v1.Inference");
  const auto* desc = GenerateRequest::descriptor()->file()->FindServiceByName("Inference");
  ASSERT_NE(desc, nullptr);
  for (const char* rpc : {"Generate", "Converse", "Abort", "CountTokens", "GetModelInfo"}) {
    EXPECT_NE(desc->FindMethodByName(rpc), nullptr) << rpc;
  }
  EXPECT_TRUE(desc->FindMethodByName("Generate")->server_streaming());
  EXPECT_TRUE(desc->FindMethodByName("Converse")->client_streaming());
  EXPECT_TRUE(desc->FindMethodByName("Converse")->server_streaming());
}

}  // namespace
}  // namespace tessera::v1
