// Q6_K against ggml's own dequantize_row_q6_K: one super-block that ggml's
// quantize_row_q6_K_ref made from Gaussian weights with outliers, and the
// 256 floats ggml's dequantizer gives for it (libggml-base.so of
// node-llama-cpp 3.21.1, the llama.cpp that scripts/check-llamacpp-parity
// runs). Bit for bit, as the LM head of a llama.cpp Q4_0 file must read.
#include "kernels/ggml_storage.h"

#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace st {
namespace {

constexpr char kBlockHex[] =
    "d12dc20a100a839114ff815f9e40dd1f869f16906fa96e380675b3303d9693d3f80003051702fc0f"
    "e7f7f50a2d1c160f49a1c90c08ffb891fe4bc3efa001ede3c9c204c22905c12e145bf3f0ea062613"
    "408dfdc6edd5ffdfe3101d063a10bbefd431b0c833c70ee962238ed1be69115e20859072040b4266"
    "574311289d71f76c68119ea996815a8e46696a95b5a689919d7946185912b5beb6c668a6e9919c5a"
    "5c9a495e616a1023a76d951252ae6e6023989d9ba69366689a8dd9eba65c4a4ace090af8090a80f6"
    "f709f80ad609f70bd99f";
constexpr float kGgml[256] = {
    -11.8787766f, -1.14955902f, 0.766372681f, -2.29911804f, 0.0f, -2.29911804f,
    1.14955902f, 0.38318634f, 1.53274536f, -0.38318634f, 0.38318634f, -0.38318634f,
    -0.766372681f, 0.0f, -1.14955902f, -0.38318634f, 0.689735413f, 0.0689735413f,
    -0.413841248f, 2.20715332f, 0.0689735413f, -0.620761871f, 0.137947083f, -0.55178833f,
    -0.413841248f, -0.344867706f, 2.0002327f, -0.0f, 0.206920624f, 0.689735413f,
    2.0002327f, -0.206920624f, -0.613098145f, 2.45239258f, -1.45610809f, -0.38318634f,
    0.689735413f, 2.29911804f, -0.919647217f, -2.37575531f, 0.689735413f, -0.536460876f,
    -0.38318634f, 0.459823608f, 0.229911804f, 0.306549072f, -0.459823608f, 1.30283356f,
    1.53274536f, 0.0613098145f, -0.429168701f, 0.735717773f, 0.490478516f, -1.04226685f,
    -0.490478516f, 1.04226685f, -0.122619629f, -0.306549072f, 0.183929443f, -0.0613098145f,
    0.0f, -1.90060425f, 1.77798462f, 0.183929443f, -0.896656036f, 0.965629578f,
    0.275894165f, -0.0f, 1.03460312f, 2.20715332f, 0.55178833f, 1.58639145f,
    2.13817978f, -1.03460312f, -0.55178833f, 0.758708954f, -1.72433853f, -0.275894165f,
    1.31049728f, 1.03460312f, 0.613098145f, -1.9159317f, 2.37575531f, 0.536460876f,
    0.766372681f, 0.459823608f, -1.6860199f, -1.45610809f, -1.22619629f, 1.9159317f,
    -0.843009949f, -0.229911804f, -0.229911804f, 0.536460876f, 0.536460876f, 0.229911804f,
    -0.980957031f, -31.390625f, 0.0f, 0.0f, 0.980957031f, 0.0f,
    -0.980957031f, 0.0f, -1.96191406f, -0.980957031f, -0.980957031f, 0.0f,
    1.96191406f, 0.980957031f, 0.980957031f, 0.0f, 0.306549072f, -0.459823608f,
    -0.306549072f, -2.45239258f, -1.22619629f, -1.30283356f, 0.843009949f, 0.689735413f,
    1.14955902f, 1.53274536f, -0.306549072f, 1.07292175f, 1.99256897f, 0.0f,
    1.07292175f, -0.153274536f, -1.58639145f, 0.137947083f, -0.827682495f, 0.137947083f,
    -0.482814789f, 0.344867706f, -2.13817978f, 2.06920624f, 1.37947083f, -0.344867706f,
    -0.896656036f, 0.0f, 0.689735413f, 0.413841248f, 0.413841248f, -2.0002327f,
    -1.10357666f, 1.31049728f, 0.206920624f, -1.51741791f, -0.896656036f, -1.44844437f,
    -1.03460312f, 1.1725502f, -0.206920624f, 1.10357666f, 0.206920624f, -1.51741791f,
    -0.689735413f, 2.20715332f, -0.758708954f, -1.03460312f, 1.22619629f, 0.0613098145f,
    0.0f, 1.47143555f, -1.77798462f, 0.429168701f, -1.10357666f, -1.41012573f,
    -0.858337402f, 1.16488647f, -0.122619629f, -1.90060425f, -1.10357666f, 1.53274536f,
    1.04226685f, -1.10357666f, 2.45239258f, -0.38318634f, -1.22619629f, -0.153274536f,
    0.919647217f, 1.60938263f, 1.07292175f, -0.459823608f, -0.536460876f, -1.45610809f,
    -0.0766372681f, -0.613098145f, 0.229911804f, -1.30283356f, -0.536460876f, -0.919647217f,
    -1.2875061f, -1.2875061f, -10.3000488f, -1.2875061f, 0.643753052f, 0.0f,
    -1.2875061f, 0.643753052f, 0.321876526f, 1.60938263f, -0.321876526f, -0.321876526f,
    -0.643753052f, 0.0f, 0.643753052f, 0.321876526f, -0.275894165f, 0.55178833f,
    0.0689735413f, 0.275894165f, -0.965629578f, 0.206920624f, -1.03460312f, -0.896656036f,
    0.137947083f, 2.13817978f, 1.03460312f, -0.0f, -0.206920624f, 1.03460312f,
    1.44844437f, 1.24152374f, -0.206920624f, 0.206920624f, -0.344867706f, -0.275894165f,
    -0.896656036f, -0.275894165f, -2.20715332f, -1.24152374f, 0.413841248f, -0.965629578f,
    0.55178833f, -1.31049728f, -0.344867706f, 0.413841248f, -1.03460312f, -0.758708954f,
    2.52902985f, -0.674407959f, -0.758708954f, -0.590106964f, -0.0f, -0.0f,
    1.01161194f, 0.843009949f, -0.421504974f, -0.337203979f, -1.43311691f, -1.51741791f,
    -0.758708954f, 0.758708954f, 0.0843009949f, 0.843009949f,
};

std::vector<uint8_t> FromHex(const std::string& hex) {
  std::vector<uint8_t> out(hex.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) out[i] = std::stoi(hex.substr(2 * i, 2), nullptr, 16);
  return out;
}

TEST(GgmlStorageTest, Q6_KEqualsGgmlsDequantizer) {
  const std::vector<uint8_t> block = FromHex(kBlockHex);
  ASSERT_EQ(block.size(), kQ6_KBlockBytes);
  std::vector<float> got(256);
  DequantizeQ6_K(block.data(), got.data(), 256);
  for (size_t i = 0; i < 256; ++i) {
    EXPECT_EQ(std::memcmp(&got[i], &kGgml[i], sizeof(float)), 0)
        << "weight " << i << ": " << got[i] << " against ggml's " << kGgml[i];
  }
}

TEST(GgmlStorageTest, Q6_KBlocksAreIndependentAndLaidOutInOrder) {
  // Two blocks: the second a copy of the first with d doubled gives every
  // weight doubled, in the second 256 slots.
  std::vector<uint8_t> two = FromHex(kBlockHex);
  two.resize(2 * kQ6_KBlockBytes);
  std::memcpy(two.data() + kQ6_KBlockBytes, two.data(), kQ6_KBlockBytes);
  uint16_t d;
  std::memcpy(&d, two.data() + kQ6_KBlockBytes + 208, 2);
  d += 0x0400;  // f16 exponent + 1: twice the value
  std::memcpy(two.data() + kQ6_KBlockBytes + 208, &d, 2);
  std::vector<float> got(512);
  DequantizeQ6_K(two.data(), got.data(), 512);
  for (size_t i = 0; i < 256; ++i) {
    EXPECT_EQ(got[i], kGgml[i]);
    EXPECT_EQ(got[256 + i], 2 * kGgml[i]);
  }
}

#include "kernels/testdata/ggml_vectors.inc"

struct Vectors {
  uint32_t ggml_type;
  const char* blocks_hex;
  const uint32_t* floats;  // bit patterns
  size_t n;
};

class GgmlFormatTest : public testing::TestWithParam<Vectors> {};

// Every format against ggml's dequantize_row_* of two blocks ggml's own
// quantize_row_*_ref made (kernels/testdata/make_ggml_vectors.py), bit for
// bit: what a converted tensor holds is exactly what llama.cpp computes with
// before the engine's one Q8_0 rounding.
TEST_P(GgmlFormatTest, EqualsGgmlsDequantizer) {
  const Vectors& v = GetParam();
  const StorageFormat* f = FindStorageFormat(v.ggml_type);
  ASSERT_NE(f, nullptr);
  const std::vector<uint8_t> blocks = FromHex(v.blocks_hex);
  ASSERT_EQ(blocks.size(), v.n / f->block_elems * f->block_bytes) << f->name;
  std::vector<float> got(v.n);
  f->dequantize(blocks.data(), got.data(), v.n);
  for (size_t i = 0; i < v.n; ++i) {
    float want;
    std::memcpy(&want, &v.floats[i], sizeof(want));
    ASSERT_EQ(std::memcmp(&got[i], &want, sizeof(float)), 0)
        << f->name << " weight " << i << ": " << got[i] << " against ggml's " << want;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Formats, GgmlFormatTest,
    testing::Values(Vectors{kGgmlQ4_1, kQ4_1Blocks, kQ4_1Floats, 64},
                    Vectors{kGgmlQ5_0, kQ5_0Blocks, kQ5_0Floats, 64},
                    Vectors{kGgmlQ5_1, kQ5_1Blocks, kQ5_1Floats, 64},
                    Vectors{kGgmlQ2_K, kQ2_KBlocks, kQ2_KFloats, 512},
                    Vectors{kGgmlQ3_K, kQ3_KBlocks, kQ3_KFloats, 512},
                    Vectors{kGgmlQ4_K, kQ4_KBlocks, kQ4_KFloats, 512},
                    Vectors{kGgmlQ5_K, kQ5_KBlocks, kQ5_KFloats, 512}),
    [](const testing::TestParamInfo<Vectors>& i) {
      return std::string(FindStorageFormat(i.param.ggml_type)->name);
    });

TEST(GgmlStorageTest, OnlyStorageTypesHaveAFormat) {
  const StorageFormat* q6 = FindStorageFormat(kGgmlQ6_K);
  ASSERT_NE(q6, nullptr);
  EXPECT_STREQ(q6->name, "Q6_K");
  EXPECT_EQ(q6->block_elems, 256u);
  EXPECT_EQ(q6->block_bytes, 210u);
  for (uint32_t computed : {0u, 1u, 2u, 8u, 30u}) EXPECT_EQ(FindStorageFormat(computed), nullptr);
  for (uint32_t unread : {4u, 5u, 9u, 15u, 16u, 19u, 20u, 99u}) {  // Q4_2/3, Q8_1, Q8_K, IQ*
    EXPECT_EQ(FindStorageFormat(unread), nullptr) << unread;
  }
}

}  // namespace
}  // namespace st
