// CPU kernels for slimkit.compressed: CSR x dense (spmm) and the sampled dense-dense product
// (sddmm) on row-major operands, float32 and float64, int32 CSR indices.
//
// Both kernels tile the dense operands' N columns: one tile of a B row is read for every stored
// value of a CSR row, so for a fixed tile the rows' accesses fall in a (cols x TILE) panel of B
// that stays in the core's L2 cache while all the rows of a thread's chunk go through it. Inside
// a tile, the loops have compile-time trip counts over restrict pointers, which GCC and Clang
// vectorise at -O3 (the accumulators of a tile then live in vector registers).
//
// Threads: at::parallel_for over shares of rows, so torch.set_num_threads controls them. Every index is
// checked, and none can make a kernel read or write outside its operands: bad input is a Python
// ValueError, never a crash.

#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <type_traits>

#if defined(__GNUC__) || defined(__clang__)
#define SK_RESTRICT __restrict__
#elif defined(_MSC_VER)
#define SK_RESTRICT __restrict
#else
#define SK_RESTRICT
#endif

namespace {

using index_t = int32_t;

// ---- validation ---------------------------------------------------------------------------

void check_matrix(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  TORCH_CHECK_TYPE(t.device().is_cpu(), name, " must be a CPU tensor, got ", t.device());
  TORCH_CHECK_VALUE(t.dim() == 2, name, " must be 2-D, got ", t.dim(), "-D");
  TORCH_CHECK_TYPE(t.scalar_type() == dtype, name, " must be ", dtype, ", got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.is_contiguous(), name, " must be contiguous (row-major)");
}

// crow: rows + 1 non-decreasing offsets from 0 to nnz (checked here, O(rows), before anything
// reads col or the values through it). The column indices are checked as the kernels read them
// (see `safe_column`), which costs no extra pass over col: a separate one was a quarter of the
// time of an N = 1 product.
void check_csr(const at::Tensor& crow, const at::Tensor& col, int64_t cols) {
  for (const auto* pair : {&crow, &col}) {
    const char* name = pair == &crow ? "crow_indices" : "col_indices";
    TORCH_CHECK_TYPE(pair->device().is_cpu(), name, " must be a CPU tensor, got ", pair->device());
    TORCH_CHECK_TYPE(pair->scalar_type() == at::kInt, name, " must be int32, got ", pair->scalar_type());
    TORCH_CHECK_VALUE(pair->dim() == 1, name, " must be 1-D, got ", pair->dim(), "-D");
    TORCH_CHECK_VALUE(pair->is_contiguous(), name, " must be contiguous");
  }
  TORCH_CHECK_VALUE(crow.numel() >= 1, "crow_indices needs rows + 1 >= 1 entries");
  const int64_t rows = crow.numel() - 1;
  const int64_t nnz = col.numel();
  const index_t* c = crow.data_ptr<index_t>();
  TORCH_CHECK_VALUE(c[0] == 0 && c[rows] == nnz, "crow_indices must run from 0 to the number of column indices (",
                    nnz, "), got ", c[0], " ... ", c[rows]);
  bool sorted = true;
  for (int64_t r = 0; r < rows; ++r) sorted &= c[r] <= c[r + 1];
  TORCH_CHECK_VALUE(sorted, "crow_indices must be non-decreasing");
  TORCH_CHECK_VALUE(nnz == 0 || (cols > 0 && cols <= INT32_MAX),
                    "col_indices out of range: a matrix with ", cols, " columns cannot hold ", nnz, " entries");
}

void column_out_of_range(int64_t cols) {
  TORCH_CHECK_VALUE(false, "col_indices out of range: every index must lie in [0, ", cols, ")");
}

// For products that read no column (N = 0): the indices are still checked, in one pass.
void check_columns(const at::Tensor& col, int64_t cols) {
  const index_t* k = col.data_ptr<index_t>();
  uint32_t worst = 0;
  for (int64_t i = 0; i < col.numel(); ++i) worst = std::max(worst, static_cast<uint32_t>(k[i]));
  if (col.numel() > 0 && worst >= static_cast<uint64_t>(cols)) column_out_of_range(cols);
}

// A column index safe to read with: clamped to the last column (as unsigned, a negative index is
// huge and clamps too), while `worst` records the largest index seen; a product whose `worst`
// passes the last column raises instead of returning. Two integer operations per stored value
// and tile, hidden behind the loads.
inline int64_t safe_column(index_t c, uint32_t last, uint32_t& worst) {
  const uint32_t u = static_cast<uint32_t>(c);
  worst = std::max(worst, u);
  return static_cast<int64_t>(std::min(u, last));
}

// Elements in 64 bytes: one vector register's worth (AVX-512), the narrowest tile.
template <typename scalar_t>
constexpr int kLanes = static_cast<int>(64 / sizeof(scalar_t));

// f(r0, r1) on one share of the rows per thread, in one at::parallel_for (so one barrier per
// product). Shares are balanced by stored values plus one per row, not by row count: a pruned
// layer's rows can differ a lot in length. Products under ~64K multiply-adds stay on one thread.
// (Handing out small blocks dynamically, with one parallel region per tile, was tried: with
// more threads than free cores, every extra barrier waited on a preempted thread, 2.5x slower.)
template <typename F>
void for_row_shares(const index_t* crow, int64_t rows, int64_t width, const F& f) {
  if (rows <= 0) return;
  const int64_t nnz = crow[rows];
  const int64_t work = (nnz + rows) * std::max<int64_t>(width, 1);
  const int64_t shares = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), work / 65536));
  // The first row r whose preceding work, crow[r] + r, reaches share s's start.
  const auto first_row = [&](int64_t s) -> int64_t {
    if (s >= shares) return rows;
    const int64_t target = (nnz + rows) * s / shares;
    int64_t lo = 0, hi = rows;
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (static_cast<int64_t>(crow[mid]) + mid < target) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  at::parallel_for(0, shares, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t r0 = first_row(s), r1 = first_row(s + 1);
      if (r0 < r1) f(r0, r1);
    }
  });
}

