// PackedFromMapping: matrices inside a registered mapping get a packed copy
// (made once, shared) that gives the row-major MatMul's numbers; whole
// expert stacks (>= 16 MiB) land in 2 MiB-aligned huge-page arenas, single
// experts on the heap; matrices outside every mapping are left alone.
#include "model/mapped_repack.h"

#include <sys/mman.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "common/huge_page_arena.h"
#include "gtest/gtest.h"
#include "kernels/packed_matrix.h"
#include "kernels/quant.h"
#include "kernels/test_util.h"

namespace st {
namespace {

// An anonymous mapping standing in for a GGUF file mapping.
class FakeMapping {
 public:
  explicit FakeMapping(size_t bytes) : size_(bytes) {
    base_ = static_cast<char*>(
        ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    EXPECT_NE(base_, MAP_FAILED);
    RegisterFileMapping(base_, size_);
  }
  ~FakeMapping() {
    UnregisterFileMapping(base_);
    ::munmap(base_, size_);
  }
  char* data() const { return base_; }

 private:
  char* base_;
  size_t size_;
};

// A Q4_0 matrix of `rows` x 1024 quantized from Gaussian rows, at `dst`.
MatrixRef FillMatrix(char* dst, size_t rows) {
  constexpr size_t kCols = 1024;
  const std::vector<float> src = testing::Gaussian(kCols * 16, 3);
  for (size_t r = 0; r < rows; ++r) {
    QuantizeRow(DType::kQ4_0, src.data() + (r % 16) * kCols, dst + r * RowBytes(DType::kQ4_0, kCols),
                kCols);
  }
  return MatrixRef{DType::kQ4_0, dst, rows, kCols};
}

void ExpectPackedCopy(const MatrixRef& m, size_t expect_alignment) {
  if (!CanPack(m.type, m.rows, m.cols)) GTEST_SKIP() << "no packed kernels on this CPU";
  const size_t bytes = m.rows * m.row_bytes();
  std::vector<char> original(static_cast<const char*>(m.data),
                             static_cast<const char*>(m.data) + bytes);
  std::vector<char> want(bytes);
  PackRows(m.type, original.data(), m.rows, m.cols, want.data());

  const MatrixRef p = PackedFromMapping(m);
  ASSERT_NE(p.packed, nullptr);
  EXPECT_EQ(std::memcmp(p.packed, want.data(), bytes), 0);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p.packed) % expect_alignment, 0u);
  EXPECT_EQ(PackedFromMapping(m).packed, p.packed) << "the copy is made once";

  // Same numbers as the row-major kernels over the original bytes.
  const std::vector<float> x = testing::Gaussian(m.cols, 5);
  Activations act;
  act.PrepareFor(m.type, x.data(), 1, m.cols);
  std::vector<float> got(m.rows), ref(m.rows);
  MatMul(p, act, got.data(), nullptr);
  MatrixRef rows = m;
  rows.data = original.data();
  MatMul(rows, act, ref.data(), nullptr);
  for (size_t r = 0; r < m.rows; ++r) ASSERT_NEAR(got[r], ref[r], 1e-3f * (1 + std::abs(ref[r])));
}

TEST(MappedRepackTest, StackSizedMatrixGoesToAHugePageArena) {
  constexpr size_t kRows = 32768;  // 18 MiB of Q4_0: above the arena threshold
  FakeMapping map(kRows * RowBytes(DType::kQ4_0, 1024) + 4096);
  const MatrixRef m = FillMatrix(map.data() + 4096, kRows);
  ExpectPackedCopy(m, TransparentHugePagesAvailable() ? HugePageArena::kHugePage : 64);
}

TEST(MappedRepackTest, ExpertSizedMatrixGoesToTheHeap) {
  constexpr size_t kRows = 768;
  FakeMapping map(kRows * RowBytes(DType::kQ4_0, 1024));
  ExpectPackedCopy(FillMatrix(map.data(), kRows), 64);
}

TEST(MappedRepackTest, DroppedCopiesFreeTheirBytes) {
  constexpr size_t kRows = 768;
  FakeMapping map(2 * kRows * RowBytes(DType::kQ4_0, 1024));
  const MatrixRef a = FillMatrix(map.data(), kRows);
  const MatrixRef b = FillMatrix(map.data() + kRows * RowBytes(DType::kQ4_0, 1024), kRows);
  if (!CanPack(a.type, a.rows, a.cols)) GTEST_SKIP() << "no packed kernels on this CPU";
  const size_t before = PackedCopyBytes(), one = kRows * a.row_bytes();
  ASSERT_NE(PackedFromMapping(a).packed, nullptr);
  ASSERT_NE(PackedFromMapping(b).packed, nullptr);
  EXPECT_EQ(PackedCopyBytes(), before + 2 * one);
  DropPackedCopy(a);
  EXPECT_EQ(PackedCopyBytes(), before + one);
  DropPackedCopy(a);  // nothing left to drop
  EXPECT_EQ(PackedCopyBytes(), before + one);
  DropPackedCopy(b);
  EXPECT_EQ(PackedCopyBytes(), before);
}

// A stack's first expert starts at the stack's first byte: a worker or the
// coordinator's share packs the slice, the local executor the whole stack,
// and each must get its own copy (one keyed by pointer alone handed the
// stack the slice's buffer, and the kernels read past its end).
TEST(MappedRepackTest, AStackAndItsFirstSliceGetTheirOwnCopies) {
  constexpr size_t kRows = 768;
  FakeMapping map(2 * kRows * RowBytes(DType::kQ4_0, 1024));
  const MatrixRef stack = FillMatrix(map.data(), 2 * kRows);
  MatrixRef slice = stack;
  slice.rows = kRows;
  if (!CanPack(stack.type, stack.rows, stack.cols)) GTEST_SKIP() << "no packed kernels on this CPU";
  const void* slice_copy = PackedFromMapping(slice).packed;
  ASSERT_NE(slice_copy, nullptr);
  ExpectPackedCopy(stack, 64);
  EXPECT_NE(PackedFromMapping(stack).packed, slice_copy);
  EXPECT_EQ(PackedFromMapping(slice).packed, slice_copy) << "the slice keeps its copy";
  DropPackedCopy(slice);
  DropPackedCopy(stack);
}

TEST(MappedRepackTest, MatricesOutsideEveryMappingAreLeftAlone) {
  std::vector<char> buf(768 * RowBytes(DType::kQ4_0, 1024));
  const MatrixRef m = FillMatrix(buf.data(), 768);
  EXPECT_EQ(PackedFromMapping(m).packed, nullptr);
}

}  // namespace
}  // namespace st
