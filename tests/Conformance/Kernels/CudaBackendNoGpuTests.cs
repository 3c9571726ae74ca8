using Higher.Cuda;

namespace Higher.Conformance.Kernels;

/// <summary>
/// Parts of the CUDA backend that run without a GPU: creation failing with a reason, the library
/// probing lists, status names, the layout simplification the kernels rely on, the allocator's size
/// classes, and (when native/ was built) the kernels' Philox against the specification.
/// </summary>
public sealed class CudaBackendNoGpuTests
{
    [Fact]
    public void TryCreate_NeverThrows_AndExplainsFailure()
    {
        bool created = CudaBackend.TryCreate(out var backend, out string reason);
        try
        {
            if (created)
            {
                Assert.NotNull(backend);
                Assert.Equal("", reason);
                Assert.Equal(Device.Cuda(0), backend.Device);
            }
            else
            {
                Assert.Null(backend);
                Assert.False(string.IsNullOrWhiteSpace(reason));
            }
        }
        finally
        {
            backend?.Dispose();
        }
    }

    [Fact]
    public void TryCreate_ReturnsFalse_WithoutAGpu()
    {
        if (File.Exists("/dev/nvidia0"))
        {
            Assert.Skip("This machine has an NVIDIA device node; the no-GPU path is not observable here.");
        }
        Assert.False(CudaBackend.TryCreate(out var backend, out string reason));
        Assert.Null(backend);
        // The reason names what is missing: a library, the driver/device, or our kernels.
        Assert.Matches("libcudart|libcublas|cudaGetDeviceCount|libhigher_kernels", reason);
    }