// ---- vectors ------------------------------------------------------------------------------
//
// GCC and Clang generic vectors of 64 bytes: one AVX-512 register, two AVX2 ones, four SSE/NEON
// ones; the compiler maps them onto whatever the target has. (Left to itself, GCC 12 vectorises
// the row loop of spmm across stored values with gathers, several times slower.) Other
// compilers get the plain loops.

#if (defined(__GNUC__) || defined(__clang__)) && !defined(SK_PLAIN_LOOPS)  // the latter: for tests
#define SK_VECTORS 1
template <typename T>
struct simd;
template <>
struct simd<float> {
  typedef float type __attribute__((vector_size(64)));
  typedef float half __attribute__((vector_size(32)));
  typedef float quarter __attribute__((vector_size(16)));
  static constexpr int lanes = 16;
};
template <>
struct simd<double> {
  typedef double type __attribute__((vector_size(64)));
  typedef double half __attribute__((vector_size(32)));
  typedef double quarter __attribute__((vector_size(16)));
  static constexpr int lanes = 8;
};

template <typename V, typename T>
inline V vload(const T* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof(V));
  return v;
}

template <typename V, typename T>
inline void vstore(T* p, const V& v) {
  __builtin_memcpy(p, &v, sizeof(V));
}

// Sum of a vector's lanes, by halving in registers.
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector) && !defined(SK_NO_SHUFFLE)  // the latter: for tests
#define SK_SHUFFLE 1
#endif
#endif

#ifdef SK_SHUFFLE
inline float hsum(const simd<float>::type& x) {
  const simd<float>::half h =
      __builtin_shufflevector(x, x, 0, 1, 2, 3, 4, 5, 6, 7) + __builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15);
  const simd<float>::quarter q = __builtin_shufflevector(h, h, 0, 1, 2, 3) + __builtin_shufflevector(h, h, 4, 5, 6, 7);
  const simd<float>::quarter p = q + __builtin_shufflevector(q, q, 2, 3, 2, 3);
  return p[0] + p[1];
}

inline double hsum(const simd<double>::type& x) {
  const simd<double>::half h = __builtin_shufflevector(x, x, 0, 1, 2, 3) + __builtin_shufflevector(x, x, 4, 5, 6, 7);
  const simd<double>::quarter q = __builtin_shufflevector(h, h, 0, 1) + __builtin_shufflevector(h, h, 2, 3);
  return q[0] + q[1];
}

