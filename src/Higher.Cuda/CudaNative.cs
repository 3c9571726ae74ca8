using System.Runtime.InteropServices;

namespace Higher.Cuda;

/// <summary><c>cudaError_t</c>; only the values the backend treats specially are named.</summary>
internal enum CudaError
{
    Success = 0,
    InvalidValue = 1,
    MemoryAllocation = 2,
    InsufficientDriver = 35,
    NoDevice = 100,
    NotSupported = 801,
}

/// <summary><c>cublasStatus_t</c>.</summary>
internal enum CublasStatus
{
    Success = 0,
}

/// <summary><c>cudaMemcpyKind</c>.</summary>
internal enum CudaMemcpyKind
{
    HostToDevice = 1,
    DeviceToHost = 2,
    DeviceToDevice = 3,
}

/// <summary><c>cublasOperation_t</c>.</summary>
internal enum CublasOperation
{
    None = 0,
    Transpose = 1,
}

/// <summary>
/// Every native import of the backend: the CUDA runtime, cuBLAS and libhigher_kernels (native/kernels.cu).
/// The library names are logical; <see cref="NativeLibraries"/> resolves them to versioned sonames.
/// Device pointers are <see cref="nint"/>; shapes and strides are host arrays of longs.
/// </summary>
internal static unsafe partial class CudaNative
{
    // ---- CUDA runtime -------------------------------------------------------------------------

    [LibraryImport(NativeLibraries.Runtime)]
    internal static partial CudaError cudaGetDeviceCount(out int count);

    [LibraryImport(NativeLibraries.Runtime)]
    internal static partial CudaError cudaSetDevice(int device);

    [LibraryImport(NativeLibraries.Runtime)]
    internal static partial CudaError cudaRuntimeGetVersion(out int version);

    [LibraryImport(NativeLibraries.Runtime)]
    internal static partial CudaError cudaDriverGetVersion(out int version);

    [LibraryImport(NativeLibraries.Runtime)]
    internal static partial CudaError cudaGetLastError();

    [LibraryImport(NativeLibraries.Runtime)]
    internal static partial nint cudaGetErrorName(int error);

    [LibraryImport(NativeLibraries.Runtime)]
    internal static partial nint cudaGetErrorString(int error);

    [LibraryImport(NativeLibraries.Runtime)]
    internal static partial CudaError cudaMemGetInfo(out nuint free, out nuint total);

    [LibraryImport(NativeLibraries.Runtime)]
    internal static partial CudaError cudaMalloc(out nint pointer, nuint size);

    [LibraryImport(NativeLibraries.Runtime)]
    internal static partial CudaError cudaFree(nint pointer);

    [LibraryImport(NativeLibraries.Runtime)]
    internal static partial CudaError cudaMemsetAsync(nint pointer, int value, nuint count, CudaStreamHandle stream);

    [LibraryImport(NativeLibraries.Runtime)]
    internal static partial CudaError cudaMemcpyAsync(nint destination, nint source, nuint count, CudaMemcpyKind kind, CudaStreamHandle stream);

    [LibraryImport(NativeLibraries.Runtime)]
    internal static partial CudaError cudaStreamCreateWithFlags(out CudaStreamHandle stream, uint flags);

    [LibraryImport(NativeLibraries.Runtime)]
    internal static partial CudaError cudaStreamDestroy(nint stream);

    [LibraryImport(NativeLibraries.Runtime)]
    internal static partial CudaError cudaStreamSynchronize(CudaStreamHandle stream);

    /// <summary><c>cudaStreamNonBlocking</c>: no implicit synchronization with the legacy default stream.</summary>
    internal const uint StreamNonBlocking = 1;

    // ---- cuBLAS ---------------------------------------------------------------------------------

    [LibraryImport(NativeLibraries.Blas)]
    internal static partial CublasStatus cublasCreate_v2(out CublasHandle handle);

    [LibraryImport(NativeLibraries.Blas)]
    internal static partial CublasStatus cublasDestroy_v2(nint handle);

    [LibraryImport(NativeLibraries.Blas)]
    internal static partial CublasStatus cublasSetStream_v2(CublasHandle handle, CudaStreamHandle stream);

    [LibraryImport(NativeLibraries.Blas)]
    internal static partial CublasStatus cublasSgemmStridedBatched(CublasHandle handle, CublasOperation transa, CublasOperation transb,
        int m, int n, int k, float* alpha, nint a, int lda, long strideA, nint b, int ldb, long strideB,
        float* beta, nint c, int ldc, long strideC, int batchCount);

    [LibraryImport(NativeLibraries.Blas)]
    internal static partial CublasStatus cublasDgemmStridedBatched(CublasHandle handle, CublasOperation transa, CublasOperation transb,
        int m, int n, int k, double* alpha, nint a, int lda, long strideA, nint b, int ldb, long strideB,
        double* beta, nint c, int ldc, long strideC, int batchCount);

    // ---- libhigher_kernels (native/kernels.cu) --------------------------------------------------

    /// <summary>
    /// The revision of the ABI's calling conventions this assembly was written against (bumped when a
    /// signature changes); the op codes are checked separately through <see cref="hk_opset_hash"/>.
    /// </summary>
    internal const int KernelsAbiVersion = 6;

    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_abi_version(out int version);

    /// <summary>The <see cref="KernelOpSet.Hash"/> the kernels were compiled with (ABI 4).</summary>
    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_opset_hash(out ulong hash);