    [Fact]
    public void TryCreate_RejectsNegativeDevice()
    {
        Assert.False(CudaBackend.TryCreate(out var backend, out string reason, deviceIndex: -1));
        Assert.Null(backend);
        Assert.Contains("-1", reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Create_ThrowsNotSupported_WithTheReason_WhenUnavailable()
    {
        if (CudaBackend.TryCreate(out var backend, out string reason))
        {
            backend!.Dispose();
            Assert.Skip("A CUDA device is available here.");
        }
        var e = Assert.Throws<NotSupportedException>(() => CudaBackend.Create());
        Assert.Contains(reason, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void RuntimeCandidates_ProbeVersionedSonamesNewestFirst()
    {
        Assert.Equal(["libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so"], NativeLibraries.RuntimeCandidates());
        Assert.Equal(["libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"], NativeLibraries.BlasCandidates());
    }

    [Fact]
    public void RuntimeCandidates_PutTheKernelsRuntimeFirst_WithoutDuplicates()
    {
        Assert.Equal(["libcudart.so.12", "libcudart.so.13", "libcudart.so.11.0", "libcudart.so"], NativeLibraries.RuntimeCandidates(12));
        Assert.Equal(["libcudart.so.11.0", "libcudart.so.13", "libcudart.so.12", "libcudart.so"], NativeLibraries.RuntimeCandidates(11));
        Assert.Equal("libcublas.so.11", NativeLibraries.BlasCandidates(11)[0]);
        Assert.Equal("libcudart.so.14", NativeLibraries.RuntimeCandidates(14)[0]);
        Assert.Equal(5, NativeLibraries.RuntimeCandidates(14).Count);
    }

    [Fact]
    public void KernelsCandidates_EnvironmentThenAppThenNativeBuildUpTheTree()
    {
        string root = Path.Combine(Path.GetTempPath(), "higher-probe-" + Guid.NewGuid().ToString("N"));
        string nested = Path.Combine(root, "a", "b");
        Directory.CreateDirectory(nested);
        try
        {
            var paths = NativeLibraries.KernelsCandidates(root, nested, "/opt/app");
            Assert.Equal(Path.Combine(root, "libhigher_kernels.so"), paths[0]);
            Assert.Equal("/opt/app/libhigher_kernels.so", paths[1]);
            Assert.Equal("/opt/app/runtimes/linux-x64/native/libhigher_kernels.so", paths[2]);
            Assert.Equal(Path.Combine(nested, "native", "build", "libhigher_kernels.so"), paths[3]);
            Assert.Contains(Path.Combine(root, "native", "build", "libhigher_kernels.so"), paths);
            Assert.Equal("/native/build/libhigher_kernels.so", paths[^1]);

            var explicitFile = NativeLibraries.KernelsCandidates("/x/y/custom.so", nested, null);
            Assert.Equal("/x/y/custom.so", explicitFile[0]);
            Assert.DoesNotContain(explicitFile, p => p.StartsWith("/opt/app", StringComparison.Ordinal));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Theory]
    [InlineData(0, "cudaSuccess")]
    [InlineData(2, "cudaErrorMemoryAllocation")]
    [InlineData(35, "cudaErrorInsufficientDriver")]
    [InlineData(100, "cudaErrorNoDevice")]
    [InlineData(209, "cudaErrorNoKernelImageForDevice")]
    [InlineData(700, "cudaErrorIllegalAddress")]
    [InlineData(999, "cudaErrorUnknown")]
    [InlineData(12345, "cudaError(12345)")]
    public void RuntimeStatusNames(int status, string name) => Assert.Equal(name, CudaStatus.RuntimeName(status));

    [Theory]
    [InlineData(0, "CUBLAS_STATUS_SUCCESS")]
    [InlineData(7, "CUBLAS_STATUS_INVALID_VALUE")]
    [InlineData(13, "CUBLAS_STATUS_EXECUTION_FAILED")]
    [InlineData(42, "cublasStatus(42)")]
    public void BlasStatusNames(int status, string name) => Assert.Equal(name, CudaStatus.BlasName(status));

    [Fact]
    public void ThrowIfFailed_NamesTheCallAndTheStatus()
    {
        var e = Assert.Throws<CudaException>(() => Check.ThrowIfFailed((CudaError)2));
        Assert.Equal(2, e.Status);
        Assert.Equal("cudaErrorMemoryAllocation", e.StatusName);
        Assert.Equal("cudart", e.Library);
        Assert.Equal("(CudaError)2", e.Expression);
        Assert.Contains("(CudaError)2 failed with cudaErrorMemoryAllocation (2)", e.Message, StringComparison.Ordinal);

        var blas = Assert.Throws<CudaException>(() => Check.ThrowIfFailed((CublasStatus)7));
        Assert.Equal("CUBLAS_STATUS_INVALID_VALUE", blas.StatusName);
        Assert.Equal("cublas", blas.Library);

        Check.ThrowIfFailed(CudaError.Success);
        Check.ThrowIfFailed(CublasStatus.Success);
    }

    [Fact]
    public void NativeOpCodeLists_AreTheContractEnums()
    {
        // kernels.cu declares every op code once, as X-macro lists; they must be the C# enums,
        // name for name and value for value (KernelOpSet.Text is built from the enums).
        var source = File.ReadAllText(RepositoryFile("native", "kernels.cu"));
        var entries = System.Text.RegularExpressions.Regex.Matches(
            source, @"X\((DType|UnaryOp|BinaryOp|CompareOp|ReduceOp|RandomDistribution), (\w+), (\d+)\)");
        var native = string.Concat(entries.Select(m => $"{m.Groups[1].Value}.{m.Groups[2].Value}={m.Groups[3].Value};"));
        Assert.Equal(KernelOpSet.Text, native);
    }

    [Fact]
    public void KernelOpSetHash_IsFnv1aOfItsText()
    {
        // Known answers of 64-bit FNV-1a, the function kernels.cu evaluates at compile time.
        Assert.Equal(0xcbf29ce484222325UL, KernelOpSet.Fnv1a(""));
        Assert.Equal(0xaf63dc4c8601ec8cUL, KernelOpSet.Fnv1a("a"));
        Assert.Equal(0x85944171f73967e8UL, KernelOpSet.Fnv1a("foobar"));
        Assert.Equal(KernelOpSet.Fnv1a(KernelOpSet.Text), KernelOpSet.Hash);
        Assert.StartsWith("DType.Float32=0;DType.Float64=1;DType.Int64=2;DType.Bool=3;UnaryOp.Affine=0;", KernelOpSet.Text, StringComparison.Ordinal);
    }

    [Fact]
    public void KernelLibrary_OfTheCurrentAbiAndOpSet_IsAccepted() =>
        Assert.Null(CudaBackend.KernelAbiRefusal(CudaNative.KernelsAbiVersion, KernelOpSet.Hash));

    [Fact]
    public void KernelLibrary_OfAnotherOpSet_IsRefusedWithRebuildMessage()
    {
        string? refusal = CudaBackend.KernelAbiRefusal(CudaNative.KernelsAbiVersion, KernelOpSet.Hash ^ 1);
        Assert.NotNull(refusal);
        Assert.Contains("libhigher_kernels.so was compiled for op set", refusal, StringComparison.Ordinal);
        Assert.Contains($"0x{KernelOpSet.Hash:x16}", refusal, StringComparison.Ordinal);
        Assert.Contains("rebuild it with native/build.sh", refusal, StringComparison.Ordinal);
    }

    [Fact]
    public void KernelLibrary_OfAnotherAbiRevision_IsRefusedWithRebuildMessage()
    {
        string? refusal = CudaBackend.KernelAbiRefusal(CudaNative.KernelsAbiVersion - 1, KernelOpSet.Hash);
        Assert.NotNull(refusal);
        Assert.Contains($"has ABI revision {CudaNative.KernelsAbiVersion - 1}, this assembly needs {CudaNative.KernelsAbiVersion}", refusal, StringComparison.Ordinal);
        Assert.Contains("rebuild it with native/build.sh", refusal, StringComparison.Ordinal);
    }

    private static string RepositoryFile(params string[] parts)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Higher.sln")))
            {
                return Path.Combine([dir.FullName, .. parts]);
            }
        }
        throw new InvalidOperationException($"Higher.sln not found above {AppContext.BaseDirectory}.");
    }

    [Fact]
    public void Layout_SameShapeBecomesOneContiguousDimension()
    {
        long[] shape = [2, 3, 4];
        var c = StridedLayout.ContiguousStrides(shape);
        var layout = StridedLayout.Create(shape, c, c, c);
        Assert.Equal([24L], layout.Shape);
        Assert.All(layout.Strides, s => Assert.Equal([1L], s));
        Assert.Equal(24, layout.Count);
    }

    [Fact]
    public void Layout_BroadcastKeepsZeroStridesAndDropsUnitDimensions()
    {
        var y = new Shape(4, 1, 3);
        var b = new Shape(3);
        long[] dims = StridedLayout.ToLongs(y.Dims);
        var layout = StridedLayout.Create(dims, StridedLayout.ContiguousStrides(dims),
            StridedLayout.BroadcastStrides(y, y), StridedLayout.BroadcastStrides(b, y));
        Assert.Equal([4L, 3L], layout.Shape);
        Assert.Equal([3L, 1L], layout.Strides[0]);
        Assert.Equal([0L, 1L], layout.Strides[2]);
        Assert.Equal([0L, 0L, 1L], StridedLayout.BroadcastStrides(new Shape(1, 3), new Shape(2, 5, 3)));
    }

    [Fact]
    public void Layout_PermutationIsNotMerged()
    {
        // Transpose of a [2, 3] matrix: source strides (1, 3), destination contiguous (3, 1).
        var layout = StridedLayout.Create([3, 2], [1, 3], [2, 1]);
        Assert.Equal([3L, 2L], layout.Shape);
        Assert.Single(layout.SliceOffsets());
    }

    [Fact]
    public void Layout_EmptyShapeHasNoElements_AndScalarHasOne()
    {
        Assert.Equal(0, StridedLayout.Create([3, 0, 2], [0, 2, 1]).Count);
        var scalar = StridedLayout.Create([], []);
        Assert.Equal(1, scalar.Count);
        Assert.Equal(0, scalar.Rank);
        Assert.Single(scalar.SliceOffsets());
    }

    [Fact]
    public void Layout_HighRankIsSlicedOverLeadingDimensions()
    {
        // Rank 10 with strides that cannot merge (every dimension is a permuted 2).
        long[] shape = [2, 2, 2, 2, 2, 2, 2, 2, 2, 2];
        long[] source = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];
        var destination = StridedLayout.ContiguousStrides(shape);
        var layout = StridedLayout.Create(shape, source, destination);
        Assert.Equal(10, layout.Rank);
        Assert.Equal(8, layout.KernelShape.Length);
        var slices = layout.SliceOffsets().ToList();
        Assert.Equal(4, slices.Count);
        Assert.Equal([0L, 0L], slices[0]);
        Assert.Equal([2L, 256L], slices[1]);
        Assert.Equal([1L, 512L], slices[2]);
        Assert.Equal([3L, 768L], slices[3]);
        Assert.Equal(source[2..], layout.KernelStrides(0));
    }

    [Theory]
    [InlineData(1, 512)]
    [InlineData(512, 512)]
    [InlineData(513, 1024)]
    [InlineData(1 << 20, 1 << 20)]
    [InlineData((1 << 20) + 1, 2 << 20)]
    [InlineData(3 << 20, 4 << 20)]
    [InlineData((4 << 20) + 1, 6 << 20)]
    public void Allocator_SizeClasses(long bytes, long size) => Assert.Equal(size, CudaAllocator.SizeClass(bytes));

    [Fact]
    public void Kernels_ReportTheirAbiAndRuntimeVersion()
    {
        RequireKernels();
        Check.ThrowIfFailed(CudaNative.hk_abi_version(out int abi));
        Assert.Equal(CudaNative.KernelsAbiVersion, abi);
        Check.ThrowIfFailed(CudaNative.hk_opset_hash(out ulong opSet));
        Assert.Equal(KernelOpSet.Hash, opSet);
        Check.ThrowIfFailed(CudaNative.hk_runtime_version(out int built));
        Assert.InRange(built, 11000, 99999);
        Assert.Equal(NativeLibraries.RuntimeSoname(built / 1000), NativeLibraries.RuntimeCandidates(built / 1000)[0]);
    }

    [Fact]
    public unsafe void Kernels_PhiloxMatchesTheSpecification_OnTheHost()
    {
        RequireKernels();
        ulong[] seeds = [0, 1, 42, 0xDEADBEEFCAFEF00D, ulong.MaxValue];
        ulong[] counters = [0, 1, 2, 0xFFFFFFFF, 0x100000000, 123456789012345, ulong.MaxValue];
        uint* words = stackalloc uint[4];
        foreach (ulong seed in seeds)
        {
            foreach (ulong counter in counters)
            {
                Check.ThrowIfFailed(CudaNative.hk_philox_host(seed, counter, words));
                var (x0, x1, x2, x3) = Philox.Block(seed, counter);
                Assert.Equal([x0, x1, x2, x3], new[] { words[0], words[1], words[2], words[3] });

                Check.ThrowIfFailed(CudaNative.hk_random_host(0, seed, counter, out double uniform));
                Assert.Equal(BitConverter.DoubleToInt64Bits(Philox.Uniform(seed, counter)), BitConverter.DoubleToInt64Bits(uniform));

                Check.ThrowIfFailed(CudaNative.hk_random_host(1, seed, counter, out double normal));
                double expected = Philox.Normal(seed, counter);
                Assert.True(Math.Abs(normal - expected) <= 1e-14 * Math.Max(1, Math.Abs(expected)), $"normal({seed}, {counter}): {normal:R} vs {expected:R}");
            }
        }
    }

    private static void RequireKernels()
    {
        _ = NativeLibraries.TryLoadAll();
        if (!NativeLibraries.KernelsLoaded)
        {
            Assert.Skip("libhigher_kernels.so is not built here (native/build.sh needs nvcc).");
        }
    }
}