// The four lane sums of a, b, c, d at once: (a, b, c, d) in one 4-lane vector. Pairs of vectors
// are halved together, so four sums cost about twice one.
inline simd<float>::quarter hsum4(const simd<float>::type& a, const simd<float>::type& b,
                                  const simd<float>::type& c, const simd<float>::type& d) {
  using V = simd<float>::type;
  const V ab = __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
               __builtin_shufflevector(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  const V cd = __builtin_shufflevector(c, d, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
               __builtin_shufflevector(c, d, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  // ab = [a 8 | b 8], cd = [c 8 | d 8] -> x = [a 4 | c 4 | b 4 | d 4]
  const V x = __builtin_shufflevector(ab, cd, 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27) +
              __builtin_shufflevector(ab, cd, 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
  // -> y = [a 2 | c 2 | b 2 | d 2]
  const simd<float>::half y = __builtin_shufflevector(x, x, 0, 1, 4, 5, 8, 9, 12, 13) +
                              __builtin_shufflevector(x, x, 2, 3, 6, 7, 10, 11, 14, 15);
  const simd<float>::half z = y + __builtin_shufflevector(y, y, 1, 0, 3, 2, 5, 4, 7, 6);
  return __builtin_shufflevector(z, z, 0, 4, 2, 6);
}

inline simd<double>::half hsum4(const simd<double>::type& a, const simd<double>::type& b,
                                const simd<double>::type& c, const simd<double>::type& d) {
  using V = simd<double>::type;
  const V ab = __builtin_shufflevector(a, b, 0, 1, 2, 3, 8, 9, 10, 11) +
               __builtin_shufflevector(a, b, 4, 5, 6, 7, 12, 13, 14, 15);
  const V cd = __builtin_shufflevector(c, d, 0, 1, 2, 3, 8, 9, 10, 11) +
               __builtin_shufflevector(c, d, 4, 5, 6, 7, 12, 13, 14, 15);
  // ab = [a 4 | b 4], cd = [c 4 | d 4] -> x = [a 2 | c 2 | b 2 | d 2]
  const V x = __builtin_shufflevector(ab, cd, 0, 1, 8, 9, 4, 5, 12, 13) +
              __builtin_shufflevector(ab, cd, 2, 3, 10, 11, 6, 7, 14, 15);
  const V y = x + __builtin_shufflevector(x, x, 1, 0, 3, 2, 5, 4, 7, 6);
  return __builtin_shufflevector(y, y, 0, 4, 2, 6);
}
#else
template <typename V>
inline auto hsum(const V& x) {
  auto s = x[0];
  for (int l = 1; l < static_cast<int>(sizeof(V) / sizeof(s)); ++l) s += x[l];
  return s;
}
#endif
#endif

// ---- operand layout -------------------------------------------------------------------------

// B (cols x n, row-major) as its W-wide column panels, each contiguous (cols x W). Reading a tile
// of a row-major B in place strides its rows by n elements: with n a power of two (a batch of
// 256) the rows' tiles fall into a fraction of the cache sets and the panel no longer stays in
// L2 (measured 5 GMAC/s instead of 30 for a 4096 x 256 float32 operand). The copy is the size of
// B, not of the weight.
template <typename scalar_t, int W>
at::Tensor pack_panels(const at::Tensor& b, int64_t tiles) {
  const int64_t cols = b.size(0), n = b.size(1);
  at::Tensor packed = at::empty({tiles * cols * W}, b.options());
  const scalar_t* src = b.data_ptr<scalar_t>();
  scalar_t* dst = packed.data_ptr<scalar_t>();
  at::parallel_for(0, cols, std::max<int64_t>(1, 16384 / std::max<int64_t>(n, 1)), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t t = 0; t < tiles; ++t) std::copy_n(src + c * n + t * W, W, dst + (t * cols + c) * W);
  });
  return packed;
}

// Columns [from, n) of a row-major matrix as a contiguous (rows x padded) block, zero beyond n:
// the last, narrower tile then runs through the same vector code as full ones (a plain loop
// over fewer than 16 columns was slower than torch; zeros add nothing to any product).
template <typename scalar_t>
at::Tensor padded_tail(const at::Tensor& m, int64_t from, int64_t padded) {
  const int64_t rows = m.size(0), n = m.size(1), w = n - from;
  at::Tensor tail = at::zeros({rows, padded}, m.options());
  const scalar_t* src = m.data_ptr<scalar_t>();
  scalar_t* dst = tail.data_ptr<scalar_t>();
  at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(padded, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) std::copy_n(src + r * n + from, w, dst + r * padded);
  });
  return tail;
}

