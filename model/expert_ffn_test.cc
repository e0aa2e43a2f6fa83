// Sparse ReGLU equals the dense computation bit for bit, and both equal a
// float64 reference within quantization error.
#include "model/expert_ffn.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/quant.h"
#include "kernels/test_util.h"

namespace st {
namespace {

struct Expert {
  DType type;
  int d_model, d_expert;
  std::vector<uint8_t> gate, up, down;  // down is [d_expert, d_model] if transposed
  std::vector<float> gate_f, up_f, down_f;  // dequantized, same layouts
  bool transposed;

  Expert(DType t, int dm, int de, bool tr, uint32_t seed) : type(t), d_model(dm), d_expert(de), transposed(tr) {
    auto make = [&](int rows, int cols, uint32_t s, std::vector<uint8_t>& q, std::vector<float>& f) {
      std::vector<float> w = st::testing::Gaussian(static_cast<size_t>(rows) * cols, s, 1.0f / std::sqrt(cols));
      const size_t rb = RowBytes(t, cols);
      q.resize(rb * rows);
      f.resize(w.size());
      for (int r = 0; r < rows; ++r) {
        QuantizeRow(t, &w[static_cast<size_t>(r) * cols], q.data() + r * rb, cols);
        DequantizeRow(t, q.data() + r * rb, &f[static_cast<size_t>(r) * cols], cols);
      }
    };
    make(de, dm, seed, gate, gate_f);
    make(de, dm, seed + 1, up, up_f);
    if (tr) make(de, dm, seed + 2, down, down_f);
    else make(dm, de, seed + 2, down, down_f);
  }
  ExpertMatrices Matrices() const {
    ExpertMatrices m;
    m.gate = {type, gate.data(), size_t(d_expert), size_t(d_model)};
    m.up = {type, up.data(), size_t(d_expert), size_t(d_model)};
    m.down = transposed ? MatrixRef{type, down.data(), size_t(d_expert), size_t(d_model)}
                        : MatrixRef{type, down.data(), size_t(d_model), size_t(d_expert)};
    m.down_transposed = transposed;
    return m;
  }
  // float64 over the dequantized weights and unquantized activations.
  std::vector<double> Reference(const float* x) const {
    std::vector<double> z(d_expert), y(d_model, 0.0);
    for (int f = 0; f < d_expert; ++f) {
      double g = 0, u = 0;
      for (int c = 0; c < d_model; ++c) {
        g += double(gate_f[size_t(f) * d_model + c]) * x[c];
        u += double(up_f[size_t(f) * d_model + c]) * x[c];
      }
      z[f] = g > 0 ? g * u : 0.0;
    }
    for (int c = 0; c < d_model; ++c) {
      for (int f = 0; f < d_expert; ++f) {
        const double w = transposed ? down_f[size_t(f) * d_model + c] : down_f[size_t(c) * d_expert + f];
        y[c] += w * z[f];
      }
    }
    return y;
  }
};

class ExpertFfnTest : public ::testing::TestWithParam<std::tuple<DType, bool>> {};

TEST_P(ExpertFfnTest, SparseEqualsDenseAndReference) {
  const auto [type, transposed] = GetParam();
  const int dm = 96, de = 160;  // odd multiples of the block size
  Expert e(type, dm, de, transposed, 11);
  ThreadPool pool(3);
  for (int n : {1, 2, 3, 8}) {  // 2, 3: union of active rows; 8: nearly all rows, dense up
    SCOPED_TRACE(n);
    const std::vector<float> x = st::testing::Gaussian(size_t(n) * dm, 5 + n);
    std::vector<float> sparse(size_t(n) * dm), dense(size_t(n) * dm), single(size_t(n) * dm);
    FfnSparsity stats;
    ExpertFfn(e.Matrices(), x.data(), n, sparse.data(), &pool, &stats, /*sparse=*/true);
    ExpertFfn(e.Matrices(), x.data(), n, dense.data(), &pool, nullptr, /*sparse=*/false);
    ExpertFfn(e.Matrices(), x.data(), n, single.data(), nullptr, nullptr, /*sparse=*/true);
    EXPECT_EQ(sparse, dense);
    EXPECT_EQ(sparse, single);  // thread count never changes results
    // ReGLU on Gaussian inputs: about half the neurons are active.
    EXPECT_EQ(stats.total_rows, uint64_t(n) * de);
    EXPECT_GT(stats.active_fraction(), 0.3);
    EXPECT_LT(stats.active_fraction(), 0.7);
    // Rows read: a transposed down only where active; up only where active
    // for a single token (several: the union, or all once nearly all are).
    const uint64_t down_read = transposed ? stats.active_rows : stats.total_rows;
    if (n == 1) {
      EXPECT_EQ(stats.read_rows, stats.active_rows + down_read);
    } else if (n == 8) {
      EXPECT_EQ(stats.read_rows, stats.total_rows + down_read);
    }
    EXPECT_GE(stats.read_rows, stats.active_rows + down_read);
    EXPECT_LE(stats.read_rows, stats.total_rows + down_read);
    // Quantized weights also quantize activations (Q8_0): compare loosely.
    const double tol = IsBlockQuantized(type) ? 0.08 : 1e-4;
    for (int i = 0; i < n; ++i) {
      const std::vector<double> ref = e.Reference(&x[size_t(i) * dm]);
      double scale = 0;
      for (double v : ref) scale = std::max(scale, std::abs(v));
      for (int c = 0; c < dm; ++c) {
        ASSERT_NEAR(sparse[size_t(i) * dm + c], ref[c], tol * scale) << "token " << i << " col " << c;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Types, ExpertFfnTest,
                         ::testing::Combine(::testing::Values(DType::kF32, DType::kF16, DType::kBF16,
                                                              DType::kQ8_0, DType::kQ4_0),
                                            ::testing::Bool()));

TEST(ExpertFfnTest, SparseEqualsDenseOnEveryTarget) {
  Expert e(DType::kQ4_0, 128, 96, true, 3);
  const std::vector<float> x = st::testing::Gaussian(128, 9);
  st::testing::ForEachTarget([&] {
    std::vector<float> sparse(128), dense(128);
    ExpertFfn(e.Matrices(), x.data(), 1, sparse.data(), nullptr, nullptr, true);
    ExpertFfn(e.Matrices(), x.data(), 1, dense.data(), nullptr, nullptr, false);
    EXPECT_EQ(sparse, dense);
  });
}

}  // namespace
}  // namespace st
