// st::MatMul (SIMD dot rows, threaded) against scalar::MatMul for every
// weight type, odd row counts and several vectors. Bounds per output as in
// dot_test.cc: 1e-5 * sum|w||x| for float paths, 1e-6 * sum|w||x_q8| for
// quantized weights against Q8_0 activations.
#include "kernels/matmul.h"

#include <cmath>
#include <iterator>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/packed_matrix.h"
#include "kernels/test_util.h"

namespace st {
namespace {

using ::st::testing::Gaussian;

struct Matrix {
  std::vector<char> bytes;
  std::vector<float> deq;  // dequantized, [rows x cols]
  MatrixRef ref;
};

Matrix MakeMatrix(DType type, size_t rows, size_t cols, uint32_t seed) {
  Matrix m;
  const std::vector<float> w = Gaussian(rows * cols, seed);
  m.bytes.resize(RowBytes(type, cols) * rows);
  m.deq.resize(rows * cols);
  for (size_t r = 0; r < rows; ++r) {
    char* row = m.bytes.data() + r * RowBytes(type, cols);
    QuantizeRow(type, w.data() + r * cols, row, cols);
    DequantizeRow(type, row, m.deq.data() + r * cols, cols);
  }
  m.ref = MatrixRef{type, m.bytes.data(), rows, cols};
  return m;
}

TEST(MatMulTest, MatchesScalarEveryType) {
  ThreadPool pool(3);
  for (DType type : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0}) {
    for (size_t cols : {32, 96, 1536 + 32}) {
      for (size_t rows : {1, 3, 7, 257}) {
        for (size_t n_vecs : {1, 3, 8}) {
          SCOPED_TRACE(::testing::Message() << DTypeName(type) << " " << rows << "x" << cols
                                            << " vecs=" << n_vecs);
          const Matrix m = MakeMatrix(type, rows, cols, 100 + rows + cols);
          const std::vector<float> x = Gaussian(n_vecs * cols, 7 + n_vecs);
          Activations act;
          act.PrepareFor(type, x.data(), n_vecs, cols);
          ASSERT_EQ(act.has_q8(), IsBlockQuantized(type));
          std::vector<float> y(n_vecs * rows), y1(n_vecs * rows), ref(n_vecs * rows);
          MatMul(m.ref, act, y.data(), &pool);
          MatMul(m.ref, act, y1.data(), nullptr);
          scalar::MatMul(m.ref, act, ref.data());
          EXPECT_EQ(y, y1);  // threading does not change any result
          const double tol = IsBlockQuantized(type) ? 1e-6 : 1e-5;
          std::vector<float> xq(cols);
          for (size_t i = 0; i < n_vecs; ++i) {
            const VecRef v = act.vec(i);
            if (v.q8 != nullptr) DequantizeRow(DType::kQ8_0, v.q8, xq.data(), cols);
            const float* xv = v.q8 != nullptr ? xq.data() : v.f32;
            for (size_t r = 0; r < rows; ++r) {
              double s = 0.0;
              for (size_t j = 0; j < cols; ++j) s += std::fabs(double(m.deq[r * cols + j]) * xv[j]);
              ASSERT_NEAR(y[i * rows + r], ref[i * rows + r], tol * s) << "i=" << i << " r=" << r;
            }
          }
        }
      }
    }
  }
}

// The multi-vector path (each weight block unpacked once for up to 4
// vectors, chunks of 8 vectors, row tiles) for every vector count 1..9 and
// odd row counts; each vector's output must equal a one-vector MatMul
// exactly (prefill and decode give the same logits).
TEST(MatMulTest, ManyVectorsMatchScalarAndSingleVector) {
  ThreadPool pool(2);
  for (DType type : {DType::kQ4_0, DType::kQ8_0, DType::kF16}) {
    for (auto [rows, cols] : {std::pair<size_t, size_t>{1, 64}, {13, 96}, {33, 224}, {97, 768}}) {
      const Matrix m = MakeMatrix(type, rows, cols, 300 + rows);
      for (size_t n_vecs = 1; n_vecs <= 9; ++n_vecs) {
        SCOPED_TRACE(::testing::Message() << DTypeName(type) << " " << rows << "x" << cols
                                          << " vecs=" << n_vecs);
        const std::vector<float> x = Gaussian(n_vecs * cols, 40 + n_vecs);
        Activations act;
        act.PrepareFor(type, x.data(), n_vecs, cols);
        std::vector<float> y(n_vecs * rows), ref(n_vecs * rows);
        MatMul(m.ref, act, y.data(), &pool);
        scalar::MatMul(m.ref, act, ref.data());
        std::vector<float> xq(cols);
        for (size_t i = 0; i < n_vecs; ++i) {
          Activations one;
          one.PrepareFor(type, x.data() + i * cols, 1, cols);
          std::vector<float> y1(rows);
          MatMul(m.ref, one, y1.data(), nullptr);
          const VecRef v = act.vec(i);
          if (v.q8 != nullptr) DequantizeRow(DType::kQ8_0, v.q8, xq.data(), cols);
          const float* xv = v.q8 != nullptr ? xq.data() : v.f32;
          const double tol = IsBlockQuantized(type) ? 1e-6 : 1e-5;
          for (size_t r = 0; r < rows; ++r) {
            ASSERT_EQ(y[i * rows + r], y1[r]) << "i=" << i << " r=" << r;
            double s = 0.0;
            for (size_t j = 0; j < cols; ++j) s += std::fabs(double(m.deq[r * cols + j]) * xv[j]);
            ASSERT_NEAR(y[i * rows + r], ref[i * rows + r], tol * s) << "i=" << i << " r=" << r;
          }
        }
      }
    }
  }
}

TEST(MatMulTest, OddColumnsForFloatTypes) {
  const size_t rows = 5, cols = 101;
  const Matrix m = MakeMatrix(DType::kF16, rows, cols, 1);
  const std::vector<float> x = Gaussian(cols, 2);
  Activations act;
  act.PrepareFor(DType::kF16, x.data(), 1, cols);
  std::vector<float> y(rows);
  MatMul(m.ref, act, y.data(), nullptr);
  for (size_t r = 0; r < rows; ++r) {
    double s = 0.0, a = 0.0;
    for (size_t j = 0; j < cols; ++j) {
      s += double(m.deq[r * cols + j]) * x[j];
      a += std::fabs(double(m.deq[r * cols + j]) * x[j]);
    }
    EXPECT_NEAR(y[r], s, 1e-5 * a);
  }
}

TEST(MatMulTest, MatVecRowsIsASliceOfMatMul) {
  const Matrix m = MakeMatrix(DType::kQ4_0, 50, 256, 3);
  const std::vector<float> x = Gaussian(256, 4);
  Activations act;
  act.PrepareFor(DType::kQ4_0, x.data(), 1, 256);
  std::vector<float> full(50), part(20);
  MatMul(m.ref, act, full.data(), nullptr);
  MatVecRows(m.ref, act.vec(0), 13, 33, part.data());
  for (size_t r = 0; r < 20; ++r) EXPECT_EQ(part[r], full[13 + r]);
}

}  // namespace
}  // namespace st