// Where the kernels read B from: the full tiles packed into panels, or in place when packing
// would not pay (a single tile, or rows read about once per tile: nnz / cols is the average
// number of reads, and a 10-row output layer's 4096-column structure has 0.1, where packing
// its 4096 x 256 operand took longer than the product); the last n % W columns always from a
// zero-padded block whose width is a multiple of 64 bytes.
template <typename scalar_t, int W>
struct Operand {
  static constexpr int L = kLanes<scalar_t>;
  at::Tensor panels, tail;  // storage
  const scalar_t* base = nullptr;
  int64_t cols = 0, n = 0, tiles = 0, w = 0, padded = 0;
  bool packed = false;

  Operand(const at::Tensor& b, int64_t nnz, bool pad_tail = true)
      : cols(b.size(0)), n(b.size(1)), tiles(n / W), w(n - tiles * W), padded((w + L - 1) / L * L) {
    packed = tiles > 0 && n > W && nnz >= 4 * cols;
    panels = packed ? pack_panels<scalar_t, W>(b, tiles) : b;
    base = panels.data_ptr<scalar_t>();
    if (w > 0 && pad_tail) tail = padded_tail<scalar_t>(b, tiles * W, padded);
  }
  const scalar_t* tile(int64_t t) const { return packed ? base + t * cols * W : base + t * W; }
  int64_t ld() const { return packed ? W : n; }
  const scalar_t* tail_panel() const { return tail.data_ptr<scalar_t>(); }
};

// ---- spmm: Y = CSR @ B ----------------------------------------------------------------------

// y[0:keep] = (sum over k in [begin, end) of val[k] * b[col[k], 0:W])[0:keep]; W a multiple of
// 64 bytes, keep <= W.
template <typename scalar_t, int W>
inline void spmm_tile(const index_t* SK_RESTRICT col, const scalar_t* SK_RESTRICT val, int64_t begin, int64_t end,
                      const scalar_t* SK_RESTRICT b, int64_t ldb, scalar_t* SK_RESTRICT y, int64_t keep,
                      uint32_t last, uint32_t& worst) {
#ifdef SK_VECTORS
  using V = typename simd<scalar_t>::type;
  constexpr int L = simd<scalar_t>::lanes, NV = W / L;
  static_assert(W % L == 0, "tile must be a multiple of 64 bytes");
  // S sets of NV accumulators (vector registers), S stored values at a time: at least 8
  // independent multiply-add chains, enough to cover the instruction's latency.
  constexpr int S = NV >= 8 ? 1 : 8 / NV;
  V acc[S][NV];
  for (int u = 0; u < S; ++u)
    for (int i = 0; i < NV; ++i) acc[u][i] = V{};
  int64_t k = begin;
  for (; k + S <= end; k += S)
    for (int u = 0; u < S; ++u) {
      const scalar_t v = val[k + u];
      const scalar_t* SK_RESTRICT row = b + safe_column(col[k + u], last, worst) * ldb;
      for (int i = 0; i < NV; ++i) acc[u][i] += v * vload<V>(row + i * L);
    }
  for (; k < end; ++k) {
    const scalar_t v = val[k];
    const scalar_t* SK_RESTRICT row = b + safe_column(col[k], last, worst) * ldb;
    for (int i = 0; i < NV; ++i) acc[0][i] += v * vload<V>(row + i * L);
  }
  for (int u = 1; u < S; ++u)
    for (int i = 0; i < NV; ++i) acc[0][i] += acc[u][i];
  if (keep == W) {
    for (int i = 0; i < NV; ++i) vstore(y + i * L, acc[0][i]);
  } else {
    scalar_t buffer[W];
    for (int i = 0; i < NV; ++i) vstore(buffer + i * L, acc[0][i]);
    std::copy_n(buffer, keep, y);
  }
#else
  scalar_t acc[W];
  for (int j = 0; j < W; ++j) acc[j] = scalar_t(0);
  for (int64_t k = begin; k < end; ++k) {
    const scalar_t v = val[k];
    const scalar_t* SK_RESTRICT row = b + safe_column(col[k], last, worst) * ldb;
    for (int j = 0; j < W; ++j) acc[j] += v * row[j];
  }
  std::copy_n(acc, keep, y);
#endif
}