    /// <summary>CUDART_VERSION the kernels were compiled against (a constant: answers without a driver).</summary>
    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_runtime_version(out int version);

    /// <summary>The device's name, NUL-terminated, at most <paramref name="capacity"/> bytes (ABI 2).</summary>
    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_device_name(int device, byte* name, int capacity);

    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_fill(int dtype, nint y, long n, double value, CudaStreamHandle stream);

    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_cast(int sourceDType, nint x, int destinationDType, nint y, long n, CudaStreamHandle stream);

    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_strided_copy(int elementSize, nint source, nint destination, int rank,
        long* shape, long* sourceStrides, long* destinationStrides, CudaStreamHandle stream);

    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_unary(int op, int dtype, nint x, nint y, long n, double alpha, double beta, CudaStreamHandle stream);

    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_scaled_add(int dtype, nint a, nint b, nint y, long n, double alpha, CudaStreamHandle stream);

    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_binary(int op, int dtype, nint a, nint b, nint y, int rank,
        long* shape, long* aStrides, long* bStrides, CudaStreamHandle stream);

    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_compare(int op, int dtype, nint a, nint b, nint y, int rank,
        long* shape, long* aStrides, long* bStrides, CudaStreamHandle stream);

    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_where(int elementSize, nint condition, nint a, nint b, nint y, int rank,
        long* shape, long* conditionStrides, long* aStrides, long* bStrides, CudaStreamHandle stream);

    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_reduce(int op, int dtype, nint x, nint y, int keptRank, long* keptShape, long* keptStrides,
        int reducedRank, long* reducedShape, long* reducedStrides, CudaStreamHandle stream);

    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_argreduce(int op, int dtype, nint x, nint values, nint indices,
        long outer, long size, long inner, CudaStreamHandle stream);

    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_gather(int elementSize, nint x, nint index, nint y,
        long outer, long xSize, long inner, long indexSize, CudaStreamHandle stream);

    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_index_select(int elementSize, nint x, nint index, nint y,
        long outer, long xSize, long inner, long indexSize, CudaStreamHandle stream);

    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_scatter_add(int dtype, nint destination, nint index, nint source,
        long outer, long destinationSize, long inner, long indexSize, CudaStreamHandle stream);

    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_index_add(int dtype, nint destination, nint index, nint source,
        long outer, long destinationSize, long inner, long indexSize, CudaStreamHandle stream);

    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_random(int dtype, nint y, long n, int distribution, ulong seed, ulong offset,
        double a, double b, CudaStreamHandle stream);

    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_scale_batched(int dtype, nint c, long batch, long count, long stride, double beta,
        CudaStreamHandle stream);

    /// <summary>Column matrices of images [n0, n0 + count): entry (t, r, pix) at t·imageStride + r·rowStride + pix (ABI 4).</summary>
    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_im2col(int dtype, nint x, nint cols, int* geometry, long n0, long count, long imageStride, long rowStride,
        CudaStreamHandle stream);

    /// <summary>gradX of images [n0, n0 + count) gathered from per-image column matrices (ABI 4).</summary>
    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_col2im(int dtype, nint cols, nint gradX, int* geometry, long n0, long count, CudaStreamHandle stream);

    /// <summary>dst[o, t·pixels + pix] = y[n0 + t, o, pix] (ABI 4).</summary>
    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_gather_images(int dtype, nint y, nint destination, long channels, long pixels, long n0, long count,
        CudaStreamHandle stream);

    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_batch_norm(int dtype, nint x, nint weight, nint bias, nint y, nint mean, nint variance,
        long n, long c, long s, double eps, CudaStreamHandle stream);

    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_batch_norm_input_grad(int dtype, nint gradY, nint x, nint mean, nint variance, nint weight, nint gradX,
        long n, long c, long s, double eps, CudaStreamHandle stream);

    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_batch_norm_input_grad_backward(int dtype, nint gradY, nint x, nint mean, nint variance, nint weight, nint h,
        nint gradX, nint gradWeight, long n, long c, long s, double eps, CudaStreamHandle stream);

    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_batch_norm_weight_grad(int dtype, nint gradY, nint x, nint mean, nint variance, nint gradWeight,
        long n, long c, long s, double eps, CudaStreamHandle stream);

    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_max_pool2d(int dtype, nint x, nint y, nint indices, int* geometry, CudaStreamHandle stream);

    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_avg_pool2d(int dtype, nint x, nint y, int* geometry, int countIncludePad, int divisorOverride,
        CudaStreamHandle stream);

    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_avg_pool2d_grad(int dtype, nint gradY, nint gradX, int* geometry, int countIncludePad, int divisorOverride,
        CudaStreamHandle stream);

    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_adaptive_avg_pool2d(int dtype, nint x, nint y, long planes, int inHeight, int inWidth, int outHeight, int outWidth,
        CudaStreamHandle stream);

    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_adaptive_avg_pool2d_grad(int dtype, nint gradY, nint gradX, long planes, int inHeight, int inWidth,
        int outHeight, int outWidth, CudaStreamHandle stream);

    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_philox_host(ulong seed, ulong counter, uint* words);

    [LibraryImport(NativeLibraries.Kernels)]
    internal static partial CudaError hk_random_host(int distribution, ulong seed, ulong counter, out double value);
}