namespace st {
namespace {

// MatMulMany over jobs of mixed types, layouts (packed and row-major), row
// counts and vector counts equals each job's own MatMul bit for bit, with a
// pool and without; at 3072 columns row-layout units are shorter than 16
// rows (F32: 1 row, F16: 2), as the F32 router's are.
TEST(MatMulTest, ManyJobsEqualTheirOwnMatMul) {
  for (const size_t kCols : {size_t{256}, size_t{3072}}) {
    SCOPED_TRACE(kCols);
    ThreadPool pool(2);
    struct Spec {
      DType type;
      size_t rows;
      bool pack;
    };
    const Spec specs[] = {{DType::kQ4_0, 96, true}, {DType::kQ4_0, 16, true},
                          {DType::kQ8_0, 33, false}, {DType::kF16, 7, false},
                          {DType::kQ8_0, 48, true}, {DType::kF32, 5, false}};
    std::vector<Matrix> ms;
    std::vector<std::vector<char>> packed(std::size(specs));
    for (size_t i = 0; i < std::size(specs); ++i) {
      ms.push_back(MakeMatrix(specs[i].type, specs[i].rows, kCols, 300 + i));
      if (specs[i].pack && CanPack(specs[i].type, specs[i].rows, kCols)) {
        packed[i].resize(ms[i].bytes.size());
        PackRows(specs[i].type, ms[i].bytes.data(), specs[i].rows, kCols, packed[i].data());
        ms[i].ref.packed = packed[i].data();
      }
    }
    for (size_t n_vecs : {1, 3}) {
      const std::vector<float> x = Gaussian(n_vecs * kCols, 11);
      Activations q8, f32;
      q8.Prepare(x.data(), n_vecs, kCols, true);
      f32.Prepare(x.data(), n_vecs, kCols, false);
      std::vector<std::vector<float>> want(ms.size()), got(ms.size()), got1(ms.size());
      std::vector<MatMulJob> jobs, jobs1;
      for (size_t i = 0; i < ms.size(); ++i) {
        const Activations* a = IsBlockQuantized(ms[i].ref.type) ? &q8 : &f32;
        want[i].resize(n_vecs * ms[i].ref.rows);
        got[i].assign(want[i].size(), -1.0f);
        got1[i].assign(want[i].size(), -1.0f);
        MatMul(ms[i].ref, *a, want[i].data(), nullptr);
        jobs.push_back({&ms[i].ref, a, got[i].data()});
        jobs1.push_back({&ms[i].ref, a, got1[i].data()});
      }
      MatMulMany(jobs, &pool);
      MatMulMany(jobs1, nullptr);
      for (size_t i = 0; i < ms.size(); ++i) {
        EXPECT_EQ(got[i], want[i]) << "job " << i << " vecs " << n_vecs;
        EXPECT_EQ(got1[i], want[i]) << "job " << i << " vecs " << n_vecs;
      }
    }
  }
}
}  // namespace
}  // namespace st