// A matrix-vector product (N = 1): four chains hide the multiply-add latency.
template <typename scalar_t>
inline scalar_t spmv_row(const index_t* SK_RESTRICT col, const scalar_t* SK_RESTRICT val, int64_t begin, int64_t end,
                         const scalar_t* SK_RESTRICT b, uint32_t last, uint32_t& worst) {
  scalar_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t k = begin;
  for (; k + 4 <= end; k += 4) {
    s0 += val[k] * b[safe_column(col[k], last, worst)];
    s1 += val[k + 1] * b[safe_column(col[k + 1], last, worst)];
    s2 += val[k + 2] * b[safe_column(col[k + 2], last, worst)];
    s3 += val[k + 3] * b[safe_column(col[k + 3], last, worst)];
  }
  for (; k < end; ++k) s0 += val[k] * b[safe_column(col[k], last, worst)];
  return (s0 + s1) + (s2 + s3);
}

// f(std::integral_constant<int, padded>) for a padded tail width (a multiple of 64 bytes, at
// most W, which is 4 x 64 bytes): the tail's tile width as a compile-time constant.
template <typename scalar_t, int W, typename F>
void with_width(int64_t padded, F&& f) {
  constexpr int L = kLanes<scalar_t>;
  static_assert(W == 4 * L, "the tail dispatch assumes 256-byte tiles");
  switch (padded / L) {
    case 1: f(std::integral_constant<int, L>{}); break;
    case 2: f(std::integral_constant<int, 2 * L>{}); break;
    case 3: f(std::integral_constant<int, 3 * L>{}); break;
    default: f(std::integral_constant<int, 4 * L>{}); break;
  }
}

template <typename scalar_t, int W>
void spmm_impl(const at::Tensor& crow, const at::Tensor& col, const at::Tensor& values, const at::Tensor& b,
               at::Tensor& y) {
  const int64_t rows = crow.numel() - 1, n = b.size(1);
  const Operand<scalar_t, W> B(b, col.numel(), /*pad_tail=*/n > 1);
  const index_t* c = crow.data_ptr<index_t>();
  const index_t* k = col.data_ptr<index_t>();
  const scalar_t* v = values.data_ptr<scalar_t>();
  scalar_t* yp = y.data_ptr<scalar_t>();
  const uint32_t last = static_cast<uint32_t>(B.cols - 1);
  std::atomic<bool> bad{false};
  for_row_shares(c, rows, n, [&](int64_t r0, int64_t r1) {
    uint32_t worst = 0;
    if (n == 1) {
      for (int64_t r = r0; r < r1; ++r) yp[r] = spmv_row<scalar_t>(k, v, c[r], c[r + 1], B.base, last, worst);
    } else {
      for (int64_t t = 0; t < B.tiles; ++t) {  // tile outside, rows inside: the panel stays in L2
        const scalar_t* panel = B.tile(t);
        for (int64_t r = r0; r < r1; ++r)
          spmm_tile<scalar_t, W>(k, v, c[r], c[r + 1], panel, B.ld(), yp + r * n + t * W, W, last, worst);
      }
      if (B.w > 0)  // the last n % W columns, in one tile as wide as their padded block
        with_width<scalar_t, W>(B.padded, [&](auto width) {
          for (int64_t r = r0; r < r1; ++r)
            spmm_tile<scalar_t, decltype(width)::value>(k, v, c[r], c[r + 1], B.tail_panel(), B.padded,
                                                        yp + r * n + B.tiles * W, B.w, last, worst);
        });
    }
    if (worst > last) bad = true;
  });
  if (bad) column_out_of_range(B.cols);
}

// ---- sddmm: vals[k] = dot(A[row_k, :], B[col_k, :]) ---------------------------------------

