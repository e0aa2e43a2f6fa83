// The 16-row packed Q4_0/Q8_0 kernels: bit-identical to their scalar twin on
// every compiled target (random and extreme levels, odd column counts, 1 to
// 19 vectors, any group range), within the quantized-dot bound of the
// row-major scalar::MatMul (1e-6 * sum |w| |x_q8| per output, as in
// dot_test.cc), and MatMul with `packed` set gives the same numbers on 1 or
// 3 threads.
#include "kernels/packed_matrix.h"

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "common/thread_pool.h"
#include "gtest/gtest.h"
#include "kernels/matmul.h"
#include "kernels/test_util.h"

namespace st {
namespace {

using ::st::testing::ForEachTarget;
using ::st::testing::Gaussian;

struct Packed {
  std::vector<uint8_t> rows;    // row-major original
  std::vector<uint8_t> packed;  // 16-row layout
  MatrixRef ref;
};

// Random quantized rows; `extreme` overwrites the levels with random bytes
// (Q8_0: the whole int8 range including -128; Q4_0: every nibble).
Packed MakePacked(DType type, size_t rows, size_t cols, uint32_t seed, bool extreme) {
  Packed p;
  const size_t row_bytes = RowBytes(type, cols);
  p.rows.resize(rows * row_bytes);
  const std::vector<float> w = Gaussian(rows * cols, seed);
  for (size_t r = 0; r < rows; ++r) QuantizeRow(type, w.data() + r * cols, &p.rows[r * row_bytes], cols);
  if (extreme) {
    std::mt19937 rng(seed);
    const size_t block = type == DType::kQ4_0 ? sizeof(BlockQ4_0) : sizeof(BlockQ8_0);
    for (size_t off = 0; off < p.rows.size(); off += block) {
      for (size_t j = 2; j < block; ++j) p.rows[off + j] = static_cast<uint8_t>(rng());
    }
  }
  p.packed.resize(p.rows.size());
  PackRows(type, p.rows.data(), rows, cols, p.packed.data());
  p.ref = MatrixRef{type, p.rows.data(), rows, cols, p.packed.data()};
  return p;
}

TEST(PackedMatrixTest, SameBytesAsOriginal) {
  EXPECT_EQ(PackedGroupBytes(DType::kQ4_0, 1536), 16 * RowBytes(DType::kQ4_0, 1536));
  EXPECT_EQ(PackedGroupBytes(DType::kQ8_0, 64), 16 * RowBytes(DType::kQ8_0, 64));
  EXPECT_FALSE(CanPack(DType::kQ4_0, 17, 64));
  EXPECT_FALSE(CanPack(DType::kQ4_0, 16, 48));
  EXPECT_FALSE(CanPack(DType::kF16, 16, 64));
}

TEST(PackedMatrixTest, EqualsScalarTwinOnEveryTarget) {
  for (DType type : {DType::kQ4_0, DType::kQ8_0}) {
    for (size_t cols : {32, 64, 96, 1536, 1536 + 32}) {  // odd and even block counts
      for (bool extreme : {false, true}) {
        const size_t rows = 48;
        const Packed m = MakePacked(type, rows, cols, 11 + cols, extreme);
        for (size_t n_vecs : {1, 2, 5, 8, 19}) {
          SCOPED_TRACE(::testing::Message() << DTypeName(type) << " cols=" << cols
                                            << " vecs=" << n_vecs << " extreme=" << extreme);
          const std::vector<float> x = Gaussian(n_vecs * cols, 3 + n_vecs, 2.0f);
          Activations act;
          act.Prepare(x.data(), n_vecs, cols, true);
          std::vector<float> ref(n_vecs * rows, -1.0f);
          scalar::PackedMatMulGroups(type, m.packed.data(), cols, act, 0, rows / 16, ref.data(),
                                     rows);
          ForEachTarget([&] {
            std::vector<float> y(n_vecs * rows, -1.0f);
            // Two calls over a split group range must fill the same outputs.
            PackedMatMulGroups(type, m.packed.data(), cols, act, 0, 1, y.data(), rows);
            PackedMatMulGroups(type, m.packed.data(), cols, act, 1, rows / 16, y.data(), rows);
            for (size_t i = 0; i < y.size(); ++i) {
              ASSERT_EQ(std::memcmp(&y[i], &ref[i], sizeof(float)), 0)
                  << "output " << i << ": " << y[i] << " vs " << ref[i];
            }
            // A range of the vectors (its outputs from y[0]) gives those
            // vectors' outputs of the whole call, on this target and the
            // scalar twin.
            if (n_vecs < 3) return;
            const size_t v0 = 1, v1 = n_vecs - 1;  // neither end
            std::vector<float> part((v1 - v0) * rows, -1.0f), part_ref(part.size(), -2.0f);
            PackedMatMulGroups(type, m.packed.data(), cols, act, v0, v1, 0, rows / 16,
                               part.data(), rows);
            scalar::PackedMatMulGroups(type, m.packed.data(), cols, act, v0, v1, 0, rows / 16,
                                       part_ref.data(), rows);
            ASSERT_EQ(std::memcmp(part.data(), ref.data() + v0 * rows, part.size() * 4), 0);
            ASSERT_EQ(std::memcmp(part_ref.data(), ref.data() + v0 * rows, part.size() * 4), 0);
          });
        }
      }
    }
  }
}

TEST(PackedMatrixTest, WithinBoundOfRowMajorScalar) {
  for (DType type : {DType::kQ4_0, DType::kQ8_0}) {
    for (bool extreme : {false, true}) {
      const size_t rows = 64, cols = 768, n_vecs = 3;
      const Packed m = MakePacked(type, rows, cols, 5, extreme);
      const std::vector<float> x = Gaussian(n_vecs * cols, 9);
      Activations act;
      act.Prepare(x.data(), n_vecs, cols, true);
      std::vector<float> y(n_vecs * rows), ref(n_vecs * rows);
      scalar::PackedMatMulGroups(type, m.packed.data(), cols, act, 0, rows / 16, y.data(), rows);
      scalar::MatMul(MatrixRef{type, m.rows.data(), rows, cols}, act, ref.data());
      std::vector<float> w(cols), xq(cols);
      for (size_t v = 0; v < n_vecs; ++v) {
        DequantizeRow(DType::kQ8_0, act.q8(v), xq.data(), cols);
        for (size_t r = 0; r < rows; ++r) {
          DequantizeRow(type, &m.rows[r * RowBytes(type, cols)], w.data(), cols);
          double mag = 0;
          for (size_t j = 0; j < cols; ++j) mag += std::fabs(w[j] * xq[j]);
          EXPECT_NEAR(y[v * rows + r], ref[v * rows + r], 1e-6 * mag + 1e-30)
              << DTypeName(type) << " v=" << v << " r=" << r;
        }
      }
    }
  }
}

TEST(PackedMatrixTest, MatMulUsesPackedAndIgnoresThreadCount) {
  if (!CanPack(DType::kQ4_0, 16, 32)) GTEST_SKIP() << "no packed kernel on this CPU";
  ThreadPool pool(3);
  for (DType type : {DType::kQ4_0, DType::kQ8_0}) {
    const size_t rows = 16 * 37, cols = 1536, n_vecs = 4;
    const Packed m = MakePacked(type, rows, cols, 21, false);
    const std::vector<float> x = Gaussian(n_vecs * cols, 2);
    Activations act;
    act.Prepare(x.data(), n_vecs, cols, true);
    std::vector<float> y1(n_vecs * rows), y3(n_vecs * rows), ref(n_vecs * rows);
    MatMul(m.ref, act, y1.data(), nullptr);
    MatMul(m.ref, act, y3.data(), &pool);
    scalar::PackedMatMulGroups(type, m.packed.data(), cols, act, 0, rows / 16, ref.data(), rows);
    EXPECT_EQ(y1, ref) << DTypeName(type);
    EXPECT_EQ(y3, ref) << DTypeName(type);
    // One vector at a time gives each vector's batched numbers (batch invariance).
    for (size_t v = 0; v < n_vecs; ++v) {
      Activations one;
      one.Prepare(x.data() + v * cols, 1, cols, true);
      std::vector<float> y(rows);
      MatMul(m.ref, one, y.data(), &pool);
      EXPECT_EQ(0, std::memcmp(y.data(), &ref[v * rows], rows * sizeof(float))) << v;
    }
  }
}

}  // namespace
}  // namespace st
