// Hand-written CUDA kernels of Higher's CUDA backend, behind a flat extern "C" ABI.
//
// Conventions of the ABI (mirrored by src/Higher.Cuda/CudaNative.cs):
//  - every exported function returns cudaError_t: a launch returns cudaGetLastError(); nothing
//    throws and no error string is kept;
//  - every device function takes the stream it runs on as its last argument;
//  - dtype codes follow Higher.DType: 0 float32, 1 float64, 2 int64, 3 bool (one byte, 0 or 1);
//  - op codes follow Higher.UnaryOp / BinaryOp / CompareOp / ReduceOp / RandomDistribution;
//  - pointers are already offset by the caller; shapes and strides are in elements, and arrive as
//    host arrays of at most HK_MAX_DIMS entries that are copied into a by-value kernel parameter.
//
// Determinism: no kernel uses atomics. Reductions run a fixed sequential or fixed-tree order that
// depends only on the shapes; scatter-add and index-add give each destination element one thread
// that walks the source in ascending order. The library is built with --fmad=false so that
// elementwise arithmetic rounds like the managed reference (no contraction into FMA).

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#define HK_API extern "C" __attribute__((visibility("default")))

namespace {

constexpr int kAbiVersion = 6;
constexpr int kMaxDims = 8;
constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 20;

// The op codes of the ABI, one list per contract enum of src/Higher.Abstractions (DType, UnaryOp,
// BinaryOp, CompareOp, ReduceOp, RandomDistribution), with the same names and explicit values.
// They are the native side's only copy: the enums below, the unary dispatch and the op-set hash
// are generated from them, a managed test checks them against the C# enums, and the managed
// loader refuses a library whose hk_opset_hash differs from KernelOpSet.Hash.
#define HK_DTYPES(X) X(DType, Float32, 0) X(DType, Float64, 1) X(DType, Int64, 2) X(DType, Bool, 3)
#define HK_UNARY_OPS(X)                                                                            \
    X(UnaryOp, Affine, 0) X(UnaryOp, Exp, 1) X(UnaryOp, Log, 2) X(UnaryOp, Log1p, 3)              \
    X(UnaryOp, Sqrt, 4) X(UnaryOp, Abs, 5) X(UnaryOp, Sign, 6) X(UnaryOp, Relu, 7)                \
    X(UnaryOp, LeakyRelu, 8) X(UnaryOp, Tanh, 9) X(UnaryOp, Sigmoid, 10) X(UnaryOp, Softplus, 11) \
    X(UnaryOp, Erf, 12) X(UnaryOp, Reciprocal, 13) X(UnaryOp, PowScalar, 14) X(UnaryOp, Clamp, 15) \
    X(UnaryOp, Sin, 16) X(UnaryOp, Cos, 17) X(UnaryOp, Expm1, 18)
#define HK_BINARY_OPS(X)                                                                   \
    X(BinaryOp, Add, 0) X(BinaryOp, Sub, 1) X(BinaryOp, Mul, 2) X(BinaryOp, Div, 3)       \
    X(BinaryOp, Pow, 4) X(BinaryOp, Maximum, 5) X(BinaryOp, Minimum, 6) X(BinaryOp, ReluGrad, 7)
#define HK_COMPARE_OPS(X)                                                                 \
    X(CompareOp, Eq, 0) X(CompareOp, Ne, 1) X(CompareOp, Lt, 2) X(CompareOp, Le, 3)      \
    X(CompareOp, Gt, 4) X(CompareOp, Ge, 5)
#define HK_REDUCE_OPS(X) X(ReduceOp, Sum, 0) X(ReduceOp, Max, 1) X(ReduceOp, Min, 2)
#define HK_DISTRIBUTIONS(X) X(RandomDistribution, Uniform, 0) X(RandomDistribution, Normal, 1)

#define HK_CODE(prefix, name, value) prefix##name = value,
#define HK_DTYPE_CODE(kind, name, value) HK_CODE(k, name, value)
#define HK_UNARY_CODE(kind, name, value) HK_CODE(u, name, value)
#define HK_BINARY_CODE(kind, name, value) HK_CODE(b, name, value)
#define HK_COMPARE_CODE(kind, name, value) HK_CODE(c, name, value)
#define HK_REDUCE_CODE(kind, name, value) HK_CODE(r, name, value)
#define HK_DISTRIBUTION_CODE(kind, name, value) HK_CODE(d, name, value)

enum DTypeCode : int32_t { HK_DTYPES(HK_DTYPE_CODE) };
enum UnaryCode : int32_t { HK_UNARY_OPS(HK_UNARY_CODE) };
enum BinaryCode : int32_t { HK_BINARY_OPS(HK_BINARY_CODE) };
enum CompareCode : int32_t { HK_COMPARE_OPS(HK_COMPARE_CODE) };
enum ReduceCode : int32_t { HK_REDUCE_OPS(HK_REDUCE_CODE) };
enum DistributionCode : int32_t { HK_DISTRIBUTIONS(HK_DISTRIBUTION_CODE) };

// "DType.Float32=0;...;UnaryOp.Affine=0;...", exactly Higher.KernelOpSet.Text, and its FNV-1a hash.
#define HK_OPSET_ENTRY(kind, name, value) #kind "." #name "=" #value ";"
constexpr char kOpSet[] = HK_DTYPES(HK_OPSET_ENTRY) HK_UNARY_OPS(HK_OPSET_ENTRY) HK_BINARY_OPS(HK_OPSET_ENTRY)
    HK_COMPARE_OPS(HK_OPSET_ENTRY) HK_REDUCE_OPS(HK_OPSET_ENTRY) HK_DISTRIBUTIONS(HK_OPSET_ENTRY);

constexpr uint64_t Fnv1a(const char* s) {
    uint64_t h = 14695981039346656037ull;
    for (; *s != 0; ++s) {
        h = (h ^ static_cast<uint8_t>(*s)) * 1099511628211ull;
    }
    return h;
}

constexpr uint64_t kOpSetHash = Fnv1a(kOpSet);

// ---------------------------------------------------------------------------------------------
// Launch helpers

unsigned BlocksFor(int64_t n) {
    int64_t blocks = (n + kThreads - 1) / kThreads;
    return static_cast<unsigned>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

__device__ __forceinline__ int64_t FirstIndex() {
    return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ int64_t GridStride() {
    return static_cast<int64_t>(blockDim.x) * gridDim.x;
}

#define HK_GRID_LOOP(i, n) for (int64_t i = FirstIndex(); i < (n); i += GridStride())

// Up to four strided operands over one index space of rank <= kMaxDims.
struct Strided {
    int32_t rank;
    int64_t shape[kMaxDims];
    int64_t stride[4][kMaxDims];
};

// Decomposes the row-major linear index i over s.shape into one element offset per operand.
template <int Operands>
__device__ __forceinline__ void Offsets(const Strided& s, int64_t i, int64_t (&off)[Operands]) {
#pragma unroll
    for (int k = 0; k < Operands; ++k) {
        off[k] = 0;
    }
#pragma unroll
    for (int d = kMaxDims - 1; d >= 0; --d) {
        if (d < s.rank) {
            int64_t q = i % s.shape[d];
            i /= s.shape[d];
#pragma unroll
            for (int k = 0; k < Operands; ++k) {
                off[k] += q * s.stride[k][d];
            }
        }
    }
}

// Builds the by-value parameter from host arrays; returns false for an unsupported rank.
bool MakeStrided(int32_t rank, const int64_t* shape, const int64_t* const* strides, int operands,
                 Strided* out, int64_t* count) {
    if (rank < 0 || rank > kMaxDims) {
        return false;
    }
    Strided s{};
    s.rank = rank;
    int64_t n = 1;
    for (int d = 0; d < rank; ++d) {
        s.shape[d] = shape[d];
        n *= shape[d];
        for (int k = 0; k < operands; ++k) {
            s.stride[k][d] = strides[k][d];
        }
    }
    *out = s;
    *count = n;
    return true;
}

bool IsContiguous1D(int32_t rank, const int64_t* const* strides, int operands) {
    if (rank != 1) {
        return false;
    }
    for (int k = 0; k < operands; ++k) {
        if (strides[k][0] != 1) {
            return false;
        }
    }
    return true;
}

// ---------------------------------------------------------------------------------------------
// Scalar math, overloaded by precision so that float stays in float.

__device__ __forceinline__ float Exp(float x) { return expf(x); }
__device__ __forceinline__ double Exp(double x) { return exp(x); }
__device__ __forceinline__ float Log(float x) { return logf(x); }
__device__ __forceinline__ double Log(double x) { return log(x); }
__device__ __forceinline__ float Log1p(float x) { return log1pf(x); }
__device__ __forceinline__ double Log1p(double x) { return log1p(x); }
__device__ __forceinline__ float Sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double Sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float Abs(float x) { return fabsf(x); }
__device__ __forceinline__ double Abs(double x) { return fabs(x); }
__device__ __forceinline__ float Tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double Tanh(double x) { return tanh(x); }
__device__ __forceinline__ float Pow(float x, float y) { return powf(x, y); }
__device__ __forceinline__ double Pow(double x, double y) { return pow(x, y); }
__device__ __forceinline__ float Sin(float x) { return sinf(x); }
__device__ __forceinline__ double Sin(double x) { return sin(x); }
__device__ __forceinline__ float Cos(float x) { return cosf(x); }
__device__ __forceinline__ double Cos(double x) { return cos(x); }

template <typename T>
__host__ __device__ __forceinline__ bool IsNaN(T x) {
    return x != x;  // false for integers
}

// Saturating float-to-int64 conversion (NaN gives 0), the rule of .NET 9+ casts.
__host__ __device__ __forceinline__ int64_t SaturateToInt64(double x) {
    if (x != x) {
        return 0;
    }
    if (x >= 9223372036854775808.0) {
        return INT64_MAX;
    }
    if (x <= -9223372036854775808.0) {
        return INT64_MIN;
    }
    return static_cast<int64_t>(x);
}

template <typename D>
struct Convert {
    template <typename S>
    __host__ __device__ static D From(S x) { return static_cast<D>(x); }
};

template <>
struct Convert<int64_t> {
    __host__ __device__ static int64_t From(double x) { return SaturateToInt64(x); }
    __host__ __device__ static int64_t From(float x) { return SaturateToInt64(static_cast<double>(x)); }
    __host__ __device__ static int64_t From(int64_t x) { return x; }
    __host__ __device__ static int64_t From(uint8_t x) { return x; }
};

template <>
struct Convert<uint8_t> {
    template <typename S>
    __host__ __device__ static uint8_t From(S x) { return x != S(0) ? 1 : 0; }
};

// ---------------------------------------------------------------------------------------------
// Fill and cast

template <typename T>
__global__ void FillKernel(T* y, int64_t n, T value) {
    HK_GRID_LOOP(i, n) { y[i] = value; }
}

template <typename T>
cudaError_t LaunchFill(void* y, int64_t n, T value, cudaStream_t stream) {
    FillKernel<T><<<BlocksFor(n), kThreads, 0, stream>>>(static_cast<T*>(y), n, value);
    return cudaGetLastError();
}

// y = a + alpha·b with the product rounded before the sum (__fmul_rn/__fadd_rn are never
// contracted into a fused multiply-add), so the bits are those of Affine followed by Add, as on the CPU.
__device__ __forceinline__ float MulRn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double MulRn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float AddRn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double AddRn(double a, double b) { return __dadd_rn(a, b); }

template <typename T>
__global__ void ScaledAddKernel(const T* a, const T* b, T* y, int64_t n, T alpha) {
    HK_GRID_LOOP(i, n) { y[i] = AddRn(a[i], MulRn(alpha, b[i])); }
}

template <typename T>
cudaError_t LaunchScaledAdd(const void* a, const void* b, void* y, int64_t n, T alpha, cudaStream_t stream) {
    ScaledAddKernel<T><<<BlocksFor(n), kThreads, 0, stream>>>(static_cast<const T*>(a), static_cast<const T*>(b),
                                                              static_cast<T*>(y), n, alpha);
    return cudaGetLastError();
}

template <typename S, typename D>
__global__ void CastKernel(const S* x, D* y, int64_t n) {
    HK_GRID_LOOP(i, n) { y[i] = Convert<D>::From(x[i]); }
}

template <typename S>
cudaError_t LaunchCastFrom(const void* x, int32_t dstType, void* y, int64_t n, cudaStream_t stream) {
    const S* xs = static_cast<const S*>(x);
    switch (dstType) {
        case kFloat32: CastKernel<S, float><<<BlocksFor(n), kThreads, 0, stream>>>(xs, static_cast<float*>(y), n); break;
        case kFloat64: CastKernel<S, double><<<BlocksFor(n), kThreads, 0, stream>>>(xs, static_cast<double*>(y), n); break;
        case kInt64: CastKernel<S, int64_t><<<BlocksFor(n), kThreads, 0, stream>>>(xs, static_cast<int64_t*>(y), n); break;
        case kBool: CastKernel<S, uint8_t><<<BlocksFor(n), kThreads, 0, stream>>>(xs, static_cast<uint8_t*>(y), n); break;
        default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

int ElementSize(int32_t dtype) {
    switch (dtype) {
        case kFloat32: return 4;
        case kFloat64: return 8;
        case kInt64: return 8;
        case kBool: return 1;
        default: return 0;
    }
}

// ---------------------------------------------------------------------------------------------
// Strided copy (dtype-agnostic: moves elements of 1, 4 or 8 bytes)

template <typename T>
__global__ void StridedCopyKernel(const T* src, T* dst, int64_t n, Strided s) {
    HK_GRID_LOOP(i, n) {
        int64_t off[2];
        Offsets<2>(s, i, off);
        dst[off[1]] = src[off[0]];
    }
}

// ---------------------------------------------------------------------------------------------
// Unary

template <int Op, typename T>
__device__ __forceinline__ T UnaryApply(T x, T alpha, T beta) {
    const T zero = T(0);
    const T one = T(1);
    if constexpr (Op == uAffine) {
        return alpha * x + beta;
    } else if constexpr (Op == uExp) {
        return Exp(x);
    } else if constexpr (Op == uLog) {
        return Log(x);
    } else if constexpr (Op == uLog1p) {
        return Log1p(x);
    } else if constexpr (Op == uSqrt) {
        return Sqrt(x);
    } else if constexpr (Op == uAbs) {
        return Abs(x);
    } else if constexpr (Op == uSign) {
        return x > zero ? one : (x < zero ? -one : x);  // zeros keep their sign, NaN stays NaN
    } else if constexpr (Op == uRelu) {
        return (x > zero || IsNaN(x)) ? x : zero;
    } else if constexpr (Op == uLeakyRelu) {
        return x > zero ? x : alpha * x;
    } else if constexpr (Op == uTanh) {
        return Tanh(x);
    } else if constexpr (Op == uSigmoid) {
        if (x >= zero) {
            return one / (one + Exp(-x));
        }
        T e = Exp(x);
        return e / (one + e);
    } else if constexpr (Op == uSoftplus) {
        // Evaluated in double and rounded once, as the reference does for float32.
        const double xd = static_cast<double>(x);
        return static_cast<T>((xd > 0.0 ? xd : 0.0) + log1p(exp(-fabs(xd))));
    } else if constexpr (Op == uErf) {
        return static_cast<T>(erf(static_cast<double>(x)));
    } else if constexpr (Op == uReciprocal) {
        return one / x;
    } else if constexpr (Op == uPowScalar) {
        return Pow(x, alpha);
    } else if constexpr (Op == uClamp) {
        if (IsNaN(x)) {
            return x;
        }
        T t = x < alpha ? alpha : x;
        return t > beta ? beta : t;
    } else if constexpr (Op == uSin) {
        return Sin(x);
    } else if constexpr (Op == uCos) {
        return Cos(x);
    } else if constexpr (Op == uExpm1) {
        // Evaluated in double and rounded once, as the reference does for float32.
        return static_cast<T>(expm1(static_cast<double>(x)));
    } else {
        static_assert(Op < 0, "a unary op of HK_UNARY_OPS has no body in UnaryApply");
        return x;
    }
}

template <int Op, typename T>
__global__ void UnaryKernel(const T* x, T* y, int64_t n, T alpha, T beta) {
    HK_GRID_LOOP(i, n) { y[i] = UnaryApply<Op, T>(x[i], alpha, beta); }
}

// Integral alpha and beta: wrapping integer arithmetic (unsigned, so that overflow is defined and
// matches C# unchecked long arithmetic).
__global__ void AffineInt64Kernel(const int64_t* x, int64_t* y, int64_t n, int64_t alpha, int64_t beta) {
    HK_GRID_LOOP(i, n) {
        y[i] = static_cast<int64_t>(static_cast<uint64_t>(alpha) * static_cast<uint64_t>(x[i]) +
                                    static_cast<uint64_t>(beta));
    }
}

// Fractional alpha or beta: y = (long)(alpha * x + beta) in double, truncating and saturating.
__global__ void AffineTruncatingInt64Kernel(const int64_t* x, int64_t* y, int64_t n, double alpha, double beta) {
    HK_GRID_LOOP(i, n) { y[i] = SaturateToInt64(alpha * static_cast<double>(x[i]) + beta); }
}

bool IsSmallIntegral(double v) {
    return trunc(v) == v && fabs(v) < 9.2e18;
}

template <typename T>
cudaError_t LaunchUnary(int32_t op, const void* xv, void* yv, int64_t n, double alpha, double beta,
                        cudaStream_t stream) {
    const T* x = static_cast<const T*>(xv);
    T* y = static_cast<T*>(yv);
    T a = static_cast<T>(alpha);
    T b = static_cast<T>(beta);
    unsigned blocks = BlocksFor(n);
#define HK_UNARY_CASE(kind, name, value) \
    case u##name: UnaryKernel<u##name, T><<<blocks, kThreads, 0, stream>>>(x, y, n, a, b); break;
    switch (op) {
        HK_UNARY_OPS(HK_UNARY_CASE)
        default: return cudaErrorInvalidValue;
    }
#undef HK_UNARY_CASE
    return cudaGetLastError();
}

// ---------------------------------------------------------------------------------------------
// Binary, compare and where with broadcasting (y contiguous; a, b strided, stride 0 broadcasts)

template <int Op, typename T>
__device__ __forceinline__ T BinaryApply(T a, T b) {
    if constexpr (Op == bAdd) {
        return a + b;
    } else if constexpr (Op == bSub) {
        return a - b;
    } else if constexpr (Op == bMul) {
        return a * b;
    } else if constexpr (Op == bDiv) {
        return a / b;
    } else if constexpr (Op == bPow) {
        return Pow(a, b);
    } else if constexpr (Op == bMaximum) {
        if (IsNaN(a) || IsNaN(b)) {
            return a + b;  // NaN
        }
        return a > b ? a : b;
    } else if constexpr (Op == bMinimum) {
        if (IsNaN(a) || IsNaN(b)) {
            return a + b;
        }
        return a < b ? a : b;
    } else {
        static_assert(Op == bReluGrad, "unknown binary op");
        return b > T(0) ? a : T(0);  // NaN in b compares false: 0
    }
}

// Int64 add/sub/mul wrap like C# unchecked arithmetic.
template <int Op>
__device__ __forceinline__ int64_t BinaryApplyInt64(int64_t a, int64_t b) {
    const uint64_t ua = static_cast<uint64_t>(a);
    const uint64_t ub = static_cast<uint64_t>(b);
    if constexpr (Op == bAdd) {
        return static_cast<int64_t>(ua + ub);
    } else if constexpr (Op == bSub) {
        return static_cast<int64_t>(ua - ub);
    } else if constexpr (Op == bMul) {
        return static_cast<int64_t>(ua * ub);
    } else if constexpr (Op == bMaximum) {
        return a > b ? a : b;
    } else {
        static_assert(Op == bMinimum, "unsupported int64 binary op");
        return a < b ? a : b;
    }
}

template <int Op, typename T>
struct BinaryFunctor {
    using Out = T;
    __device__ __forceinline__ T operator()(T a, T b) const { return BinaryApply<Op, T>(a, b); }
};

template <int Op>
struct BinaryInt64Functor {
    using Out = int64_t;
    __device__ __forceinline__ int64_t operator()(int64_t a, int64_t b) const {
        return BinaryApplyInt64<Op>(a, b);
    }
};

template <int Op, typename T>
struct CompareFunctor {
    using Out = uint8_t;
    __device__ __forceinline__ uint8_t operator()(T a, T b) const {
        bool r;
        if constexpr (Op == cEq) {
            r = a == b;
        } else if constexpr (Op == cNe) {
            r = a != b;
        } else if constexpr (Op == cLt) {
            r = a < b;
        } else if constexpr (Op == cLe) {
            r = a <= b;
        } else if constexpr (Op == cGt) {
            r = a > b;
        } else {
            static_assert(Op == cGe, "unknown compare op");
            r = a >= b;
        }
        return r ? 1 : 0;
    }
};

template <typename F, typename T>
__global__ void ElementwiseContiguousKernel(const T* a, const T* b, typename F::Out* y, int64_t n) {
    F f;
    HK_GRID_LOOP(i, n) { y[i] = f(a[i], b[i]); }
}

template <typename F, typename T>
__global__ void ElementwiseStridedKernel(const T* a, const T* b, typename F::Out* y, int64_t n, Strided s) {
    F f;
    HK_GRID_LOOP(i, n) {
        int64_t off[2];
        Offsets<2>(s, i, off);
        y[i] = f(a[off[0]], b[off[1]]);
    }
}

template <typename F, typename T>
cudaError_t LaunchElementwise(const void* av, const void* bv, void* yv, int32_t rank, const int64_t* shape,
                              const int64_t* aStrides, const int64_t* bStrides, cudaStream_t stream) {
    const int64_t* strides[2] = {aStrides, bStrides};
    Strided s;
    int64_t n;
    if (!MakeStrided(rank, shape, strides, 2, &s, &n)) {
        return cudaErrorInvalidValue;
    }
    if (n == 0) {
        return cudaSuccess;
    }
    const T* a = static_cast<const T*>(av);
    const T* b = static_cast<const T*>(bv);
    auto* y = static_cast<typename F::Out*>(yv);
    if (IsContiguous1D(rank, strides, 2)) {
        ElementwiseContiguousKernel<F, T><<<BlocksFor(n), kThreads, 0, stream>>>(a, b, y, n);
    } else {
        ElementwiseStridedKernel<F, T><<<BlocksFor(n), kThreads, 0, stream>>>(a, b, y, n, s);
    }
    return cudaGetLastError();
}

template <typename T>
cudaError_t DispatchBinaryFloat(int32_t op, const void* a, const void* b, void* y, int32_t rank,
                                const int64_t* shape, const int64_t* as, const int64_t* bs, cudaStream_t stream) {
    switch (op) {
        case bAdd: return LaunchElementwise<BinaryFunctor<bAdd, T>, T>(a, b, y, rank, shape, as, bs, stream);
        case bSub: return LaunchElementwise<BinaryFunctor<bSub, T>, T>(a, b, y, rank, shape, as, bs, stream);
        case bMul: return LaunchElementwise<BinaryFunctor<bMul, T>, T>(a, b, y, rank, shape, as, bs, stream);
        case bDiv: return LaunchElementwise<BinaryFunctor<bDiv, T>, T>(a, b, y, rank, shape, as, bs, stream);
        case bPow: return LaunchElementwise<BinaryFunctor<bPow, T>, T>(a, b, y, rank, shape, as, bs, stream);
        case bMaximum: return LaunchElementwise<BinaryFunctor<bMaximum, T>, T>(a, b, y, rank, shape, as, bs, stream);
        case bMinimum: return LaunchElementwise<BinaryFunctor<bMinimum, T>, T>(a, b, y, rank, shape, as, bs, stream);
        case bReluGrad: return LaunchElementwise<BinaryFunctor<bReluGrad, T>, T>(a, b, y, rank, shape, as, bs, stream);
        default: return cudaErrorInvalidValue;
    }
}

cudaError_t DispatchBinaryInt64(int32_t op, const void* a, const void* b, void* y, int32_t rank,
                                const int64_t* shape, const int64_t* as, const int64_t* bs, cudaStream_t stream) {
    switch (op) {
        case bAdd: return LaunchElementwise<BinaryInt64Functor<bAdd>, int64_t>(a, b, y, rank, shape, as, bs, stream);
        case bSub: return LaunchElementwise<BinaryInt64Functor<bSub>, int64_t>(a, b, y, rank, shape, as, bs, stream);
        case bMul: return LaunchElementwise<BinaryInt64Functor<bMul>, int64_t>(a, b, y, rank, shape, as, bs, stream);
        case bMaximum: return LaunchElementwise<BinaryInt64Functor<bMaximum>, int64_t>(a, b, y, rank, shape, as, bs, stream);
        case bMinimum: return LaunchElementwise<BinaryInt64Functor<bMinimum>, int64_t>(a, b, y, rank, shape, as, bs, stream);
        default: return cudaErrorNotSupported;
    }
}

template <typename T>
cudaError_t DispatchCompare(int32_t op, const void* a, const void* b, void* y, int32_t rank,
                            const int64_t* shape, const int64_t* as, const int64_t* bs, cudaStream_t stream) {
    switch (op) {
        case cEq: return LaunchElementwise<CompareFunctor<cEq, T>, T>(a, b, y, rank, shape, as, bs, stream);
        case cNe: return LaunchElementwise<CompareFunctor<cNe, T>, T>(a, b, y, rank, shape, as, bs, stream);
        case cLt: return LaunchElementwise<CompareFunctor<cLt, T>, T>(a, b, y, rank, shape, as, bs, stream);
        case cLe: return LaunchElementwise<CompareFunctor<cLe, T>, T>(a, b, y, rank, shape, as, bs, stream);
        case cGt: return LaunchElementwise<CompareFunctor<cGt, T>, T>(a, b, y, rank, shape, as, bs, stream);
        case cGe: return LaunchElementwise<CompareFunctor<cGe, T>, T>(a, b, y, rank, shape, as, bs, stream);
        default: return cudaErrorInvalidValue;
    }
}

template <typename T>
__global__ void WhereKernel(const uint8_t* c, const T* a, const T* b, T* y, int64_t n, Strided s) {
    HK_GRID_LOOP(i, n) {
        int64_t off[3];
        Offsets<3>(s, i, off);
        y[i] = c[off[0]] != 0 ? a[off[1]] : b[off[2]];
    }
}

// ---------------------------------------------------------------------------------------------
// Reductions: every output element reduces its own index space in a fixed order.

struct ReduceArgs {
    int32_t keptRank;
    int32_t reducedRank;
    int64_t keptShape[kMaxDims];
    int64_t keptStride[kMaxDims];
    int64_t reducedShape[kMaxDims];
    int64_t reducedStride[kMaxDims];
    int64_t outputs;
    int64_t reduced;
};

// Float32 sums accumulate in float64 (allowed by the contract, and closer to the reference).
template <typename T> struct Accumulator { using Type = T; };
template <> struct Accumulator<float> { using Type = double; };

template <typename T> struct Limits;
template <> struct Limits<float> {
    __device__ static double Lowest() { return -__longlong_as_double(0x7ff0000000000000LL); }
    __device__ static double Highest() { return __longlong_as_double(0x7ff0000000000000LL); }
};
template <> struct Limits<double> {
    __device__ static double Lowest() { return -__longlong_as_double(0x7ff0000000000000LL); }
    __device__ static double Highest() { return __longlong_as_double(0x7ff0000000000000LL); }
};
template <> struct Limits<int64_t> {
    __device__ static int64_t Lowest() { return INT64_MIN; }
    __device__ static int64_t Highest() { return INT64_MAX; }
};

template <int Op, typename T>
struct Reducer {
    using A = typename Accumulator<T>::Type;

    __device__ static A Init() {
        if constexpr (Op == rSum) {
            return A(0);
        } else if constexpr (Op == rMax) {
            return Limits<T>::Lowest();
        } else {
            return Limits<T>::Highest();
        }
    }

    __device__ static A Combine(A acc, A v) {
        if constexpr (Op == rSum) {
            if constexpr (std::is_integral<T>::value) {
                // int64: wrap like C# unchecked arithmetic.
                return static_cast<A>(static_cast<uint64_t>(acc) + static_cast<uint64_t>(v));
            } else {
                return acc + v;
            }
        } else {
            if (IsNaN(acc)) {
                return acc;
            }
            if (IsNaN(v)) {
                return v;
            }
            if constexpr (Op == rMax) {
                return v > acc ? v : acc;
            } else {
                return v < acc ? v : acc;
            }
        }
    }
};

__device__ __forceinline__ int64_t KeptOffset(const ReduceArgs& r, int64_t o) {
    int64_t off = 0;
#pragma unroll
    for (int d = kMaxDims - 1; d >= 0; --d) {
        if (d < r.keptRank) {
            off += (o % r.keptShape[d]) * r.keptStride[d];
            o /= r.keptShape[d];
        }
    }
    return off;
}

__device__ __forceinline__ int64_t ReducedOffset(const ReduceArgs& r, int64_t j) {
    int64_t off = 0;
#pragma unroll
    for (int d = kMaxDims - 1; d >= 0; --d) {
        if (d < r.reducedRank) {
            off += (j % r.reducedShape[d]) * r.reducedStride[d];
            j /= r.reducedShape[d];
        }
    }
    return off;
}

// One thread per output element; the reduced space is walked sequentially in row-major order
// with an odometer, so each step costs one addition in the common case.
template <int Op, typename T>
__global__ void ReduceThreadKernel(const T* x, T* y, ReduceArgs r) {
    using R = Reducer<Op, T>;
    using A = typename R::A;
    const int last = r.reducedRank - 1;
    HK_GRID_LOOP(o, r.outputs) {
        int64_t off = KeptOffset(r, o);
        A acc = R::Init();
        int64_t idx[kMaxDims] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int64_t j = 0; j < r.reduced; ++j) {
            acc = R::Combine(acc, static_cast<A>(x[off]));
            for (int d = last; d >= 0; --d) {
                if (++idx[d] < r.reducedShape[d]) {
                    off += r.reducedStride[d];
                    break;
                }
                off -= (r.reducedShape[d] - 1) * r.reducedStride[d];
                idx[d] = 0;
            }
        }
        y[o] = static_cast<T>(acc);
    }
}

// One block of kThreads per output element: thread t folds elements t, t + kThreads, ... in order,
// then a fixed shared-memory tree combines the partials. The order depends only on the shape.
template <int Op, typename T>
__global__ void ReduceBlockKernel(const T* x, T* y, ReduceArgs r) {
    using R = Reducer<Op, T>;
    using A = typename R::A;
    __shared__ A partial[kThreads];
    const int t = static_cast<int>(threadIdx.x);
    for (int64_t o = blockIdx.x; o < r.outputs; o += gridDim.x) {
        const int64_t base = KeptOffset(r, o);
        A acc = R::Init();
        for (int64_t j = t; j < r.reduced; j += kThreads) {
            acc = R::Combine(acc, static_cast<A>(x[base + ReducedOffset(r, j)]));
        }
        partial[t] = acc;
        __syncthreads();
        for (int width = kThreads / 2; width > 0; width >>= 1) {
            if (t < width) {
                partial[t] = R::Combine(partial[t], partial[t + width]);
            }
            __syncthreads();
        }
        if (t == 0) {
            y[o] = static_cast<T>(partial[0]);
        }
        __syncthreads();
    }
}

template <int Op, typename T>
cudaError_t LaunchReduce(const void* x, void* y, const ReduceArgs& r, cudaStream_t stream) {
    const T* xs = static_cast<const T*>(x);
    T* ys = static_cast<T*>(y);
    // A shape-only choice, so the summation order (and the bits) never depend on the device.
    const bool innerContiguous = r.reducedRank > 0 && r.reducedStride[r.reducedRank - 1] == 1;
    const bool useBlock = r.reduced >= 256 && (r.outputs <= 4096 || innerContiguous);
    if (useBlock) {
        const int64_t blocks = r.outputs < kMaxBlocks ? r.outputs : kMaxBlocks;
        ReduceBlockKernel<Op, T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(xs, ys, r);
    } else {
        ReduceThreadKernel<Op, T><<<BlocksFor(r.outputs), kThreads, 0, stream>>>(xs, ys, r);
    }
    return cudaGetLastError();
}

template <typename T>
cudaError_t DispatchReduce(int32_t op, const void* x, void* y, const ReduceArgs& r, cudaStream_t stream) {
    switch (op) {
        case rSum: return LaunchReduce<rSum, T>(x, y, r, stream);
        case rMax: return LaunchReduce<rMax, T>(x, y, r, stream);
        case rMin: return LaunchReduce<rMin, T>(x, y, r, stream);
        default: return cudaErrorInvalidValue;
    }
}

// ---------------------------------------------------------------------------------------------
// Arg-reduce along one axis of [outer, size, inner]: first extreme index, NaN counts as extreme.

template <int Op, typename T>
__global__ void ArgReduceKernel(const T* x, T* values, int64_t* indices, int64_t outer, int64_t size,
                                int64_t inner) {
    HK_GRID_LOOP(t, outer * inner) {
        const int64_t o = t / inner;
        const int64_t i = t % inner;
        const T* p = x + o * size * inner + i;
        T best = p[0];
        int64_t bestIndex = 0;
        if (!IsNaN(best)) {
            for (int64_t j = 1; j < size; ++j) {
                const T v = p[j * inner];
                if (IsNaN(v)) {
                    best = v;
                    bestIndex = j;
                    break;
                }
                if (Op == rMax ? v > best : v < best) {
                    best = v;
                    bestIndex = j;
                }
            }
        }
        values[t] = best;
        indices[t] = bestIndex;
    }
}

template <typename T>
cudaError_t LaunchArgReduce(int32_t op, const void* x, void* values, void* indices, int64_t outer,
                            int64_t size, int64_t inner, cudaStream_t stream) {
    const T* xs = static_cast<const T*>(x);
    T* vs = static_cast<T*>(values);
    int64_t* is = static_cast<int64_t*>(indices);
    const unsigned blocks = BlocksFor(outer * inner);
    switch (op) {
        case rMax: ArgReduceKernel<rMax, T><<<blocks, kThreads, 0, stream>>>(xs, vs, is, outer, size, inner); break;
        case rMin: ArgReduceKernel<rMin, T><<<blocks, kThreads, 0, stream>>>(xs, vs, is, outer, size, inner); break;
        default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

// ---------------------------------------------------------------------------------------------
// Gather / index-select (dtype-agnostic) and scatter-add / index-add (one thread per destination)

template <typename T>
__global__ void GatherKernel(const T* x, const int64_t* index, T* y, int64_t outer, int64_t xSize,
                             int64_t inner, int64_t indexSize) {
    HK_GRID_LOOP(t, outer * indexSize * inner) {
        const int64_t i = t % inner;
        const int64_t o = t / inner / indexSize;
        y[t] = x[(o * xSize + index[t]) * inner + i];
    }
}

template <typename T>
__global__ void IndexSelectKernel(const T* x, const int64_t* index, T* y, int64_t outer, int64_t xSize,
                                  int64_t inner, int64_t indexSize) {
    HK_GRID_LOOP(t, outer * indexSize * inner) {
        const int64_t i = t % inner;
        const int64_t rest = t / inner;
        const int64_t j = rest % indexSize;
        const int64_t o = rest / indexSize;
        y[t] = x[(o * xSize + index[j]) * inner + i];
    }
}

template <typename T>
__device__ __forceinline__ T AddInOrder(T acc, T v) {
    return acc + v;
}

template <>
__device__ __forceinline__ int64_t AddInOrder<int64_t>(int64_t acc, int64_t v) {
    return static_cast<int64_t>(static_cast<uint64_t>(acc) + static_cast<uint64_t>(v));
}

// destination[o, index[o, j, i], i] += source[o, j, i], j ascending, without atomics.
template <typename T>
__global__ void ScatterAddKernel(T* dst, const int64_t* index, const T* src, int64_t outer, int64_t dstSize,
                                 int64_t inner, int64_t indexSize) {
    HK_GRID_LOOP(t, outer * dstSize * inner) {
        const int64_t i = t % inner;
        const int64_t rest = t / inner;
        const int64_t d = rest % dstSize;
        const int64_t o = rest / dstSize;
        T acc = dst[t];
        for (int64_t j = 0; j < indexSize; ++j) {
            const int64_t p = (o * indexSize + j) * inner + i;
            if (index[p] == d) {
                acc = AddInOrder(acc, src[p]);
            }
        }
        dst[t] = acc;
    }
}

// destination[o, index[j], i] += source[o, j, i], j ascending, without atomics.
template <typename T>
__global__ void IndexAddKernel(T* dst, const int64_t* index, const T* src, int64_t outer, int64_t dstSize,
                               int64_t inner, int64_t indexSize) {
    HK_GRID_LOOP(t, outer * dstSize * inner) {
        const int64_t i = t % inner;
        const int64_t rest = t / inner;
        const int64_t d = rest % dstSize;
        const int64_t o = rest / dstSize;
        T acc = dst[t];
        for (int64_t j = 0; j < indexSize; ++j) {
            if (index[j] == d) {
                acc = AddInOrder(acc, src[(o * indexSize + j) * inner + i]);
            }
        }
        dst[t] = acc;
    }
}

template <typename T>
cudaError_t LaunchAccumulate(bool scatter, void* dst, const void* index, const void* src, int64_t outer,
                             int64_t dstSize, int64_t inner, int64_t indexSize, cudaStream_t stream) {
    T* d = static_cast<T*>(dst);
    const int64_t* ix = static_cast<const int64_t*>(index);
    const T* s = static_cast<const T*>(src);
    const unsigned blocks = BlocksFor(outer * dstSize * inner);
    if (scatter) {
        ScatterAddKernel<T><<<blocks, kThreads, 0, stream>>>(d, ix, s, outer, dstSize, inner, indexSize);
    } else {
        IndexAddKernel<T><<<blocks, kThreads, 0, stream>>>(d, ix, s, outer, dstSize, inner, indexSize);
    }
    return cudaGetLastError();
}

// ---------------------------------------------------------------------------------------------
// Philox4x32-10, word for word the specification in src/Higher.Abstractions/Philox.cs.

struct PhiloxWords {
    uint32_t x0, x1, x2, x3;
};

__host__ __device__ __forceinline__ PhiloxWords PhiloxBlock(uint64_t seed, uint64_t counter) {
    const uint32_t m0 = 0xD2511F53u, m1 = 0xCD9E8D57u, w0 = 0x9E3779B9u, w1 = 0xBB67AE85u;
    uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    for (int round = 0; round < 10; ++round) {
        const uint64_t p0 = static_cast<uint64_t>(m0) * c0;
        const uint64_t p1 = static_cast<uint64_t>(m1) * c2;
        const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
        const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += w0;
        k1 += w1;
    }
    return PhiloxWords{c0, c1, c2, c3};
}

__host__ __device__ __forceinline__ double ToUnit(uint32_t hi, uint32_t lo) {
    const double twoPow53Inv = 1.0 / 9007199254740992.0;
    return static_cast<double>(((static_cast<uint64_t>(hi) << 32) | lo) >> 11) * twoPow53Inv;
}

// The same expressions as Philox.Uniform / Philox.Normal, evaluated in double.
__host__ __device__ __forceinline__ double PhiloxSample(int32_t distribution, uint64_t seed, uint64_t counter) {
    const PhiloxWords w = PhiloxBlock(seed, counter);
    const double u1 = ToUnit(w.x0, w.x1);
    if (distribution == dUniform) {
        return u1;
    }
    const double u2 = ToUnit(w.x2, w.x3);
    const double pi = 3.141592653589793238462643383279502884;
    return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * pi * u2);
}

// The largest value below x (x finite or +inf), by stepping the bit pattern, as .NET's BitDecrement.
__device__ __forceinline__ float NextDown(float x) {
    if (x == 0.0f) {
        return __int_as_float(static_cast<int>(0x80000001u));
    }
    const int bits = __float_as_int(x);
    return __int_as_float(x > 0.0f ? bits - 1 : bits + 1);
}
__device__ __forceinline__ double NextDown(double x) {
    if (x == 0.0) {
        return __longlong_as_double(static_cast<long long>(0x8000000000000001ull));
    }
    const long long bits = __double_as_longlong(x);
    return __longlong_as_double(x > 0.0 ? bits - 1 : bits + 1);
}

// A uniform draw that rounding carried up to `high` becomes the largest value below it, as in the
// Reference backend, so draws stay in [low, high).
template <typename T>
__global__ void RandomKernel(T* y, int64_t n, int32_t distribution, uint64_t seed, uint64_t offset, double a,
                             double b) {
    const bool clampHigh = distribution == dUniform && b > a;
    const T high = static_cast<T>(b);
    HK_GRID_LOOP(i, n) {
        const double s = PhiloxSample(distribution, seed, offset + static_cast<uint64_t>(i));
        const double v = distribution == dUniform ? a + (b - a) * s : a + b * s;
        T t = static_cast<T>(v);
        if (clampHigh && t >= high) {
            t = NextDown(high);
        }
        y[i] = t;
    }
}

// ---------------------------------------------------------------------------------------------
// C := beta * C for a batch of matrices (GEMM with k == 0, which cuBLAS does not accept).

template <typename T>
__global__ void ScaleBatchedKernel(T* c, int64_t batch, int64_t count, int64_t stride, T beta) {
    HK_GRID_LOOP(t, batch * count) {
        T* p = c + (t / count) * stride + (t % count);
        *p = beta == T(0) ? T(0) : beta * *p;
    }
}

// ---------------------------------------------------------------------------------------------
// Convolution and pooling. Geometries arrive as int32 arrays in the field order of
// Higher.ConvGeometry / Higher.PoolGeometry and are copied into by-value kernel parameters.
// Convolutions are im2col + cuBLAS (driven by the managed side); the column matrix of an image has
// row r = (c·kh + p)·kw + q over all C input channels (so group g's rows are one contiguous range)
// and column i·OW + j. The adjoints gather: each output element is summed by one thread in a fixed
// order, so nothing needs atomics.

struct ConvGeo {
    int32_t n, c, h, w, o, kh, kw, oh, ow, sh, sw, pt, pl, dh, dw, groups;
};

struct PoolGeo {
    int32_t planes, h, w, oh, ow, kh, kw, sh, sw, pt, pl, dh, dw;
};

// cols[t·imageStride + r·rowStride + pix] for images n0 .. n0 + count - 1 (0 outside the input).
template <typename T>
__global__ void Im2ColKernel(const T* x, T* cols, ConvGeo g, int64_t n0, int64_t count, int64_t imageStride,
                             int64_t rowStride) {
    const int64_t pixels = static_cast<int64_t>(g.oh) * g.ow;
    const int64_t rows = static_cast<int64_t>(g.c) * g.kh * g.kw;
    HK_GRID_LOOP(e, count * rows * pixels) {
        const int64_t pix = e % pixels;
        const int64_t r = (e / pixels) % rows;
        const int64_t t = e / (pixels * rows);
        const int j = static_cast<int>(pix % g.ow), i = static_cast<int>(pix / g.ow);
        const int q = static_cast<int>(r % g.kw), p = static_cast<int>((r / g.kw) % g.kh);
        const int64_t c = r / (static_cast<int64_t>(g.kw) * g.kh);
        const int hh = i * g.sh + p * g.dh - g.pt, ww = j * g.sw + q * g.dw - g.pl;
        T v = T(0);
        if (hh >= 0 && hh < g.h && ww >= 0 && ww < g.w) {
            v = x[(((n0 + t) * g.c + c) * g.h + hh) * g.w + ww];
        }
        cols[t * imageStride + r * rowStride + pix] = v;
    }
}

// gradX[n0 + t, c, h, w] = Σ over (p, q) ascending of the column entries that read (h, w); the
// column matrices are per image ([rows, pixels] each, imageStride = rows·pixels apart).
template <typename T>
__global__ void Col2ImKernel(const T* cols, T* dx, ConvGeo g, int64_t n0, int64_t count) {
    const int64_t pixels = static_cast<int64_t>(g.oh) * g.ow;
    const int64_t imageStride = static_cast<int64_t>(g.c) * g.kh * g.kw * pixels;
    const int64_t plane = static_cast<int64_t>(g.h) * g.w;
    HK_GRID_LOOP(e, count * g.c * plane) {
        const int ww = static_cast<int>(e % g.w), hh = static_cast<int>((e / g.w) % g.h);
        const int64_t c = (e / plane) % g.c, t = e / (plane * g.c);
        const T* image = cols + t * imageStride;
        T acc = T(0);
        for (int p = 0; p < g.kh; ++p) {
            const int a = hh + g.pt - p * g.dh;
            if (a < 0 || a % g.sh != 0 || a / g.sh >= g.oh) {
                continue;
            }
            const int i = a / g.sh;
            for (int q = 0; q < g.kw; ++q) {
                const int b = ww + g.pl - q * g.dw;
                if (b < 0 || b % g.sw != 0 || b / g.sw >= g.ow) {
                    continue;
                }
                acc += image[((c * g.kh + p) * g.kw + q) * pixels + static_cast<int64_t>(i) * g.ow + b / g.sw];
            }
        }
        dx[(n0 + t) * g.c * plane + c * plane + static_cast<int64_t>(hh) * g.w + ww] = acc;
    }
}

// dst[o, t·pixels + pix] = y[n0 + t, o, pix]: images side by side, so one GEMM sums over all of them.
template <typename T>
__global__ void GatherImagesKernel(const T* y, T* dst, int64_t channels, int64_t pixels, int64_t n0, int64_t count) {
    HK_GRID_LOOP(e, channels * count * pixels) {
        const int64_t pix = e % pixels, t = (e / pixels) % count, o = e / (pixels * count);
        dst[e] = y[((n0 + t) * channels + o) * pixels + pix];
    }
}

// The first NaN of the window wins; otherwise the first strictly greater element.
template <typename T>
__global__ void MaxPoolKernel(const T* x, T* y, int64_t* indices, PoolGeo g) {
    const int64_t outPlane = static_cast<int64_t>(g.oh) * g.ow;
    HK_GRID_LOOP(e, g.planes * outPlane) {
        const int j = static_cast<int>(e % g.ow), i = static_cast<int>((e / g.ow) % g.oh);
        const T* xp = x + (e / outPlane) * g.h * g.w;
        T best = T(0);
        int64_t at = -1;
        for (int p = 0; p < g.kh; ++p) {
            const int hh = i * g.sh + p * g.dh - g.pt;
            if (hh < 0 || hh >= g.h) {
                continue;
            }
            for (int q = 0; q < g.kw; ++q) {
                const int ww = j * g.sw + q * g.dw - g.pl;
                if (ww < 0 || ww >= g.w) {
                    continue;
                }
                const int64_t k = static_cast<int64_t>(hh) * g.w + ww;
                const T v = xp[k];
                if (at < 0 || (!isnan(best) && (v > best || isnan(v)))) {
                    best = v;
                    at = k;
                }
            }
        }
        y[e] = best;
        indices[e] = at;
    }
}

// One axis of an average-pooling window: its size clipped to the padded input, and the input range.
struct AvgAxis {
    int padded, lo, hi;
};

__device__ __forceinline__ AvgAxis AvgWindow(int start, int size, int k, int pad) {
    const int end = min(start + k, size + pad);
    return AvgAxis{end - start, max(start, 0), min(end, size)};
}

__device__ __forceinline__ double AvgDivisor(bool includePad, int32_t divisorOverride, AvgAxis r, AvgAxis c) {
    if (divisorOverride > 0) {
        return static_cast<double>(divisorOverride);
    }
    return includePad ? static_cast<double>(r.padded) * c.padded
                      : static_cast<double>(max(0, r.hi - r.lo)) * max(0, c.hi - c.lo);
}

template <typename T>
__global__ void AvgPoolKernel(const T* x, T* y, PoolGeo g, bool includePad, int32_t divisorOverride) {
    const int64_t outPlane = static_cast<int64_t>(g.oh) * g.ow;
    HK_GRID_LOOP(e, g.planes * outPlane) {
        const int j = static_cast<int>(e % g.ow), i = static_cast<int>((e / g.ow) % g.oh);
        const T* xp = x + (e / outPlane) * g.h * g.w;
        const AvgAxis r = AvgWindow(i * g.sh - g.pt, g.h, g.kh, g.pt);
        const AvgAxis c = AvgWindow(j * g.sw - g.pl, g.w, g.kw, g.pl);
        if (r.hi <= r.lo || c.hi <= c.lo) {
            y[e] = T(0);
            continue;
        }
        double sum = 0;
        for (int hh = r.lo; hh < r.hi; ++hh) {
            for (int ww = c.lo; ww < c.hi; ++ww) {
                sum += static_cast<double>(xp[static_cast<int64_t>(hh) * g.w + ww]);
            }
        }
        y[e] = static_cast<T>(sum / AvgDivisor(includePad, divisorOverride, r, c));
    }
}

// gradX[h, w] = Σ over the windows (i, j) covering (h, w), ascending, of gradY[i, j] / divisor(i, j).
template <typename T>
__global__ void AvgPoolGradKernel(const T* dy, T* dx, PoolGeo g, bool includePad, int32_t divisorOverride) {
    const int64_t plane = static_cast<int64_t>(g.h) * g.w;
    HK_GRID_LOOP(e, g.planes * plane) {
        const int ww = static_cast<int>(e % g.w), hh = static_cast<int>((e / g.w) % g.h);
        const T* gy = dy + (e / plane) * g.oh * g.ow;
        const int iLo = hh + g.pt - g.kh + 1 <= 0 ? 0 : (hh + g.pt - g.kh + g.sh) / g.sh;
        const int iHi = min(g.oh - 1, (hh + g.pt) / g.sh);
        const int jLo = ww + g.pl - g.kw + 1 <= 0 ? 0 : (ww + g.pl - g.kw + g.sw) / g.sw;
        const int jHi = min(g.ow - 1, (ww + g.pl) / g.sw);
        double sum = 0;
        for (int i = iLo; i <= iHi; ++i) {
            const AvgAxis r = AvgWindow(i * g.sh - g.pt, g.h, g.kh, g.pt);
            for (int j = jLo; j <= jHi; ++j) {
                const AvgAxis c = AvgWindow(j * g.sw - g.pl, g.w, g.kw, g.pl);
                sum += static_cast<double>(gy[static_cast<int64_t>(i) * g.ow + j]) / AvgDivisor(includePad, divisorOverride, r, c);
            }
        }
        dx[e] = static_cast<T>(sum);
    }
}

__device__ __forceinline__ int AdaptiveStart(int i, int size, int outSize) {
    return static_cast<int>(static_cast<int64_t>(i) * size / outSize);
}

__device__ __forceinline__ int AdaptiveEnd(int i, int size, int outSize) {
    return static_cast<int>((static_cast<int64_t>(i + 1) * size + outSize - 1) / outSize);
}

template <typename T>
__global__ void AdaptiveAvgPoolKernel(const T* x, T* y, int64_t planes, int h, int w, int oh, int ow) {
    const int64_t outPlane = static_cast<int64_t>(oh) * ow;
    HK_GRID_LOOP(e, planes * outPlane) {
        const int j = static_cast<int>(e % ow), i = static_cast<int>((e / ow) % oh);
        const T* xp = x + (e / outPlane) * h * w;
        const int r0 = AdaptiveStart(i, h, oh), r1 = AdaptiveEnd(i, h, oh);
        const int c0 = AdaptiveStart(j, w, ow), c1 = AdaptiveEnd(j, w, ow);
        double sum = 0;
        for (int r = r0; r < r1; ++r) {
            for (int c = c0; c < c1; ++c) {
                sum += static_cast<double>(xp[static_cast<int64_t>(r) * w + c]);
            }
        }
        y[e] = static_cast<T>(sum / (static_cast<double>(r1 - r0) * (c1 - c0)));
    }
}

// Windows i with start(i) <= r < end(i) are i in [r·OH / H, ((r + 1)·OH - 1) / H].
template <typename T>
__global__ void AdaptiveAvgPoolGradKernel(const T* dy, T* dx, int64_t planes, int h, int w, int oh, int ow) {
    const int64_t plane = static_cast<int64_t>(h) * w;
    HK_GRID_LOOP(e, planes * plane) {
        const int c = static_cast<int>(e % w), r = static_cast<int>((e / w) % h);
        const T* gy = dy + (e / plane) * oh * ow;
        const int iLo = static_cast<int>(static_cast<int64_t>(r) * oh / h);
        const int iHi = static_cast<int>((static_cast<int64_t>(r + 1) * oh - 1) / h);
        const int jLo = static_cast<int>(static_cast<int64_t>(c) * ow / w);
        const int jHi = static_cast<int>((static_cast<int64_t>(c + 1) * ow - 1) / w);
        double sum = 0;
        for (int i = iLo; i <= iHi; ++i) {
            const double rows = AdaptiveEnd(i, h, oh) - AdaptiveStart(i, h, oh);
            for (int j = jLo; j <= jHi; ++j) {
                sum += static_cast<double>(gy[static_cast<int64_t>(i) * ow + j]) / (rows * (AdaptiveEnd(j, w, ow) - AdaptiveStart(j, w, ow)));
            }
        }
        dx[e] = static_cast<T>(sum);
    }
}

ConvGeo ReadConv(const int32_t* v) {
    ConvGeo g;
    memcpy(&g, v, sizeof(g));
    return g;
}

PoolGeo ReadPool(const int32_t* v) {
    PoolGeo g;
    memcpy(&g, v, sizeof(g));
    return g;
}


}  // namespace

// =============================================================================================
// Exported ABI

HK_API cudaError_t hk_abi_version(int32_t* version) {
    if (version == nullptr) {
        return cudaErrorInvalidValue;
    }
    *version = kAbiVersion;
    return cudaSuccess;
}

// The hash of the op codes this library was compiled with (Higher.KernelOpSet.Hash on the
// managed side): a library built before an op was added or renumbered is refused, not misused.
HK_API cudaError_t hk_opset_hash(uint64_t* hash) {
    if (hash == nullptr) {
        return cudaErrorInvalidValue;
    }
    *hash = kOpSetHash;
    return cudaSuccess;
}

// The CUDA runtime version this library was compiled against (1000 * major + 10 * minor). It is
// a build constant, so it answers without a driver; the managed side loads the libcudart soname of
// the same major version so that the process holds a single runtime.
HK_API cudaError_t hk_runtime_version(int32_t* version) {
    if (version == nullptr) {
        return cudaErrorInvalidValue;
    }
    *version = CUDART_VERSION;
    return cudaSuccess;
}

// The device's marketing name ("NVIDIA H100 80GB HBM3"), NUL-terminated and cut to capacity bytes.
// Read here rather than by the managed side because cudaDeviceProp's layout changes between CUDA
// versions, and this library is always compiled against the headers of the runtime it links.
HK_API cudaError_t hk_device_name(int32_t device, char* name, int32_t capacity) {
    if (name == nullptr || capacity <= 0) {
        return cudaErrorInvalidValue;
    }
    cudaDeviceProp prop;
    const cudaError_t status = cudaGetDeviceProperties(&prop, device);
    if (status != cudaSuccess) {
        name[0] = '\0';
        return status;
    }
    const size_t length = strnlen(prop.name, sizeof(prop.name));
    const size_t n = length < static_cast<size_t>(capacity - 1) ? length : static_cast<size_t>(capacity - 1);
    memcpy(name, prop.name, n);
    name[n] = '\0';
    return cudaSuccess;
}

HK_API cudaError_t hk_fill(int32_t dtype, void* y, int64_t n, double value, cudaStream_t stream) {
    if (n <= 0) {
        return cudaSuccess;
    }
    switch (dtype) {
        case kFloat32: return LaunchFill<float>(y, n, static_cast<float>(value), stream);
        case kFloat64: return LaunchFill<double>(y, n, value, stream);
        case kInt64: return LaunchFill<int64_t>(y, n, SaturateToInt64(value), stream);
        case kBool: return LaunchFill<uint8_t>(y, n, static_cast<uint8_t>(value != 0.0 ? 1 : 0), stream);
        default: return cudaErrorInvalidValue;
    }
}

HK_API cudaError_t hk_cast(int32_t srcType, const void* x, int32_t dstType, void* y, int64_t n,
                           cudaStream_t stream) {
    if (n <= 0) {
        return cudaSuccess;
    }
    if (srcType == dstType) {
        const int size = ElementSize(srcType);
        if (size == 0) {
            return cudaErrorInvalidValue;
        }
        return cudaMemcpyAsync(y, x, static_cast<size_t>(n) * size, cudaMemcpyDeviceToDevice, stream);
    }
    switch (srcType) {
        case kFloat32: return LaunchCastFrom<float>(x, dstType, y, n, stream);
        case kFloat64: return LaunchCastFrom<double>(x, dstType, y, n, stream);
        case kInt64: return LaunchCastFrom<int64_t>(x, dstType, y, n, stream);
        case kBool: return LaunchCastFrom<uint8_t>(x, dstType, y, n, stream);
        default: return cudaErrorInvalidValue;
    }
}

HK_API cudaError_t hk_strided_copy(int32_t elementSize, const void* src, void* dst, int32_t rank,
                                   const int64_t* shape, const int64_t* srcStrides, const int64_t* dstStrides,
                                   cudaStream_t stream) {
    const int64_t* strides[2] = {srcStrides, dstStrides};
    Strided s;
    int64_t n;
    if (!MakeStrided(rank, shape, strides, 2, &s, &n)) {
        return cudaErrorInvalidValue;
    }
    if (n == 0) {
        return cudaSuccess;
    }
    if (IsContiguous1D(rank, strides, 2) || rank == 0) {
        return cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * elementSize, cudaMemcpyDeviceToDevice, stream);
    }
    const unsigned blocks = BlocksFor(n);
    switch (elementSize) {
        case 1: StridedCopyKernel<uint8_t><<<blocks, kThreads, 0, stream>>>(static_cast<const uint8_t*>(src), static_cast<uint8_t*>(dst), n, s); break;
        case 4: StridedCopyKernel<uint32_t><<<blocks, kThreads, 0, stream>>>(static_cast<const uint32_t*>(src), static_cast<uint32_t*>(dst), n, s); break;
        case 8: StridedCopyKernel<uint64_t><<<blocks, kThreads, 0, stream>>>(static_cast<const uint64_t*>(src), static_cast<uint64_t*>(dst), n, s); break;
        default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

HK_API cudaError_t hk_unary(int32_t op, int32_t dtype, const void* x, void* y, int64_t n, double alpha,
                            double beta, cudaStream_t stream) {
    if (n <= 0) {
        return cudaSuccess;
    }
    switch (dtype) {
        case kFloat32: return LaunchUnary<float>(op, x, y, n, alpha, beta, stream);
        case kFloat64: return LaunchUnary<double>(op, x, y, n, alpha, beta, stream);
        case kInt64:
            if (op != uAffine) {
                return cudaErrorNotSupported;
            }
            if (IsSmallIntegral(alpha) && IsSmallIntegral(beta)) {
                AffineInt64Kernel<<<BlocksFor(n), kThreads, 0, stream>>>(
                    static_cast<const int64_t*>(x), static_cast<int64_t*>(y), n, static_cast<int64_t>(alpha),
                    static_cast<int64_t>(beta));
            } else {
                AffineTruncatingInt64Kernel<<<BlocksFor(n), kThreads, 0, stream>>>(
                    static_cast<const int64_t*>(x), static_cast<int64_t*>(y), n, alpha, beta);
            }
            return cudaGetLastError();
        default: return cudaErrorNotSupported;
    }
}

HK_API cudaError_t hk_scaled_add(int32_t dtype, const void* a, const void* b, void* y, int64_t n, double alpha,
                                 cudaStream_t stream) {
    if (n <= 0) {
        return cudaSuccess;
    }
    switch (dtype) {
        case kFloat32: return LaunchScaledAdd<float>(a, b, y, n, static_cast<float>(alpha), stream);
        case kFloat64: return LaunchScaledAdd<double>(a, b, y, n, alpha, stream);
        default: return cudaErrorNotSupported;
    }
}

HK_API cudaError_t hk_binary(int32_t op, int32_t dtype, const void* a, const void* b, void* y, int32_t rank,
                             const int64_t* shape, const int64_t* aStrides, const int64_t* bStrides,
                             cudaStream_t stream) {
    switch (dtype) {
        case kFloat32: return DispatchBinaryFloat<float>(op, a, b, y, rank, shape, aStrides, bStrides, stream);
        case kFloat64: return DispatchBinaryFloat<double>(op, a, b, y, rank, shape, aStrides, bStrides, stream);
        case kInt64: return DispatchBinaryInt64(op, a, b, y, rank, shape, aStrides, bStrides, stream);
        default: return cudaErrorNotSupported;
    }
}

HK_API cudaError_t hk_compare(int32_t op, int32_t dtype, const void* a, const void* b, void* y, int32_t rank,
                              const int64_t* shape, const int64_t* aStrides, const int64_t* bStrides,
                              cudaStream_t stream) {
    switch (dtype) {
        case kFloat32: return DispatchCompare<float>(op, a, b, y, rank, shape, aStrides, bStrides, stream);
        case kFloat64: return DispatchCompare<double>(op, a, b, y, rank, shape, aStrides, bStrides, stream);
        case kInt64: return DispatchCompare<int64_t>(op, a, b, y, rank, shape, aStrides, bStrides, stream);
        case kBool: return DispatchCompare<uint8_t>(op, a, b, y, rank, shape, aStrides, bStrides, stream);
        default: return cudaErrorInvalidValue;
    }
}

HK_API cudaError_t hk_where(int32_t elementSize, const void* condition, const void* a, const void* b, void* y,
                            int32_t rank, const int64_t* shape, const int64_t* conditionStrides,
                            const int64_t* aStrides, const int64_t* bStrides, cudaStream_t stream) {
    const int64_t* strides[3] = {conditionStrides, aStrides, bStrides};
    Strided s;
    int64_t n;
    if (!MakeStrided(rank, shape, strides, 3, &s, &n)) {
        return cudaErrorInvalidValue;
    }
    if (n == 0) {
        return cudaSuccess;
    }
    const uint8_t* c = static_cast<const uint8_t*>(condition);
    const unsigned blocks = BlocksFor(n);
    switch (elementSize) {
        case 1: WhereKernel<uint8_t><<<blocks, kThreads, 0, stream>>>(c, static_cast<const uint8_t*>(a), static_cast<const uint8_t*>(b), static_cast<uint8_t*>(y), n, s); break;
        case 4: WhereKernel<uint32_t><<<blocks, kThreads, 0, stream>>>(c, static_cast<const uint32_t*>(a), static_cast<const uint32_t*>(b), static_cast<uint32_t*>(y), n, s); break;
        case 8: WhereKernel<uint64_t><<<blocks, kThreads, 0, stream>>>(c, static_cast<const uint64_t*>(a), static_cast<const uint64_t*>(b), static_cast<uint64_t*>(y), n, s); break;
        default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

HK_API cudaError_t hk_reduce(int32_t op, int32_t dtype, const void* x, void* y, int32_t keptRank,
                             const int64_t* keptShape, const int64_t* keptStrides, int32_t reducedRank,
                             const int64_t* reducedShape, const int64_t* reducedStrides, cudaStream_t stream) {
    if (keptRank < 0 || keptRank > kMaxDims || reducedRank < 0 || reducedRank > kMaxDims) {
        return cudaErrorInvalidValue;
    }
    ReduceArgs r{};
    r.keptRank = keptRank;
    r.reducedRank = reducedRank;
    r.outputs = 1;
    r.reduced = 1;
    for (int d = 0; d < keptRank; ++d) {
        r.keptShape[d] = keptShape[d];
        r.keptStride[d] = keptStrides[d];
        r.outputs *= keptShape[d];
    }
    for (int d = 0; d < reducedRank; ++d) {
        r.reducedShape[d] = reducedShape[d];
        r.reducedStride[d] = reducedStrides[d];
        r.reduced *= reducedShape[d];
    }
    if (r.outputs == 0) {
        return cudaSuccess;
    }
    switch (dtype) {
        case kFloat32: return DispatchReduce<float>(op, x, y, r, stream);
        case kFloat64: return DispatchReduce<double>(op, x, y, r, stream);
        case kInt64: return DispatchReduce<int64_t>(op, x, y, r, stream);
        default: return cudaErrorNotSupported;
    }
}

HK_API cudaError_t hk_argreduce(int32_t op, int32_t dtype, const void* x, void* values, void* indices,
                                int64_t outer, int64_t size, int64_t inner, cudaStream_t stream) {
    if (size <= 0) {
        return cudaErrorInvalidValue;
    }
    if (outer * inner == 0) {
        return cudaSuccess;
    }
    switch (dtype) {
        case kFloat32: return LaunchArgReduce<float>(op, x, values, indices, outer, size, inner, stream);
        case kFloat64: return LaunchArgReduce<double>(op, x, values, indices, outer, size, inner, stream);
        case kInt64: return LaunchArgReduce<int64_t>(op, x, values, indices, outer, size, inner, stream);
        default: return cudaErrorNotSupported;
    }
}

template <typename T>
static void LaunchSelect(bool gather, unsigned blocks, cudaStream_t stream, const void* x, const int64_t* ix, void* y,
                         int64_t outer, int64_t xSize, int64_t inner, int64_t indexSize) {
    const T* xs = static_cast<const T*>(x);
    T* ys = static_cast<T*>(y);
    if (gather) {
        GatherKernel<T><<<blocks, kThreads, 0, stream>>>(xs, ix, ys, outer, xSize, inner, indexSize);
    } else {
        IndexSelectKernel<T><<<blocks, kThreads, 0, stream>>>(xs, ix, ys, outer, xSize, inner, indexSize);
    }
}

// Gather and index-select move elements without arithmetic, so they dispatch on the element size only.
static cudaError_t Select(bool gather, int32_t elementSize, const void* x, const void* index, void* y, int64_t outer,
                          int64_t xSize, int64_t inner, int64_t indexSize, cudaStream_t stream) {
    const int64_t n = outer * indexSize * inner;
    if (n == 0) {
        return cudaSuccess;
    }
    const int64_t* ix = static_cast<const int64_t*>(index);
    const unsigned blocks = BlocksFor(n);
    switch (elementSize) {
        case 1: LaunchSelect<uint8_t>(gather, blocks, stream, x, ix, y, outer, xSize, inner, indexSize); break;
        case 4: LaunchSelect<uint32_t>(gather, blocks, stream, x, ix, y, outer, xSize, inner, indexSize); break;
        case 8: LaunchSelect<uint64_t>(gather, blocks, stream, x, ix, y, outer, xSize, inner, indexSize); break;
        default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

HK_API cudaError_t hk_gather(int32_t elementSize, const void* x, const void* index, void* y, int64_t outer,
                             int64_t xSize, int64_t inner, int64_t indexSize, cudaStream_t stream) {
    return Select(true, elementSize, x, index, y, outer, xSize, inner, indexSize, stream);
}

HK_API cudaError_t hk_index_select(int32_t elementSize, const void* x, const void* index, void* y,
                                   int64_t outer, int64_t xSize, int64_t inner, int64_t indexSize,
                                   cudaStream_t stream) {
    return Select(false, elementSize, x, index, y, outer, xSize, inner, indexSize, stream);
}

static cudaError_t Accumulate(bool scatter, int32_t dtype, void* dst, const void* index, const void* src,
                              int64_t outer, int64_t dstSize, int64_t inner, int64_t indexSize,
                              cudaStream_t stream) {
    if (outer * dstSize * inner == 0) {
        return cudaSuccess;
    }
    switch (dtype) {
        case kFloat32: return LaunchAccumulate<float>(scatter, dst, index, src, outer, dstSize, inner, indexSize, stream);
        case kFloat64: return LaunchAccumulate<double>(scatter, dst, index, src, outer, dstSize, inner, indexSize, stream);
        case kInt64: return LaunchAccumulate<int64_t>(scatter, dst, index, src, outer, dstSize, inner, indexSize, stream);
        default: return cudaErrorNotSupported;
    }
}

HK_API cudaError_t hk_scatter_add(int32_t dtype, void* dst, const void* index, const void* src, int64_t outer,
                                  int64_t dstSize, int64_t inner, int64_t indexSize, cudaStream_t stream) {
    return Accumulate(true, dtype, dst, index, src, outer, dstSize, inner, indexSize, stream);
}

HK_API cudaError_t hk_index_add(int32_t dtype, void* dst, const void* index, const void* src, int64_t outer,
                                int64_t dstSize, int64_t inner, int64_t indexSize, cudaStream_t stream) {
    return Accumulate(false, dtype, dst, index, src, outer, dstSize, inner, indexSize, stream);
}

HK_API cudaError_t hk_random(int32_t dtype, void* y, int64_t n, int32_t distribution, uint64_t seed,
                             uint64_t offset, double a, double b, cudaStream_t stream) {
    if (distribution != dUniform && distribution != dNormal) {
        return cudaErrorInvalidValue;
    }
    if (n <= 0) {
        return cudaSuccess;
    }
    switch (dtype) {
        case kFloat32: RandomKernel<float><<<BlocksFor(n), kThreads, 0, stream>>>(static_cast<float*>(y), n, distribution, seed, offset, a, b); break;
        case kFloat64: RandomKernel<double><<<BlocksFor(n), kThreads, 0, stream>>>(static_cast<double*>(y), n, distribution, seed, offset, a, b); break;
        default: return cudaErrorNotSupported;
    }
    return cudaGetLastError();
}

HK_API cudaError_t hk_scale_batched(int32_t dtype, void* c, int64_t batch, int64_t count, int64_t stride,
                                    double beta, cudaStream_t stream) {
    if (batch * count <= 0) {
        return cudaSuccess;
    }
    switch (dtype) {
        case kFloat32: ScaleBatchedKernel<float><<<BlocksFor(batch * count), kThreads, 0, stream>>>(static_cast<float*>(c), batch, count, stride, static_cast<float>(beta)); break;
        case kFloat64: ScaleBatchedKernel<double><<<BlocksFor(batch * count), kThreads, 0, stream>>>(static_cast<double*>(c), batch, count, stride, beta); break;
        default: return cudaErrorNotSupported;
    }
    return cudaGetLastError();
}

// ---- Convolution and pooling (ABI 3) -----------------------------------------------------------

// Column matrices of images n0 .. n0 + count - 1: entry (t, r, pix) at t·imageStride + r·rowStride + pix.
HK_API cudaError_t hk_im2col(int32_t dtype, const void* x, void* cols, const int32_t* geometry, int64_t n0,
                             int64_t count, int64_t imageStride, int64_t rowStride, cudaStream_t stream) {
    if (geometry == nullptr) {
        return cudaErrorInvalidValue;
    }
    const ConvGeo g = ReadConv(geometry);
    const int64_t n = count * g.c * g.kh * g.kw * g.oh * g.ow;
    if (n <= 0) {
        return cudaSuccess;
    }
    switch (dtype) {
        case kFloat32: Im2ColKernel<float><<<BlocksFor(n), kThreads, 0, stream>>>(static_cast<const float*>(x), static_cast<float*>(cols), g, n0, count, imageStride, rowStride); break;
        case kFloat64: Im2ColKernel<double><<<BlocksFor(n), kThreads, 0, stream>>>(static_cast<const double*>(x), static_cast<double*>(cols), g, n0, count, imageStride, rowStride); break;
        default: return cudaErrorNotSupported;
    }
    return cudaGetLastError();
}

// gradX of images n0 .. n0 + count - 1 from their per-image column matrices (fully written).
HK_API cudaError_t hk_col2im(int32_t dtype, const void* cols, void* dx, const int32_t* geometry, int64_t n0,
                             int64_t count, cudaStream_t stream) {
    if (geometry == nullptr) {
        return cudaErrorInvalidValue;
    }
    const ConvGeo g = ReadConv(geometry);
    const int64_t n = count * g.c * g.h * g.w;
    if (n <= 0) {
        return cudaSuccess;
    }
    switch (dtype) {
        case kFloat32: Col2ImKernel<float><<<BlocksFor(n), kThreads, 0, stream>>>(static_cast<const float*>(cols), static_cast<float*>(dx), g, n0, count); break;
        case kFloat64: Col2ImKernel<double><<<BlocksFor(n), kThreads, 0, stream>>>(static_cast<const double*>(cols), static_cast<double*>(dx), g, n0, count); break;
        default: return cudaErrorNotSupported;
    }
    return cudaGetLastError();
}

// dst[o, t·pixels + pix] = y[n0 + t, o, pix] for an [N, channels, pixels] tensor y.
HK_API cudaError_t hk_gather_images(int32_t dtype, const void* y, void* dst, int64_t channels, int64_t pixels, int64_t n0,
                                    int64_t count, cudaStream_t stream) {
    const int64_t n = channels * pixels * count;
    if (n <= 0) {
        return cudaSuccess;
    }
    switch (dtype) {
        case kFloat32: GatherImagesKernel<float><<<BlocksFor(n), kThreads, 0, stream>>>(static_cast<const float*>(y), static_cast<float*>(dst), channels, pixels, n0, count); break;
        case kFloat64: GatherImagesKernel<double><<<BlocksFor(n), kThreads, 0, stream>>>(static_cast<const double*>(y), static_cast<double*>(dst), channels, pixels, n0, count); break;
        default: return cudaErrorNotSupported;
    }
    return cudaGetLastError();
}

HK_API cudaError_t hk_max_pool2d(int32_t dtype, const void* x, void* y, void* indices, const int32_t* geometry,
                                 cudaStream_t stream) {
    if (geometry == nullptr) {
        return cudaErrorInvalidValue;
    }
    const PoolGeo g = ReadPool(geometry);
    const int64_t n = static_cast<int64_t>(g.planes) * g.oh * g.ow;
    if (n <= 0) {
        return cudaSuccess;
    }
    switch (dtype) {
        case kFloat32: MaxPoolKernel<float><<<BlocksFor(n), kThreads, 0, stream>>>(static_cast<const float*>(x), static_cast<float*>(y), static_cast<int64_t*>(indices), g); break;
        case kFloat64: MaxPoolKernel<double><<<BlocksFor(n), kThreads, 0, stream>>>(static_cast<const double*>(x), static_cast<double*>(y), static_cast<int64_t*>(indices), g); break;
        default: return cudaErrorNotSupported;
    }
    return cudaGetLastError();
}

HK_API cudaError_t hk_avg_pool2d(int32_t dtype, const void* x, void* y, const int32_t* geometry, int32_t countIncludePad,
                                 int32_t divisorOverride, cudaStream_t stream) {
    if (geometry == nullptr) {
        return cudaErrorInvalidValue;
    }
    const PoolGeo g = ReadPool(geometry);
    const int64_t n = static_cast<int64_t>(g.planes) * g.oh * g.ow;
    if (n <= 0) {
        return cudaSuccess;
    }
    const bool include = countIncludePad != 0;
    switch (dtype) {
        case kFloat32: AvgPoolKernel<float><<<BlocksFor(n), kThreads, 0, stream>>>(static_cast<const float*>(x), static_cast<float*>(y), g, include, divisorOverride); break;
        case kFloat64: AvgPoolKernel<double><<<BlocksFor(n), kThreads, 0, stream>>>(static_cast<const double*>(x), static_cast<double*>(y), g, include, divisorOverride); break;
        default: return cudaErrorNotSupported;
    }
    return cudaGetLastError();
}

HK_API cudaError_t hk_avg_pool2d_grad(int32_t dtype, const void* dy, void* dx, const int32_t* geometry,
                                      int32_t countIncludePad, int32_t divisorOverride, cudaStream_t stream) {
    if (geometry == nullptr) {
        return cudaErrorInvalidValue;
    }
    const PoolGeo g = ReadPool(geometry);
    const int64_t n = static_cast<int64_t>(g.planes) * g.h * g.w;
    if (n <= 0) {
        return cudaSuccess;
    }
    const bool include = countIncludePad != 0;
    switch (dtype) {
        case kFloat32: AvgPoolGradKernel<float><<<BlocksFor(n), kThreads, 0, stream>>>(static_cast<const float*>(dy), static_cast<float*>(dx), g, include, divisorOverride); break;
        case kFloat64: AvgPoolGradKernel<double><<<BlocksFor(n), kThreads, 0, stream>>>(static_cast<const double*>(dy), static_cast<double*>(dx), g, include, divisorOverride); break;
        default: return cudaErrorNotSupported;
    }
    return cudaGetLastError();
}

HK_API cudaError_t hk_adaptive_avg_pool2d(int32_t dtype, const void* x, void* y, int64_t planes, int32_t h, int32_t w,
                                          int32_t oh, int32_t ow, cudaStream_t stream) {
    const int64_t n = planes * oh * ow;
    if (n <= 0 || h <= 0 || w <= 0) {
        return n <= 0 ? cudaSuccess : cudaErrorInvalidValue;
    }
    switch (dtype) {
        case kFloat32: AdaptiveAvgPoolKernel<float><<<BlocksFor(n), kThreads, 0, stream>>>(static_cast<const float*>(x), static_cast<float*>(y), planes, h, w, oh, ow); break;
        case kFloat64: AdaptiveAvgPoolKernel<double><<<BlocksFor(n), kThreads, 0, stream>>>(static_cast<const double*>(x), static_cast<double*>(y), planes, h, w, oh, ow); break;
        default: return cudaErrorNotSupported;
    }
    return cudaGetLastError();
}

// Needs oh, ow >= 1 (the managed side fills zeros otherwise).
HK_API cudaError_t hk_adaptive_avg_pool2d_grad(int32_t dtype, const void* dy, void* dx, int64_t planes, int32_t h, int32_t w,
                                               int32_t oh, int32_t ow, cudaStream_t stream) {
    const int64_t n = planes * h * w;
    if (n <= 0) {
        return cudaSuccess;
    }
    if (oh <= 0 || ow <= 0) {
        return cudaErrorInvalidValue;
    }
    switch (dtype) {
        case kFloat32: AdaptiveAvgPoolGradKernel<float><<<BlocksFor(n), kThreads, 0, stream>>>(static_cast<const float*>(dy), static_cast<float*>(dx), planes, h, w, oh, ow); break;
        case kFloat64: AdaptiveAvgPoolGradKernel<double><<<BlocksFor(n), kThreads, 0, stream>>>(static_cast<const double*>(dy), static_cast<double*>(dx), planes, h, w, oh, ow); break;
        default: return cudaErrorNotSupported;
    }
    return cudaGetLastError();
}

// Host-side evaluation of the generator with the very code the kernels run, so that a machine
// without a GPU can check the counter words against Philox.cs.
HK_API cudaError_t hk_philox_host(uint64_t seed, uint64_t counter, uint32_t* words) {
    if (words == nullptr) {
        return cudaErrorInvalidValue;
    }
    const PhiloxWords w = PhiloxBlock(seed, counter);
    words[0] = w.x0;
    words[1] = w.x1;
    words[2] = w.x2;
    words[3] = w.x3;
    return cudaSuccess;
}

HK_API cudaError_t hk_random_host(int32_t distribution, uint64_t seed, uint64_t counter, double* value) {
    if (value == nullptr || (distribution != dUniform && distribution != dNormal)) {
        return cudaErrorInvalidValue;
    }
    *value = PhiloxSample(distribution, seed, counter);
    return cudaSuccess;
}

// ---- Batch normalization with batch statistics (ABI 5) ------------------------------------------
//
// x viewed as [N, C, S]: channel c's N·S values lie in blocks of S at (n·C + c)·S. One block of
// kThreads per channel: thread t folds values t, t + kThreads, ... in double, then the fixed
// shared-memory tree of ReduceBlockKernel combines the partials, so the order depends only on the shape.

namespace {

struct NormGeo {
    int64_t n, c, s;
    double eps;
};

__device__ __forceinline__ int64_t NormOffset(const NormGeo& g, int64_t c, int64_t j) {
    return ((j / g.s) * g.c + c) * g.s + (j % g.s);
}

// The block's total of v; every thread gets it. Leaves the shared buffer free for the next call.
__device__ double BlockTotal(double v, double* partial) {
    const int t = static_cast<int>(threadIdx.x);
    partial[t] = v;
    __syncthreads();
    for (int width = kThreads / 2; width > 0; width >>= 1) {
        if (t < width) {
            partial[t] += partial[t + width];
        }
        __syncthreads();
    }
    const double total = partial[0];
    __syncthreads();
    return total;
}

// μ and σ² rounded to T, and r = 1/√(σ² + eps) from the rounded σ², as the reference computes them.
template <typename T>
__global__ void BatchNormKernel(const T* x, const T* w, const T* b, T* y, T* mean, T* var, NormGeo g) {
    __shared__ double partial[kThreads];
    const int t = static_cast<int>(threadIdx.x);
    const int64_t count = g.n * g.s;
    for (int64_t c = blockIdx.x; c < g.c; c += gridDim.x) {
        double acc = 0;
        for (int64_t j = t; j < count; j += kThreads) {
            acc += static_cast<double>(x[NormOffset(g, c, j)]);
        }
        const T muT = static_cast<T>(BlockTotal(acc, partial) / static_cast<double>(count));
        const double mu = static_cast<double>(muT);
        acc = 0;
        for (int64_t j = t; j < count; j += kThreads) {
            const double d = static_cast<double>(x[NormOffset(g, c, j)]) - mu;
            acc += d * d;
        }
        const T varT = static_cast<T>(BlockTotal(acc, partial) / static_cast<double>(count));
        const double r = 1.0 / sqrt(static_cast<double>(varT) + g.eps);
        if (t == 0) {
            mean[c] = muT;
            var[c] = varT;
        }
        const double scaleD = r * static_cast<double>(w[c]);
        const T scale = static_cast<T>(scaleD);
        const T shift = static_cast<T>(static_cast<double>(b[c]) - (mu * scaleD));
        for (int64_t j = t; j < count; j += kThreads) {
            const int64_t o = NormOffset(g, c, j);
            y[o] = (x[o] * scale) + shift;
        }
    }
}

template <typename T>
__global__ void BatchNormInputGradKernel(const T* gy, const T* x, const T* mean, const T* var, const T* w, T* gx, NormGeo g) {
    __shared__ double partial[kThreads];
    const int t = static_cast<int>(threadIdx.x);
    const int64_t count = g.n * g.s;
    for (int64_t c = blockIdx.x; c < g.c; c += gridDim.x) {
        const double mu = static_cast<double>(mean[c]);
        const double r = 1.0 / sqrt(static_cast<double>(var[c]) + g.eps);
        double sg = 0, sgd = 0;
        for (int64_t j = t; j < count; j += kThreads) {
            const int64_t o = NormOffset(g, c, j);
            const double gv = static_cast<double>(gy[o]);
            sg += gv;
            sgd += gv * (static_cast<double>(x[o]) - mu);
        }
        const double sumG = BlockTotal(sg, partial);
        const double sumGD = BlockTotal(sgd, partial);
        // gx = gy·k - x·q + (q·μ - k·ḡ), k = w·r, q = w·r³·Σ gy·(x - μ)/count.
        const double k = static_cast<double>(w[c]) * r;
        const double q = k * r * r * sumGD / static_cast<double>(count);
        const T tk = static_cast<T>(k);
        const T tq = static_cast<T>(q);
        const T shift = static_cast<T>((q * mu) - (k * sumG / static_cast<double>(count)));
        for (int64_t j = t; j < count; j += kThreads) {
            const int64_t o = NormOffset(g, c, j);
            gx[o] = ((gy[o] * tk) - (x[o] * tq)) + shift;
        }
    }
}

template <typename T>
__global__ void BatchNormWeightGradKernel(const T* gy, const T* x, const T* mean, const T* var, T* gw, NormGeo g) {
    __shared__ double partial[kThreads];
    const int t = static_cast<int>(threadIdx.x);
    const int64_t count = g.n * g.s;
    for (int64_t c = blockIdx.x; c < g.c; c += gridDim.x) {
        const double mu = static_cast<double>(mean[c]);
        double sgd = 0;
        for (int64_t j = t; j < count; j += kThreads) {
            const int64_t o = NormOffset(g, c, j);
            sgd += static_cast<double>(gy[o]) * (static_cast<double>(x[o]) - mu);
        }
        const double sumGD = BlockTotal(sgd, partial);
        if (t == 0) {
            gw[c] = static_cast<T>(sumGD * (1.0 / sqrt(static_cast<double>(var[c]) + g.eps)));
        }
    }
}

// The double backward of the input gradient (PyTorch's batchnorm_double_backward) with respect to x
// and w, contracted with h: five channel sums in double, then gx2 = x·P - gy·Q - h·R + (K - P·μ).
template <typename T>
__global__ void BatchNormInputGradBackwardKernel(const T* gy, const T* x, const T* mean, const T* var, const T* w, const T* h,
                                                 T* dx, T* dw, NormGeo g) {
    __shared__ double partial[kThreads];
    const int t = static_cast<int>(threadIdx.x);
    const int64_t count = g.n * g.s;
    for (int64_t c = blockIdx.x; c < g.c; c += gridDim.x) {
        const double mu = static_cast<double>(mean[c]);
        const double r = 1.0 / sqrt(static_cast<double>(var[c]) + g.eps);
        double sg = 0, sh = 0, sgd = 0, shd = 0, shg = 0;
        for (int64_t j = t; j < count; j += kThreads) {
            const int64_t o = NormOffset(g, c, j);
            const double gv = static_cast<double>(gy[o]);
            const double hv = static_cast<double>(h[o]);
            const double d = static_cast<double>(x[o]) - mu;
            sg += gv;
            sh += hv;
            sgd += gv * d;
            shd += hv * d;
            shg += hv * gv;
        }
        const double n = static_cast<double>(count);
        const double gBar = BlockTotal(sg, partial) / n;
        const double hBar = BlockTotal(sh, partial) / n;
        const double m = r * BlockTotal(sgd, partial) / n;
        const double a = r * BlockTotal(shd, partial) / n;
        const double sv = (BlockTotal(shg, partial) / n) - (hBar * gBar);
        const double k = static_cast<double>(w[c]) * r * r;
        const double p = k * r * ((3 * m * a) - sv);
        const T tp = static_cast<T>(p);
        const T tq = static_cast<T>(k * a);
        const T tr = static_cast<T>(k * m);
        const T shift = static_cast<T>((k * ((a * gBar) + (m * hBar))) - (p * mu));
        for (int64_t j = t; j < count; j += kThreads) {
            const int64_t o = NormOffset(g, c, j);
            dx[o] = (((x[o] * tp) - (gy[o] * tq)) - (h[o] * tr)) + shift;
        }
        if (t == 0) {
            dw[c] = static_cast<T>(n * r * (sv - (m * a)));
        }
    }
}

bool NormValid(int64_t n, int64_t c, int64_t s, double eps) {
    return n >= 1 && c >= 1 && s >= 1 && eps >= 0 && std::isfinite(eps);
}

unsigned NormBlocks(int64_t c) {
    return static_cast<unsigned>(c < kMaxBlocks ? c : kMaxBlocks);
}

}  // namespace

HK_API cudaError_t hk_batch_norm(int32_t dtype, const void* x, const void* w, const void* b, void* y, void* mean, void* var,
                                 int64_t n, int64_t c, int64_t s, double eps, cudaStream_t stream) {
    if (!NormValid(n, c, s, eps)) {
        return cudaErrorInvalidValue;
    }
    const NormGeo g{n, c, s, eps};
    switch (dtype) {
        case kFloat32: BatchNormKernel<float><<<NormBlocks(c), kThreads, 0, stream>>>(static_cast<const float*>(x), static_cast<const float*>(w), static_cast<const float*>(b), static_cast<float*>(y), static_cast<float*>(mean), static_cast<float*>(var), g); break;
        case kFloat64: BatchNormKernel<double><<<NormBlocks(c), kThreads, 0, stream>>>(static_cast<const double*>(x), static_cast<const double*>(w), static_cast<const double*>(b), static_cast<double*>(y), static_cast<double*>(mean), static_cast<double*>(var), g); break;
        default: return cudaErrorNotSupported;
    }
    return cudaGetLastError();
}

HK_API cudaError_t hk_batch_norm_input_grad(int32_t dtype, const void* gy, const void* x, const void* mean, const void* var, const void* w,
                                            void* gx, int64_t n, int64_t c, int64_t s, double eps, cudaStream_t stream) {
    if (!NormValid(n, c, s, eps)) {
        return cudaErrorInvalidValue;
    }
    const NormGeo g{n, c, s, eps};
    switch (dtype) {
        case kFloat32: BatchNormInputGradKernel<float><<<NormBlocks(c), kThreads, 0, stream>>>(static_cast<const float*>(gy), static_cast<const float*>(x), static_cast<const float*>(mean), static_cast<const float*>(var), static_cast<const float*>(w), static_cast<float*>(gx), g); break;
        case kFloat64: BatchNormInputGradKernel<double><<<NormBlocks(c), kThreads, 0, stream>>>(static_cast<const double*>(gy), static_cast<const double*>(x), static_cast<const double*>(mean), static_cast<const double*>(var), static_cast<const double*>(w), static_cast<double*>(gx), g); break;
        default: return cudaErrorNotSupported;
    }
    return cudaGetLastError();
}

HK_API cudaError_t hk_batch_norm_input_grad_backward(int32_t dtype, const void* gy, const void* x, const void* mean, const void* var,
                                                     const void* w, const void* h, void* dx, void* dw, int64_t n, int64_t c, int64_t s,
                                                     double eps, cudaStream_t stream) {
    if (!NormValid(n, c, s, eps)) {
        return cudaErrorInvalidValue;
    }
    const NormGeo g{n, c, s, eps};
    switch (dtype) {
        case kFloat32: BatchNormInputGradBackwardKernel<float><<<NormBlocks(c), kThreads, 0, stream>>>(static_cast<const float*>(gy), static_cast<const float*>(x), static_cast<const float*>(mean), static_cast<const float*>(var), static_cast<const float*>(w), static_cast<const float*>(h), static_cast<float*>(dx), static_cast<float*>(dw), g); break;
        case kFloat64: BatchNormInputGradBackwardKernel<double><<<NormBlocks(c), kThreads, 0, stream>>>(static_cast<const double*>(gy), static_cast<const double*>(x), static_cast<const double*>(mean), static_cast<const double*>(var), static_cast<const double*>(w), static_cast<const double*>(h), static_cast<double*>(dx), static_cast<double*>(dw), g); break;
        default: return cudaErrorNotSupported;
    }
    return cudaGetLastError();
}

HK_API cudaError_t hk_batch_norm_weight_grad(int32_t dtype, const void* gy, const void* x, const void* mean, const void* var, void* gw,
                                             int64_t n, int64_t c, int64_t s, double eps, cudaStream_t stream) {
    if (!NormValid(n, c, s, eps)) {
        return cudaErrorInvalidValue;
    }
    const NormGeo g{n, c, s, eps};
    switch (dtype) {
        case kFloat32: BatchNormWeightGradKernel<float><<<NormBlocks(c), kThreads, 0, stream>>>(static_cast<const float*>(gy), static_cast<const float*>(x), static_cast<const float*>(mean), static_cast<const float*>(var), static_cast<float*>(gw), g); break;
        case kFloat64: BatchNormWeightGradKernel<double><<<NormBlocks(c), kThreads, 0, stream>>>(static_cast<const double*>(gy), static_cast<const double*>(x), static_cast<const double*>(mean), static_cast<const double*>(var), static_cast<double*>(gw), g); break;
        default: return cudaErrorNotSupported;
    }
    return cudaGetLastError();
}