// out[k] (+)= dot(a[0:W], b[col[k], 0:W]) for k in [begin, end); W a multiple of 64 bytes.
template <typename scalar_t, int W>
inline void sddmm_tile(const index_t* SK_RESTRICT col, int64_t begin, int64_t end, const scalar_t* SK_RESTRICT a,
                       const scalar_t* SK_RESTRICT b, int64_t ldb, scalar_t* SK_RESTRICT out, bool accumulate,
                       uint32_t last, uint32_t& worst) {
#ifdef SK_VECTORS
  using V = typename simd<scalar_t>::type;
  constexpr int L = simd<scalar_t>::lanes, NV = W / L;
  static_assert(W % L == 0, "tile must be a multiple of 64 bytes");
  V av[NV];  // A's tile of this row, in registers across the row's stored values
  for (int i = 0; i < NV; ++i) av[i] = vload<V>(a + i * L);
  int64_t k = begin;
#ifdef SK_SHUFFLE
  for (; k + 4 <= end; k += 4) {  // four stored values: their four lane sums reduced together
    V acc[4];
    for (int u = 0; u < 4; ++u) {
      const scalar_t* SK_RESTRICT row = b + safe_column(col[k + u], last, worst) * ldb;
      acc[u] = av[0] * vload<V>(row);
      for (int i = 1; i < NV; ++i) acc[u] += av[i] * vload<V>(row + i * L);
    }
    const auto s = hsum4(acc[0], acc[1], acc[2], acc[3]);
    for (int u = 0; u < 4; ++u) out[k + u] = accumulate ? out[k + u] + s[u] : s[u];
  }
#endif
  for (; k < end; ++k) {
    const scalar_t* SK_RESTRICT row = b + safe_column(col[k], last, worst) * ldb;
    V acc = av[0] * vload<V>(row);
    for (int i = 1; i < NV; ++i) acc += av[i] * vload<V>(row + i * L);
    const scalar_t s = hsum(acc);
    out[k] = accumulate ? out[k] + s : s;
  }
#else
  for (int64_t k = begin; k < end; ++k) {
    const scalar_t* SK_RESTRICT row = b + safe_column(col[k], last, worst) * ldb;
    scalar_t s = 0;
    for (int j = 0; j < W; ++j) s += a[j] * row[j];
    out[k] = accumulate ? out[k] + s : s;
  }
#endif
}

template <typename scalar_t, int W>
void sddmm_impl(const at::Tensor& crow, const at::Tensor& col, const at::Tensor& a, const at::Tensor& b,
                at::Tensor& out) {
  const int64_t rows = crow.numel() - 1, n = a.size(1);
  const Operand<scalar_t, W> B(b, col.numel());
  // A's rows are read in place, its last n % W columns zero-padded like B's (both must be: a
  // zero times whatever lies past A's row could be a NaN).
  const at::Tensor a_tail = B.w > 0 ? padded_tail<scalar_t>(a, B.tiles * W, B.padded) : at::Tensor();
  const index_t* c = crow.data_ptr<index_t>();
  const index_t* k = col.data_ptr<index_t>();
  const scalar_t* ap = a.data_ptr<scalar_t>();
  scalar_t* op = out.data_ptr<scalar_t>();
  const uint32_t last = static_cast<uint32_t>(B.cols - 1);
  std::atomic<bool> bad{false};
  for_row_shares(c, rows, n, [&](int64_t r0, int64_t r1) {
    uint32_t worst = 0;
    for (int64_t t = 0; t < B.tiles; ++t) {
      const scalar_t* panel = B.tile(t);
      for (int64_t r = r0; r < r1; ++r)
        sddmm_tile<scalar_t, W>(k, c[r], c[r + 1], ap + r * n + t * W, panel, B.ld(), op, t > 0, last, worst);
    }
    if (B.w > 0)
      with_width<scalar_t, W>(B.padded, [&](auto width) {
        const scalar_t* a_panel = a_tail.data_ptr<scalar_t>();
        for (int64_t r = r0; r < r1; ++r)
          sddmm_tile<scalar_t, decltype(width)::value>(k, c[r], c[r + 1], a_panel + r * B.padded, B.tail_panel(),
                                                       B.padded, op, B.tiles > 0, last, worst);
      });
    if (worst > last) bad = true;
  });
  if (bad) column_out_of_range(B.cols);
}

// ---- entry points ---------------------------------------------------------------------------

// Tile width: 256 bytes of each B row, 64 float32 or 32 float64 columns (4 AVX-512 registers
// of accumulators, 2 stored values in flight). Measured on a 4096 x 4096 CSR at 10% density
// with a 4096 x 256 operand, one thread, against 64 float32 columns: 32 were 17% (spmm) and 50%
// (sddmm, a horizontal sum per tile) slower, 128 were 40% and 9% slower (a 2 MiB panel fills
// L2), 256 were 2-3x slower; float64 was fastest at 32 columns, the same 256 bytes.
constexpr int64_t kTileBytes = 256;

template <typename scalar_t>
constexpr int tile_of() { return static_cast<int>(kTileBytes / sizeof(scalar_t)); }

int64_t tile_width(at::ScalarType dtype) {
  TORCH_CHECK_TYPE(dtype == at::kFloat || dtype == at::kDouble, "tiles are defined for float32 and float64, got ",
                   dtype);
  return kTileBytes / static_cast<int64_t>(c10::elementSize(dtype));
}

void check_values(const at::Tensor& values, const at::Tensor& col) {
  TORCH_CHECK_TYPE(values.device().is_cpu(), "values must be a CPU tensor, got ", values.device());
  TORCH_CHECK_VALUE(values.dim() == 1 && values.numel() == col.numel(),
                    "values must be 1-D with one entry per column index (", col.numel(), "), got shape ",
                    values.sizes());
  TORCH_CHECK_VALUE(values.is_contiguous(), "values must be contiguous");
}

at::Tensor spmm(const at::Tensor& crow, const at::Tensor& col, const at::Tensor& values, const at::Tensor& b) {
  TORCH_CHECK_TYPE(values.scalar_type() == at::kFloat || values.scalar_type() == at::kDouble,
                   "spmm supports float32 and float64, got ", values.scalar_type());
  check_matrix(b, "the dense operand", values.scalar_type());
  check_values(values, col);
  check_csr(crow, col, b.size(0));
  at::Tensor y = at::empty({crow.numel() - 1, b.size(1)}, b.options());
  if (b.size(1) == 0 || col.numel() == 0) {  // nothing to multiply: no kernel reads the columns
    check_columns(col, b.size(0));
    return y.zero_();
  }
  AT_DISPATCH_FLOATING_TYPES(b.scalar_type(), "slimkit_spmm",
                             [&] { spmm_impl<scalar_t, tile_of<scalar_t>()>(crow, col, values, b, y); });
  return y;
}

at::Tensor sddmm(const at::Tensor& crow, const at::Tensor& col, const at::Tensor& a, const at::Tensor& b) {
  TORCH_CHECK_TYPE(a.scalar_type() == at::kFloat || a.scalar_type() == at::kDouble,
                   "sddmm supports float32 and float64, got ", a.scalar_type());
  check_matrix(a, "A", a.scalar_type());
  check_matrix(b, "B", a.scalar_type());
  TORCH_CHECK_VALUE(a.size(0) == crow.numel() - 1, "A has ", a.size(0), " rows, the CSR structure ",
                    crow.numel() - 1);
  TORCH_CHECK_VALUE(a.size(1) == b.size(1), "A and B must have the same number of columns, got ", a.size(1),
                    " and ", b.size(1));
  check_csr(crow, col, b.size(0));
  at::Tensor out = at::empty({col.numel()}, a.options());
  if (a.size(1) == 0 || col.numel() == 0) {
    check_columns(col, b.size(0));
    return out.zero_();
  }
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "slimkit_sddmm",
                             [&] { sddmm_impl<scalar_t, tile_of<scalar_t>()>(crow, col, a, b, out); });
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "slimkit CSR kernels (CPU): spmm and sddmm on int32 CSR structures";
  m.def("spmm", &spmm, "Y = CSR @ B, B (cols x N) row-major", py::arg("crow"), py::arg("col"), py::arg("values"),
        py::arg("b"), py::call_guard<py::gil_scoped_release>());
  m.def("sddmm", &sddmm, "vals[k] = dot(A[row_k], B[col_k]), A (rows x N) and B (cols x N) row-major",
        py::arg("crow"), py::arg("col"), py::arg("a"), py::arg("b"), py::call_guard<py::gil_scoped_release>());
  m.def("tile_width", &tile_width, "columns per tile for a dtype", py::arg("dtype"));
}
