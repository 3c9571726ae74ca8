using System.Runtime.CompilerServices;

namespace Higher.Cuda;

/// <summary>
/// The CUDA implementation of <see cref="IBackend"/>: one device, one non-blocking stream on which
/// every kernel, copy and cuBLAS call is queued in order, a cuBLAS handle bound to that stream, and a
/// caching allocator. Kernels never wait for the device; only <see cref="Upload{T}"/>,
/// <see cref="Download{T}"/> and <see cref="Synchronize"/> do. Create it with <see cref="TryCreate"/>,
/// which reports why CUDA is unavailable instead of throwing.
/// </summary>
public sealed unsafe class CudaBackend : IBackend, IDisposable
{
    private static readonly Lock SharedGate = new();
    private static readonly Dictionary<int, (CudaBackend? Backend, string Reason)> SharedBackends = [];

    private readonly int _deviceIndex;
    private readonly CudaStreamHandle _stream;
    private readonly CublasHandle _blas;
    private int _disposed;

    private CudaBackend(int deviceIndex, CudaStreamHandle stream, CublasHandle blas)
    {
        _deviceIndex = deviceIndex;
        _stream = stream;
        _blas = blas;
        Device = Device.Cuda(deviceIndex);
        Allocator = new CudaAllocator(new CudaDeviceMemory(deviceIndex));
    }

    /// <inheritdoc/>
    public string Name => "cuda";

    /// <inheritdoc/>
    public Device Device { get; }

    /// <summary>The caching allocator of this backend's device memory (statistics, <see cref="CudaAllocator.EmptyCache"/>).</summary>
    public CudaAllocator Allocator { get; }

    /// <summary>
    /// Starts an allocation scope on this thread: storages this backend allocates on this thread
    /// until the scope is disposed are disposed with it, except those passed to
    /// <see cref="CudaAllocationScope.Keep{T}"/> (see <see cref="CudaAllocationScope"/>).
    /// </summary>
    public CudaAllocationScope AllocationScope() => Allocator.BeginScope();

    /// <summary>The device's name as the driver reports it, e.g. "NVIDIA H100 80GB HBM3".</summary>
    public string DeviceName
    {
        get
        {
            Enter();
            byte* name = stackalloc byte[256];
            Check.ThrowIfFailed(CudaNative.hk_device_name(_deviceIndex, name, 256));
            return System.Runtime.InteropServices.Marshal.PtrToStringUTF8((nint)name) ?? "";
        }
    }

    /// <summary>The loaded CUDA runtime's version (cudaRuntimeGetVersion: 1000·major + 10·minor).</summary>
    public int RuntimeVersion
    {
        get
        {
            Enter();
            Check.ThrowIfFailed(CudaNative.cudaRuntimeGetVersion(out int version));
            return version;
        }
    }

    /// <summary>The newest CUDA version the installed driver supports (cudaDriverGetVersion).</summary>
    public int DriverVersion
    {
        get
        {
            Enter();
            Check.ThrowIfFailed(CudaNative.cudaDriverGetVersion(out int version));
            return version;
        }
    }

    /// <summary>
    /// The process-wide backend of CUDA device <paramref name="deviceIndex"/>: created by the first
    /// call (a failure and its reason are remembered too), then returned to every caller, so that the
    /// parts of a program that register or look up a CUDA backend agree on one (storages of one
    /// backend cannot be used by another: each has its own stream). Do not dispose it; if it was
    /// disposed anyway, the next call creates a new one.
    /// </summary>
    public static bool TryGetShared(out CudaBackend? backend, out string reason, int deviceIndex = 0)
    {
        lock (SharedGate)
        {
            if (!SharedBackends.TryGetValue(deviceIndex, out var entry) || entry.Backend is { IsDisposed: true })
            {
                entry = TryCreate(out var created, out string why, deviceIndex) ? (created, "") : (null, why);
                SharedBackends[deviceIndex] = entry;
            }
            backend = entry.Backend;
            reason = entry.Reason;
            return backend is not null;
        }
    }

    private bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>
    /// Creates a backend on CUDA device <paramref name="deviceIndex"/>. Returns false, with
    /// <paramref name="reason"/> naming what is missing (runtime, cuBLAS, driver or device, or
    /// libhigher_kernels), when CUDA cannot be used here. Never throws for a missing installation.
    /// </summary>
    public static bool TryCreate(out CudaBackend? backend, out string reason, int deviceIndex = 0)
    {
        backend = null;
        if (deviceIndex < 0)
        {
            reason = $"CUDA device index {deviceIndex} is negative";
            return false;
        }
        string? problem;
        try
        {
            problem = NativeLibraries.TryLoadAll();
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or BadImageFormatException)
        {
            problem = $"loading the CUDA libraries failed: {e.Message}";
        }
        if (problem is not null)
        {
            reason = problem;
            return false;
        }

        try
        {
            problem = CheckVersionsAndDevice(deviceIndex);
            if (problem is not null)
            {
                reason = problem;
                return false;
            }
            backend = Open(deviceIndex);
            reason = "";
            return true;
        }
        catch (CudaException e)
        {
            reason = e.Message;
            return false;
        }
        catch (EntryPointNotFoundException e)
        {
            reason = $"{NativeLibraries.KernelsFileName} lacks an entry point ({e.Message}): rebuild native/";
            return false;
        }
    }

    /// <summary>Like <see cref="TryCreate"/>, but throws <see cref="NotSupportedException"/> with the reason when CUDA is unavailable.</summary>
    public static CudaBackend Create(int deviceIndex = 0) =>
        TryCreate(out var backend, out string reason, deviceIndex) ? backend! : throw new NotSupportedException($"CUDA backend unavailable: {reason}.");

    /// <summary>
    /// Why a kernel library that reports ABI revision <paramref name="abi"/> and op-set hash
    /// <paramref name="opSetHash"/> cannot be used by this assembly, or null when it can. A library
    /// built from an older kernels.cu (another revision, or another op list) is refused with a
    /// message that says to rebuild it.
    /// </summary>
    internal static string? KernelAbiRefusal(int abi, ulong opSetHash)
    {
        if (abi != CudaNative.KernelsAbiVersion)
        {
            return $"{NativeLibraries.KernelsFileName} has ABI revision {abi}, this assembly needs {CudaNative.KernelsAbiVersion}: it is stale, rebuild it with native/build.sh";
        }
        if (opSetHash != KernelOpSet.Hash)
        {
            return $"{NativeLibraries.KernelsFileName} was compiled for op set 0x{opSetHash:x16}, this assembly's op set (KernelOpSet.Hash) is 0x{KernelOpSet.Hash:x16}: an op was added or renumbered since it was built; rebuild it with native/build.sh";
        }
        return null;
    }

    private static string? CheckVersionsAndDevice(int deviceIndex)
    {
        Check.ThrowIfFailed(CudaNative.hk_abi_version(out int abi));
        ulong opSet = 0;
        if (abi == CudaNative.KernelsAbiVersion)
        {
            Check.ThrowIfFailed(CudaNative.hk_opset_hash(out opSet));
        }
        if (KernelAbiRefusal(abi, opSet) is { } refusal)
        {
            return refusal;
        }
        Check.ThrowIfFailed(CudaNative.hk_runtime_version(out int kernelsRuntime));
        Check.ThrowIfFailed(CudaNative.cudaRuntimeGetVersion(out int runtime));
        if (kernelsRuntime / 1000 != runtime / 1000)
        {
            return $"{NativeLibraries.KernelsFileName} was built for CUDA {kernelsRuntime / 1000} but CUDA runtime {runtime / 1000} was loaded: rebuild native/ with this toolkit";
        }
        Check.ThrowIfFailed(CudaNative.cudaGetDeviceCount(out int count));
        if (deviceIndex >= count)
        {
            return $"CUDA device {deviceIndex} requested but cudaGetDeviceCount found {count}";
        }
        return null;
    }

    private static CudaBackend Open(int deviceIndex)
    {
        CudaContext.MakeCurrent(deviceIndex);
        CudaStreamHandle? stream = null;
        CublasHandle? blas = null;
        try
        {
            Check.ThrowIfFailed(CudaNative.cudaStreamCreateWithFlags(out stream, CudaNative.StreamNonBlocking));
            stream.DeviceIndex = deviceIndex;
            Check.ThrowIfFailed(CudaNative.cublasCreate_v2(out blas));
            blas.DeviceIndex = deviceIndex;
            Check.ThrowIfFailed(CudaNative.cublasSetStream_v2(blas, stream));
            return new CudaBackend(deviceIndex, stream, blas);
        }
        catch
        {
            blas?.Dispose();
            stream?.Dispose();
            throw;
        }
    }

    /// <summary>Blocks until all work queued on this backend's stream has finished; surfaces asynchronous kernel faults.</summary>
    public void Synchronize()
    {
        Enter();
        Check.ThrowIfFailed(CudaNative.cudaStreamSynchronize(_stream));
    }

    /// <summary>Free and total bytes of device memory as the driver reports them (cudaMemGetInfo); cached blocks count as used.</summary>
    public (long FreeBytes, long TotalBytes) GetMemoryInfo()
    {
        Enter();
        Check.ThrowIfFailed(CudaNative.cudaMemGetInfo(out nuint free, out nuint total));
        return ((long)free, (long)total);
    }

    /// <summary>Waits for queued work, then frees all device memory (storages become unusable), the cuBLAS handle and the stream.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        if (CudaContext.TryMakeCurrent(_deviceIndex) == CudaError.Success)
        {
            // Errors here belong to earlier work; disposal goes on regardless.
            _ = CudaNative.cudaStreamSynchronize(_stream);
        }
        Allocator.Dispose();
        _blas.Dispose();
        _stream.Dispose();
    }

    // ---- Memory --------------------------------------------------------------------------------

    /// <inheritdoc/>
    public IStorage Allocate(DType dtype, long length)
    {
        var storage = AllocateCore(dtype, length);
        if (length > 0)
        {
            Check.ThrowIfFailed(CudaNative.cudaMemsetAsync(storage.Pointer, 0, (nuint)storage.ByteLength, _stream));
        }
        return storage;
    }

    /// <inheritdoc/>
    public IStorage AllocateUninitialized(DType dtype, long length) => AllocateCore(dtype, length);

    /// <inheritdoc/>
    public IStorage Upload<T>(ReadOnlySpan<T> data, DType dtype) where T : unmanaged
    {
        CheckElementType<T>(dtype, nameof(data));
        var storage = AllocateCore(dtype, data.Length);
        if (data.Length == 0)
        {
            return storage;
        }
        try
        {
            fixed (T* source = data)
            {
                Check.ThrowIfFailed(CudaNative.cudaMemcpyAsync(storage.Pointer, (nint)source, (nuint)storage.ByteLength, CudaMemcpyKind.HostToDevice, _stream));
                // The host span is only pinned for this call, so the copy must finish before we return.
                Check.ThrowIfFailed(CudaNative.cudaStreamSynchronize(_stream));
            }
        }
        catch
        {
            storage.Dispose();
            throw;
        }
        return storage;
    }

    /// <inheritdoc/>
    public void Download<T>(IStorage source, Span<T> destination) where T : unmanaged
    {
        var s = Own(source, nameof(source));
        CheckElementType<T>(s.DType, nameof(destination));
        if (destination.Length != s.Length)
        {
            throw new ArgumentException($"Download of {s} needs a destination of {s.Length} elements, got {destination.Length}.", nameof(destination));
        }
        Enter();
        if (s.Length == 0)
        {
            return;
        }
        fixed (T* target = destination)
        {
            Check.ThrowIfFailed(CudaNative.cudaMemcpyAsync((nint)target, s.Pointer, (nuint)s.ByteLength, CudaMemcpyKind.DeviceToHost, _stream));
            Check.ThrowIfFailed(CudaNative.cudaStreamSynchronize(_stream));
        }
        GC.KeepAlive(s);
    }

    // ---- Elementwise ---------------------------------------------------------------------------

    /// <inheritdoc/>
    public void Fill(IStorage destination, double value)
    {
        var d = Own(destination, nameof(destination));
        Enter();
        Check.ThrowIfFailed(CudaNative.hk_fill((int)d.DType, d.Pointer, d.Length, value, _stream));
        GC.KeepAlive(d);
    }

    /// <inheritdoc/>
    public void Cast(IStorage source, IStorage destination)
    {
        var s = Own(source, nameof(source));
        var d = Own(destination, nameof(destination));
        SameLength("Cast", s, d);
        Enter();
        Check.ThrowIfFailed(CudaNative.hk_cast((int)s.DType, s.Pointer, (int)d.DType, d.Pointer, s.Length, _stream));
        GC.KeepAlive(s);
        GC.KeepAlive(d);
    }

    /// <inheritdoc/>
    public void StridedCopy(IStorage source, long sourceOffset, ReadOnlySpan<long> sourceStrides,
        IStorage destination, long destinationOffset, ReadOnlySpan<long> destinationStrides, Shape shape)
    {
        var s = Own(source, nameof(source));
        var d = Own(destination, nameof(destination));
        SameDType("StridedCopy", s, d);
        if (sourceStrides.Length != shape.Rank || destinationStrides.Length != shape.Rank)
        {
            throw new ArgumentException($"StridedCopy of shape {shape} got {sourceStrides.Length} source and {destinationStrides.Length} destination strides.");
        }
        Enter();
        StridedCopyCore(s, sourceOffset, sourceStrides.ToArray(), d, destinationOffset, destinationStrides.ToArray(), StridedLayout.ToLongs(shape.Dims));
    }

    private void StridedCopyCore(CudaStorage s, long sourceOffset, long[] sourceStrides, CudaStorage d, long destinationOffset, long[] destinationStrides, long[] shape)
    {
        var layout = StridedLayout.Create(shape, sourceStrides, destinationStrides);
        if (layout.Count == 0)
        {
            return;
        }
        int size = s.DType.SizeOf();
        long[] kernelShape = layout.KernelShape, src = layout.KernelStrides(0), dst = layout.KernelStrides(1);
        fixed (long* pShape = kernelShape, pSrc = src, pDst = dst)
        {
            foreach (long[] offsets in layout.SliceOffsets())
            {
                Check.ThrowIfFailed(CudaNative.hk_strided_copy(size, At(s, sourceOffset + offsets[0]), At(d, destinationOffset + offsets[1]),
                    kernelShape.Length, pShape, pSrc, pDst, _stream));
            }
        }
        GC.KeepAlive(s);
        GC.KeepAlive(d);
    }

    /// <inheritdoc/>
    public void Unary(UnaryOp op, IStorage x, IStorage y, double alpha = 0, double beta = 0)
    {
        var sx = Own(x, nameof(x));
        var sy = Own(y, nameof(y));
        SameDType($"Unary {op}", sx, sy);
        SameLength($"Unary {op}", sx, sy);
        if (!sx.DType.IsFloatingPoint() && !(sx.DType == DType.Int64 && op == UnaryOp.Affine))
        {
            throw Unsupported($"Unary {op}", sx.DType);
        }
        Enter();
        Check.ThrowIfFailed(CudaNative.hk_unary((int)op, (int)sx.DType, sx.Pointer, sy.Pointer, sx.Length, alpha, beta, _stream));
        GC.KeepAlive(sx);
        GC.KeepAlive(sy);
    }

    /// <inheritdoc/>
    public void ScaledAdd(IStorage a, IStorage b, double alpha, IStorage y)
    {
        var sa = Own(a, nameof(a));
        var sb = Own(b, nameof(b));
        var sy = Own(y, nameof(y));
        SameDType("ScaledAdd", sa, sb);
        SameDType("ScaledAdd", sa, sy);
        SameLength("ScaledAdd", sa, sb);
        SameLength("ScaledAdd", sa, sy);
        if (!sa.DType.IsFloatingPoint())
        {
            throw Unsupported("ScaledAdd", sa.DType);
        }
        if (ReferenceEquals(sy, sb))
        {
            throw new ArgumentException("ScaledAdd: y may alias a but not b.", nameof(y));
        }
        Enter();
        Check.ThrowIfFailed(CudaNative.hk_scaled_add((int)sa.DType, sa.Pointer, sb.Pointer, sy.Pointer, sa.Length, alpha, _stream));
        GC.KeepAlive(sa);
        GC.KeepAlive(sb);
        GC.KeepAlive(sy);
    }

    /// <inheritdoc/>
    public void Binary(BinaryOp op, IStorage a, Shape aShape, IStorage b, Shape bShape, IStorage y, Shape yShape)
    {
        var sa = Own(a, nameof(a));
        var sb = Own(b, nameof(b));
        var sy = Own(y, nameof(y));
        SameDType($"Binary {op}", sa, sb);
        SameDType($"Binary {op}", sa, sy);
        bool supported = sa.DType.IsFloatingPoint()
            || (sa.DType == DType.Int64 && op is BinaryOp.Add or BinaryOp.Sub or BinaryOp.Mul or BinaryOp.Maximum or BinaryOp.Minimum);
        if (!supported)
        {
            throw Unsupported($"Binary {op}", sa.DType);
        }
        Enter();
        Broadcast2((int)op, sa, aShape, sb, bShape, sy, yShape, compare: false);
    }

    /// <inheritdoc/>
    public void Compare(CompareOp op, IStorage a, Shape aShape, IStorage b, Shape bShape, IStorage y, Shape yShape)
    {
        var sa = Own(a, nameof(a));
        var sb = Own(b, nameof(b));
        var sy = Own(y, nameof(y));
        SameDType($"Compare {op}", sa, sb);
        if (sy.DType != DType.Bool)
        {
            throw new ArgumentException($"Compare {op} writes a bool storage, got {sy}.", nameof(y));
        }
        Enter();
        Broadcast2((int)op, sa, aShape, sb, bShape, sy, yShape, compare: true);
    }

    private void Broadcast2(int op, CudaStorage a, Shape aShape, CudaStorage b, Shape bShape, CudaStorage y, Shape yShape, bool compare)
    {
        var dims = StridedLayout.ToLongs(yShape.Dims);
        var layout = StridedLayout.Create(dims, StridedLayout.ContiguousStrides(dims),
            StridedLayout.BroadcastStrides(aShape, yShape), StridedLayout.BroadcastStrides(bShape, yShape));
        if (layout.Count == 0)
        {
            return;
        }
        long[] shape = layout.KernelShape, aStrides = layout.KernelStrides(1), bStrides = layout.KernelStrides(2);
        fixed (long* pShape = shape, pA = aStrides, pB = bStrides)
        {
            foreach (long[] o in layout.SliceOffsets())
            {
                var status = compare
                    ? CudaNative.hk_compare(op, (int)a.DType, At(a, o[1]), At(b, o[2]), At(y, o[0]), shape.Length, pShape, pA, pB, _stream)
                    : CudaNative.hk_binary(op, (int)a.DType, At(a, o[1]), At(b, o[2]), At(y, o[0]), shape.Length, pShape, pA, pB, _stream);
                Check.ThrowIfFailed(status);
            }
        }
        GC.KeepAlive(a);
        GC.KeepAlive(b);
        GC.KeepAlive(y);
    }

    /// <inheritdoc/>
    public void Where(IStorage condition, Shape conditionShape, IStorage a, Shape aShape, IStorage b, Shape bShape, IStorage y, Shape yShape)
    {
        var sc = Own(condition, nameof(condition));
        var sa = Own(a, nameof(a));
        var sb = Own(b, nameof(b));
        var sy = Own(y, nameof(y));
        if (sc.DType != DType.Bool)
        {
            throw new ArgumentException($"Where needs a bool condition, got {sc}.", nameof(condition));
        }
        SameDType("Where", sa, sb);
        SameDType("Where", sa, sy);
        Enter();
        var dims = StridedLayout.ToLongs(yShape.Dims);
        var layout = StridedLayout.Create(dims, StridedLayout.ContiguousStrides(dims),
            StridedLayout.BroadcastStrides(conditionShape, yShape),
            StridedLayout.BroadcastStrides(aShape, yShape), StridedLayout.BroadcastStrides(bShape, yShape));
        if (layout.Count == 0)
        {
            return;
        }
        long[] shape = layout.KernelShape, cStrides = layout.KernelStrides(1), aStrides = layout.KernelStrides(2), bStrides = layout.KernelStrides(3);
        fixed (long* pShape = shape, pC = cStrides, pA = aStrides, pB = bStrides)
        {
            foreach (long[] o in layout.SliceOffsets())
            {
                Check.ThrowIfFailed(CudaNative.hk_where(sa.DType.SizeOf(), At(sc, o[1]), At(sa, o[2]), At(sb, o[3]), At(sy, o[0]),
                    shape.Length, pShape, pC, pA, pB, _stream));
            }
        }
        GC.KeepAlive(sc);
        GC.KeepAlive(sa);
        GC.KeepAlive(sb);
        GC.KeepAlive(sy);
    }

    // ---- Reductions ------------------------------------------------------------------------------

    /// <inheritdoc/>
    public void Reduce(ReduceOp op, IStorage x, Shape xShape, ReadOnlySpan<bool> reduceAxes, IStorage y)
    {
        var sx = Own(x, nameof(x));
        var sy = Own(y, nameof(y));
        SameDType($"Reduce {op}", sx, sy);
        if (reduceAxes.Length != xShape.Rank)
        {
            throw new ArgumentException($"Reduce {op} got {reduceAxes.Length} axis flags for shape {xShape}.", nameof(reduceAxes));
        }
        if (sx.DType == DType.Bool)
        {
            throw Unsupported($"Reduce {op}", sx.DType);
        }
        Enter();

        var dims = StridedLayout.ToLongs(xShape.Dims);
        var strides = StridedLayout.ContiguousStrides(dims);
        var keptShape = new List<long>();
        var keptStrides = new List<long>();
        var reducedShape = new List<long>();
        var reducedStrides = new List<long>();
        for (int d = 0; d < dims.Length; d++)
        {
            (reduceAxes[d] ? reducedShape : keptShape).Add(dims[d]);
            (reduceAxes[d] ? reducedStrides : keptStrides).Add(strides[d]);
        }
        long outputs = Product(keptShape);
        if (outputs == 0)
        {
            return;
        }
        if (Product(reducedShape) == 0)
        {
            double identity = op switch
            {
                ReduceOp.Sum => 0.0,
                ReduceOp.Max => double.NegativeInfinity,
                _ => double.PositiveInfinity,
            };
            Check.ThrowIfFailed(CudaNative.hk_fill((int)sy.DType, sy.Pointer, outputs, identity, _stream));
            GC.KeepAlive(sy);
            return;
        }

        var kept = StridedLayout.Create(keptShape.ToArray(), keptStrides.ToArray());
        var reduced = StridedLayout.Create(reducedShape.ToArray(), reducedStrides.ToArray());
        if (kept.Rank <= StridedLayout.MaxKernelRank && reduced.Rank <= StridedLayout.MaxKernelRank)
        {
            ReduceCall(op, sx, sy, kept.Shape, kept.Strides[0], reduced.Shape, reduced.Strides[0]);
        }
        else
        {
            // Too many interleaved axes for one kernel: gather x into [kept..., reduced...] order
            // first, which makes both groups a single contiguous dimension.
            long count = Product(reducedShape);
            long[] permutedShape = [.. keptShape, .. reducedShape];
            long[] permutedStrides = [.. keptStrides, .. reducedStrides];
            using var scratch = AllocateCore(sx.DType, sx.Length);
            StridedCopyCore(sx, 0, permutedStrides, scratch, 0, StridedLayout.ContiguousStrides(permutedShape), permutedShape);
            ReduceCall(op, scratch, sy, [outputs], [count], [count], [1]);
        }
        GC.KeepAlive(sx);
        GC.KeepAlive(sy);
    }

    private void ReduceCall(ReduceOp op, CudaStorage x, CudaStorage y, long[] keptShape, long[] keptStrides, long[] reducedShape, long[] reducedStrides)
    {
        fixed (long* pKs = keptShape, pKt = keptStrides, pRs = reducedShape, pRt = reducedStrides)
        {
            Check.ThrowIfFailed(CudaNative.hk_reduce((int)op, (int)x.DType, x.Pointer, y.Pointer,
                keptShape.Length, pKs, pKt, reducedShape.Length, pRs, pRt, _stream));
        }
    }

    /// <inheritdoc/>
    public void ArgReduce(ReduceOp op, IStorage x, int outer, int size, int inner, IStorage values, IStorage indices)
    {
        var sx = Own(x, nameof(x));
        var sv = Own(values, nameof(values));
        var si = Own(indices, nameof(indices));
        SameDType($"ArgReduce {op}", sx, sv);
        if (op == ReduceOp.Sum)
        {
            throw new NotSupportedException("ArgReduce supports Max and Min, not Sum.");
        }
        if (sx.DType == DType.Bool)
        {
            throw Unsupported($"ArgReduce {op}", sx.DType);
        }
        RequireIndex(si, $"ArgReduce {op}", nameof(indices));
        if (size <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(size), size, $"ArgReduce {op} needs a non-empty axis.");
        }
        Enter();
        Check.ThrowIfFailed(CudaNative.hk_argreduce((int)op, (int)sx.DType, sx.Pointer, sv.Pointer, si.Pointer, outer, size, inner, _stream));
        GC.KeepAlive(sx);
        GC.KeepAlive(sv);
        GC.KeepAlive(si);
    }

    // ---- Matrix products -------------------------------------------------------------------------

    /// <inheritdoc/>
    public void Gemm(bool transposeA, bool transposeB, int batch, int m, int n, int k, double alpha,
        IStorage a, long strideA, IStorage b, long strideB, double beta, IStorage c, long strideC)
    {
        var sa = Own(a, nameof(a));
        var sb = Own(b, nameof(b));
        var sc = Own(c, nameof(c));
        SameDType("Gemm", sa, sb);
        SameDType("Gemm", sa, sc);
        if (!sa.DType.IsFloatingPoint())
        {
            throw Unsupported("Gemm", sa.DType);
        }
        Enter();
        if (batch <= 0 || m <= 0 || n <= 0)
        {
            return;
        }
        if (k <= 0)
        {
            // An empty inner dimension makes the product zero; cuBLAS rejects k = 0 leading dimensions.
            Check.ThrowIfFailed(CudaNative.hk_scale_batched((int)sc.DType, sc.Pointer, batch, (long)m * n, strideC, beta, _stream));
            GC.KeepAlive(sc);
            return;
        }

        // cuBLAS is column-major. A row-major [r, c] matrix is its column-major transpose, so the
        // row-major C = op(A)·op(B) is computed as the column-major C^T = op(B)^T·op(A)^T: B first,
        // A second, m and n swapped, the transpose flags kept as they are.
        var opA = transposeA ? CublasOperation.Transpose : CublasOperation.None;
        var opB = transposeB ? CublasOperation.Transpose : CublasOperation.None;
        int lda = transposeA ? m : k;
        int ldb = transposeB ? k : n;
        int ldc = n;
        if (sa.DType == DType.Float32)
        {
            float fAlpha = (float)alpha, fBeta = (float)beta;
            Check.ThrowIfFailed(CudaNative.cublasSgemmStridedBatched(_blas, opB, opA, n, m, k, &fAlpha,
                sb.Pointer, ldb, strideB, sa.Pointer, lda, strideA, &fBeta, sc.Pointer, ldc, strideC, batch));
        }
        else
        {
            Check.ThrowIfFailed(CudaNative.cublasDgemmStridedBatched(_blas, opB, opA, n, m, k, &alpha,
                sb.Pointer, ldb, strideB, sa.Pointer, lda, strideA, &beta, sc.Pointer, ldc, strideC, batch));
        }
        GC.KeepAlive(sa);
        GC.KeepAlive(sb);
        GC.KeepAlive(sc);
    }

    // ---- Indexing --------------------------------------------------------------------------------

    /// <inheritdoc/>
    public void Gather(IStorage x, int outer, int xSize, int inner, IStorage index, int indexSize, IStorage y) =>
        Select("Gather", "hk_gather", x, outer, xSize, inner, index, indexSize, y, &CudaNative.hk_gather);

    /// <inheritdoc/>
    public void ScatterAdd(IStorage destination, int outer, int destinationSize, int inner, IStorage index, int indexSize, IStorage source) =>
        Accumulate("ScatterAdd", "hk_scatter_add", destination, outer, destinationSize, inner, index, indexSize, source, &CudaNative.hk_scatter_add);

    /// <inheritdoc/>
    public void IndexSelect(IStorage x, int outer, int xSize, int inner, IStorage index, int indexSize, IStorage y) =>
        Select("IndexSelect", "hk_index_select", x, outer, xSize, inner, index, indexSize, y, &CudaNative.hk_index_select);

    /// <inheritdoc/>
    public void IndexAdd(IStorage destination, int outer, int destinationSize, int inner, IStorage index, int indexSize, IStorage source) =>
        Accumulate("IndexAdd", "hk_index_add", destination, outer, destinationSize, inner, index, indexSize, source, &CudaNative.hk_index_add);

    /// <summary>Gather and IndexSelect: y[o, j, i] read from x through the index (the kernels differ only in how they index).</summary>
    private void Select(string op, string native, IStorage x, int outer, int xSize, int inner, IStorage index, int indexSize, IStorage y,
        delegate*<int, nint, nint, nint, long, long, long, long, CudaStreamHandle, CudaError> kernel)
    {
        var sx = Own(x, nameof(x));
        var si = Own(index, nameof(index));
        var sy = Own(y, nameof(y));
        SameDType(op, sx, sy);
        RequireIndex(si, op, nameof(index));
        Enter();
        Check.ThrowIfFailed(kernel(sx.DType.SizeOf(), sx.Pointer, si.Pointer, sy.Pointer, outer, xSize, inner, indexSize, _stream), native);
        GC.KeepAlive(sx);
        GC.KeepAlive(si);
        GC.KeepAlive(sy);
    }

    /// <summary>ScatterAdd and IndexAdd: source added into the destination through the index, in place.</summary>
    private void Accumulate(string op, string native, IStorage destination, int outer, int destinationSize, int inner, IStorage index, int indexSize, IStorage source,
        delegate*<int, nint, nint, nint, long, long, long, long, CudaStreamHandle, CudaError> kernel)
    {
        var sd = Own(destination, nameof(destination));
        var si = Own(index, nameof(index));
        var ss = Own(source, nameof(source));
        SameDType(op, sd, ss);
        RequireIndex(si, op, nameof(index));
        if (sd.DType == DType.Bool)
        {
            throw Unsupported(op, sd.DType);
        }
        Enter();
        Check.ThrowIfFailed(kernel((int)sd.DType, sd.Pointer, si.Pointer, ss.Pointer, outer, destinationSize, inner, indexSize, _stream), native);
        GC.KeepAlive(sd);
        GC.KeepAlive(si);
        GC.KeepAlive(ss);
    }

    // ---- Convolution and pooling -----------------------------------------------------------------

    /// <summary>Column-matrix elements one chunk of images may use (128 MiB of float32); more images loop in chunks.</summary>
    private const long ConvScratchElements = 1L << 25;

    /// <inheritdoc/>
    public void Conv2d(in ConvGeometry geometry, IStorage x, IStorage weight, IStorage y)
    {
        var g = geometry;
        var (sx, sw, sy) = ConvOperands("Conv2d", g, x, g.InputLength, weight, g.WeightLength, y, g.OutputLength);
        Enter();
        if (g.OutputLength == 0)
        {
            return;
        }
        int cg = g.InChannels / g.Groups, og = g.OutChannels / g.Groups, kg = cg * g.KernelHeight * g.KernelWidth, pixels = g.OutHeight * g.OutWidth;
        if (kg == 0)
        {
            Check.ThrowIfFailed(CudaNative.hk_fill((int)sy.DType, sy.Pointer, g.OutputLength, 0, _stream));
            return;
        }
        int* geo = stackalloc int[16];
        Pack(g, geo);
        long rows = (long)g.InChannels * g.KernelHeight * g.KernelWidth, plane = (long)g.InHeight * g.InWidth;
        bool pointwise = IsPointwise(g);
        int per = pointwise ? g.Batch : ImagesPerChunk(g.Batch, rows * pixels);
        using var cols = pointwise ? null : Allocator.NewStorage(sx.DType, per * rows * pixels, Device);
        for (int n0 = 0; n0 < g.Batch; n0 += per)
        {
            int count = Math.Min(per, g.Batch - n0);
            nint b;
            long strideB;
            if (pointwise)
            {
                // 1×1, stride 1, unpadded: each image's channels are its column matrix.
                b = At(sx, n0 * g.InChannels * plane);
                strideB = g.InChannels * plane;
            }
            else
            {
                Check.ThrowIfFailed(CudaNative.hk_im2col((int)sx.DType, sx.Pointer, cols!.Pointer, geo, n0, count, rows * pixels, pixels, _stream));
                b = cols.Pointer;
                strideB = rows * pixels;
            }
            for (int gi = 0; gi < g.Groups; gi++)
            {
                // y[n, group rows] = W_g [og, kg] · cols_n [kg, pixels], one batched GEMM over the chunk's images.
                RowMajorGemm(sx.DType, false, false, og, pixels, kg, At(sw, (long)gi * og * kg), kg, 0,
                    b + (nint)((long)gi * kg * pixels * sx.DType.SizeOf()), pixels, strideB, 0,
                    At(sy, ((long)n0 * g.OutChannels + (long)gi * og) * pixels), pixels, (long)g.OutChannels * pixels, count);
            }
        }
        GC.KeepAlive(sx);
        GC.KeepAlive(sw);
        GC.KeepAlive(sy);
    }

    /// <inheritdoc/>
    public void Conv2dInputGrad(in ConvGeometry geometry, IStorage gradY, IStorage weight, IStorage gradX)
    {
        var g = geometry;
        var (sdy, sw, sdx) = ConvOperands("Conv2dInputGrad", g, gradY, g.OutputLength, weight, g.WeightLength, gradX, g.InputLength);
        Enter();
        if (g.InputLength == 0)
        {
            return;
        }
        int cg = g.InChannels / g.Groups, og = g.OutChannels / g.Groups, kg = cg * g.KernelHeight * g.KernelWidth, pixels = g.OutHeight * g.OutWidth;
        if (kg == 0 || og == 0 || pixels == 0)
        {
            Check.ThrowIfFailed(CudaNative.hk_fill((int)sdx.DType, sdx.Pointer, g.InputLength, 0, _stream));
            return;
        }
        int* geo = stackalloc int[16];
        Pack(g, geo);
        long rows = (long)g.InChannels * g.KernelHeight * g.KernelWidth, plane = (long)g.InHeight * g.InWidth;
        bool pointwise = IsPointwise(g);
        int per = pointwise ? g.Batch : ImagesPerChunk(g.Batch, rows * pixels);
        using var cols = pointwise ? null : Allocator.NewStorage(sdy.DType, per * rows * pixels, Device);
        for (int n0 = 0; n0 < g.Batch; n0 += per)
        {
            int count = Math.Min(per, g.Batch - n0);
            // cols_n [kg, pixels] = W_gᵀ · dy_n [og, pixels]; a 1×1 unit-stride kernel writes gradX directly.
            nint c = pointwise ? At(sdx, n0 * g.InChannels * plane) : cols!.Pointer;
            long strideC = pointwise ? g.InChannels * plane : rows * pixels;
            for (int gi = 0; gi < g.Groups; gi++)
            {
                RowMajorGemm(sdy.DType, true, false, kg, pixels, og, At(sw, (long)gi * og * kg), kg, 0,
                    At(sdy, ((long)n0 * g.OutChannels + (long)gi * og) * pixels), pixels, (long)g.OutChannels * pixels, 0,
                    c + (nint)((long)gi * kg * pixels * sdy.DType.SizeOf()), pixels, strideC, count);
            }
            if (!pointwise)
            {
                Check.ThrowIfFailed(CudaNative.hk_col2im((int)sdy.DType, cols!.Pointer, sdx.Pointer, geo, n0, count, _stream));
            }
        }
        GC.KeepAlive(sdy);
        GC.KeepAlive(sw);
        GC.KeepAlive(sdx);
    }

    /// <inheritdoc/>
    public void Conv2dWeightGrad(in ConvGeometry geometry, IStorage x, IStorage gradY, IStorage gradWeight)
    {
        var g = geometry;
        var (sx, sdy, sdw) = ConvOperands("Conv2dWeightGrad", g, x, g.InputLength, gradY, g.OutputLength, gradWeight, g.WeightLength);
        Enter();
        if (g.WeightLength == 0)
        {
            return;
        }
        int cg = g.InChannels / g.Groups, og = g.OutChannels / g.Groups, kg = cg * g.KernelHeight * g.KernelWidth, pixels = g.OutHeight * g.OutWidth;
        if (g.Batch == 0 || pixels == 0)
        {
            Check.ThrowIfFailed(CudaNative.hk_fill((int)sdw.DType, sdw.Pointer, g.WeightLength, 0, _stream));
            return;
        }
        int* geo = stackalloc int[16];
        Pack(g, geo);
        long rows = (long)g.InChannels * g.KernelHeight * g.KernelWidth;
        int per = ImagesPerChunk(g.Batch, Math.Max(rows, g.OutChannels) * pixels);
        using var cols = Allocator.NewStorage(sx.DType, per * rows * pixels, Device);
        using var dyBlock = Allocator.NewStorage(sx.DType, per * (long)g.OutChannels * pixels, Device);
        int size = sx.DType.SizeOf();
        for (int n0 = 0; n0 < g.Batch; n0 += per)
        {
            int count = Math.Min(per, g.Batch - n0);
            long width = (long)count * pixels;
            // The chunk's images side by side, so one GEMM sums over all of them; chunks accumulate
            // with beta = 1 in ascending order on the one stream.
            Check.ThrowIfFailed(CudaNative.hk_im2col((int)sx.DType, sx.Pointer, cols.Pointer, geo, n0, count, pixels, width, _stream));
            Check.ThrowIfFailed(CudaNative.hk_gather_images((int)sx.DType, sdy.Pointer, dyBlock.Pointer, g.OutChannels, pixels, n0, count, _stream));
            for (int gi = 0; gi < g.Groups; gi++)
            {
                // gradW_g [og, kg] (+)= dy_g [og, width] · cols_gᵀ [width, kg].
                RowMajorGemm(sx.DType, false, true, og, kg, checked((int)width), dyBlock.Pointer + (nint)((long)gi * og * width * size), width, 0,
                    cols.Pointer + (nint)((long)gi * kg * width * size), width, 0, n0 == 0 ? 0 : 1,
                    At(sdw, (long)gi * og * kg), kg, 0, 1);
            }
        }
        GC.KeepAlive(sx);
        GC.KeepAlive(sdy);
        GC.KeepAlive(sdw);
    }

    /// <inheritdoc/>
    public void BatchNorm(in NormGeometry geometry, IStorage x, IStorage weight, IStorage bias, IStorage y, IStorage mean, IStorage variance)
    {
        const string op = "BatchNorm";
        var sx = NormInput(op, geometry, x, nameof(x));
        var sy = NormOperand(op, sx, y, geometry.Length, nameof(y));
        var sw = NormOperand(op, sx, weight, geometry.Channels, nameof(weight));
        var sb = NormOperand(op, sx, bias, geometry.Channels, nameof(bias));
        var sm = NormOperand(op, sx, mean, geometry.Channels, nameof(mean));
        var sv = NormOperand(op, sx, variance, geometry.Channels, nameof(variance));
        Enter();
        Check.ThrowIfFailed(CudaNative.hk_batch_norm((int)sx.DType, sx.Pointer, sw.Pointer, sb.Pointer, sy.Pointer, sm.Pointer, sv.Pointer,
            geometry.Batch, geometry.Channels, geometry.Spatial, geometry.Eps, _stream));
        GC.KeepAlive(sx);
        GC.KeepAlive(sw);
        GC.KeepAlive(sb);
        GC.KeepAlive(sy);
        GC.KeepAlive(sm);
        GC.KeepAlive(sv);
    }

    /// <inheritdoc/>
    public void BatchNormInputGrad(in NormGeometry geometry, IStorage gradY, IStorage x, IStorage mean, IStorage variance, IStorage weight, IStorage gradX)
    {
        const string op = "BatchNormInputGrad";
        var sx = NormInput(op, geometry, x, nameof(x));
        var sg = NormOperand(op, sx, gradY, geometry.Length, nameof(gradY));
        var sgx = NormOperand(op, sx, gradX, geometry.Length, nameof(gradX));
        var sm = NormOperand(op, sx, mean, geometry.Channels, nameof(mean));
        var sv = NormOperand(op, sx, variance, geometry.Channels, nameof(variance));
        var sw = NormOperand(op, sx, weight, geometry.Channels, nameof(weight));
        Enter();
        Check.ThrowIfFailed(CudaNative.hk_batch_norm_input_grad((int)sx.DType, sg.Pointer, sx.Pointer, sm.Pointer, sv.Pointer, sw.Pointer, sgx.Pointer,
            geometry.Batch, geometry.Channels, geometry.Spatial, geometry.Eps, _stream));
        GC.KeepAlive(sg);
        GC.KeepAlive(sx);
        GC.KeepAlive(sm);
        GC.KeepAlive(sv);
        GC.KeepAlive(sw);
        GC.KeepAlive(sgx);
    }

    /// <inheritdoc/>
    public void BatchNormInputGradBackward(in NormGeometry geometry, IStorage gradY, IStorage x, IStorage mean, IStorage variance, IStorage weight,
        IStorage h, IStorage gradX, IStorage gradWeight)
    {
        const string op = "BatchNormInputGradBackward";
        var sx = NormInput(op, geometry, x, nameof(x));
        var sg = NormOperand(op, sx, gradY, geometry.Length, nameof(gradY));
        var sh = NormOperand(op, sx, h, geometry.Length, nameof(h));
        var sgx = NormOperand(op, sx, gradX, geometry.Length, nameof(gradX));
        var sm = NormOperand(op, sx, mean, geometry.Channels, nameof(mean));
        var sv = NormOperand(op, sx, variance, geometry.Channels, nameof(variance));
        var sw = NormOperand(op, sx, weight, geometry.Channels, nameof(weight));
        var sgw = NormOperand(op, sx, gradWeight, geometry.Channels, nameof(gradWeight));
        Enter();
        Check.ThrowIfFailed(CudaNative.hk_batch_norm_input_grad_backward((int)sx.DType, sg.Pointer, sx.Pointer, sm.Pointer, sv.Pointer, sw.Pointer, sh.Pointer,
            sgx.Pointer, sgw.Pointer, geometry.Batch, geometry.Channels, geometry.Spatial, geometry.Eps, _stream));
        GC.KeepAlive(sg);
        GC.KeepAlive(sx);
        GC.KeepAlive(sh);
        GC.KeepAlive(sm);
        GC.KeepAlive(sv);
        GC.KeepAlive(sw);
        GC.KeepAlive(sgx);
        GC.KeepAlive(sgw);
    }

    /// <inheritdoc/>
    public void BatchNormWeightGrad(in NormGeometry geometry, IStorage gradY, IStorage x, IStorage mean, IStorage variance, IStorage gradWeight)
    {
        const string op = "BatchNormWeightGrad";
        var sx = NormInput(op, geometry, x, nameof(x));
        var sg = NormOperand(op, sx, gradY, geometry.Length, nameof(gradY));
        var sm = NormOperand(op, sx, mean, geometry.Channels, nameof(mean));
        var sv = NormOperand(op, sx, variance, geometry.Channels, nameof(variance));
        var sgw = NormOperand(op, sx, gradWeight, geometry.Channels, nameof(gradWeight));
        Enter();
        Check.ThrowIfFailed(CudaNative.hk_batch_norm_weight_grad((int)sx.DType, sg.Pointer, sx.Pointer, sm.Pointer, sv.Pointer, sgw.Pointer,
            geometry.Batch, geometry.Channels, geometry.Spatial, geometry.Eps, _stream));
        GC.KeepAlive(sg);
        GC.KeepAlive(sx);
        GC.KeepAlive(sm);
        GC.KeepAlive(sv);
        GC.KeepAlive(sgw);
    }

    /// <summary>x of a batch-norm kernel: a valid geometry, a float storage of this device holding N·C·S elements.</summary>
    private CudaStorage NormInput(string op, in NormGeometry geometry, IStorage x, string name)
    {
        geometry.Validate(op);
        var sx = Own(x, name);
        RequireFloat(op, sx);
        Holds(op, name, sx, geometry.Length);
        return sx;
    }

    /// <summary>Another operand of a batch-norm kernel on this device: <paramref name="like"/>'s dtype, holding <paramref name="length"/> elements (N·C·S, or C).</summary>
    private CudaStorage NormOperand(string op, CudaStorage like, IStorage v, long length, string name)
    {
        var sv = Own(v, name);
        SameDType(op, like, sv);
        Holds(op, name, sv, length);
        return sv;
    }

    /// <inheritdoc/>
    public void MaxPool2d(in PoolGeometry geometry, IStorage x, IStorage y, IStorage indices)
    {
        const string op = "MaxPool2d";
        var sx = Own(x, nameof(x));
        var sy = Own(y, nameof(y));
        var si = Own(indices, nameof(indices));
        SameDType(op, sx, sy);
        RequireFloat(op, sx);
        RequireIndex(si, op, nameof(indices));
        WindowChecks.Validate(op, geometry, average: false);
        Holds(op, nameof(x), sx, geometry.InputLength);
        Holds(op, nameof(y), sy, geometry.OutputLength);
        Holds(op, nameof(indices), si, geometry.OutputLength);
        Enter();
        int* geo = stackalloc int[13];
        Pack(geometry, geo);
        Check.ThrowIfFailed(CudaNative.hk_max_pool2d((int)sx.DType, sx.Pointer, sy.Pointer, si.Pointer, geo, _stream));
        GC.KeepAlive(sx);
        GC.KeepAlive(sy);
        GC.KeepAlive(si);
    }

    /// <inheritdoc/>
    public void AvgPool2d(in PoolGeometry geometry, bool countIncludePad, int divisorOverride, IStorage x, IStorage y)
    {
        var (sx, sy) = PoolOperands("AvgPool2d", geometry, x, geometry.InputLength, y, geometry.OutputLength);
        Enter();
        int* geo = stackalloc int[13];
        Pack(geometry, geo);
        Check.ThrowIfFailed(CudaNative.hk_avg_pool2d((int)sx.DType, sx.Pointer, sy.Pointer, geo, countIncludePad ? 1 : 0, divisorOverride, _stream));
        GC.KeepAlive(sx);
        GC.KeepAlive(sy);
    }

    /// <inheritdoc/>
    public void AvgPool2dGrad(in PoolGeometry geometry, bool countIncludePad, int divisorOverride, IStorage gradY, IStorage gradX)
    {
        var (sdy, sdx) = PoolOperands("AvgPool2dGrad", geometry, gradY, geometry.OutputLength, gradX, geometry.InputLength);
        Enter();
        int* geo = stackalloc int[13];
        Pack(geometry, geo);
        Check.ThrowIfFailed(CudaNative.hk_avg_pool2d_grad((int)sdy.DType, sdy.Pointer, sdx.Pointer, geo, countIncludePad ? 1 : 0, divisorOverride, _stream));
        GC.KeepAlive(sdy);
        GC.KeepAlive(sdx);
    }

    /// <inheritdoc/>
    public void AdaptiveAvgPool2d(int planes, int inHeight, int inWidth, int outHeight, int outWidth, IStorage x, IStorage y)
    {
        var (sx, sy) = AdaptiveOperands("AdaptiveAvgPool2d", planes, inHeight, inWidth, outHeight, outWidth, x, (long)inHeight * inWidth, y, (long)outHeight * outWidth);
        Enter();
        if ((long)planes * outHeight * outWidth == 0)
        {
            return;
        }
        Check.ThrowIfFailed(CudaNative.hk_adaptive_avg_pool2d((int)sx.DType, sx.Pointer, sy.Pointer, planes, inHeight, inWidth, outHeight, outWidth, _stream));
        GC.KeepAlive(sx);
        GC.KeepAlive(sy);
    }

    /// <inheritdoc/>
    public void AdaptiveAvgPool2dGrad(int planes, int inHeight, int inWidth, int outHeight, int outWidth, IStorage gradY, IStorage gradX)
    {
        var (sdy, sdx) = AdaptiveOperands("AdaptiveAvgPool2dGrad", planes, inHeight, inWidth, outHeight, outWidth, gradY, (long)outHeight * outWidth, gradX, (long)inHeight * inWidth);
        Enter();
        long inputs = (long)planes * inHeight * inWidth;
        if (inputs == 0)
        {
            return;
        }
        if (outHeight == 0 || outWidth == 0)
        {
            Check.ThrowIfFailed(CudaNative.hk_fill((int)sdx.DType, sdx.Pointer, inputs, 0, _stream));
        }
        else
        {
            Check.ThrowIfFailed(CudaNative.hk_adaptive_avg_pool2d_grad((int)sdy.DType, sdy.Pointer, sdx.Pointer, planes, inHeight, inWidth, outHeight, outWidth, _stream));
        }
        GC.KeepAlive(sdy);
        GC.KeepAlive(sdx);
    }

    /// <summary>
    /// Row-major C_t = alpha·op(A_t)·op(B_t) + beta·C_t with explicit leading dimensions (a column
    /// matrix's image may be a column range of a wider matrix), as the column-major Cᵀ = op(B)ᵀ·op(A)ᵀ.
    /// </summary>
    private void RowMajorGemm(DType dtype, bool transposeA, bool transposeB, int m, int n, int k,
        nint a, long lda, long strideA, nint b, long ldb, long strideB, double beta, nint c, long ldc, long strideC, int batch)
    {
        var opA = transposeA ? CublasOperation.Transpose : CublasOperation.None;
        var opB = transposeB ? CublasOperation.Transpose : CublasOperation.None;
        int la = checked((int)lda), lb = checked((int)ldb), lc = checked((int)ldc);
        if (dtype == DType.Float32)
        {
            float fAlpha = 1, fBeta = (float)beta;
            Check.ThrowIfFailed(CudaNative.cublasSgemmStridedBatched(_blas, opB, opA, n, m, k, &fAlpha, b, lb, strideB, a, la, strideA, &fBeta, c, lc, strideC, batch));
        }
        else
        {
            double dAlpha = 1;
            Check.ThrowIfFailed(CudaNative.cublasDgemmStridedBatched(_blas, opB, opA, n, m, k, &dAlpha, b, lb, strideB, a, la, strideA, &beta, c, lc, strideC, batch));
        }
    }

    private static bool IsPointwise(in ConvGeometry g) =>
        g.KernelHeight == 1 && g.KernelWidth == 1 && g.StrideHeight == 1 && g.StrideWidth == 1 && g.PadTop == 0 && g.PadLeft == 0
        && g.OutHeight == g.InHeight && g.OutWidth == g.InWidth;

    private static int ImagesPerChunk(int batch, long perImage) =>
        (int)Math.Max(1, Math.Min(batch, ConvScratchElements / Math.Max(1, perImage)));

    /// <summary>The geometry as the int32 array of the native ABI, in <see cref="ConvGeometry"/>'s field order.</summary>
    private static void Pack(in ConvGeometry g, int* v)
    {
        v[0] = g.Batch; v[1] = g.InChannels; v[2] = g.InHeight; v[3] = g.InWidth; v[4] = g.OutChannels; v[5] = g.KernelHeight;
        v[6] = g.KernelWidth; v[7] = g.OutHeight; v[8] = g.OutWidth; v[9] = g.StrideHeight; v[10] = g.StrideWidth; v[11] = g.PadTop;
        v[12] = g.PadLeft; v[13] = g.DilationHeight; v[14] = g.DilationWidth; v[15] = g.Groups;
    }

    /// <summary>The geometry as the int32 array of the native ABI, in <see cref="PoolGeometry"/>'s field order.</summary>
    private static void Pack(in PoolGeometry g, int* v)
    {
        v[0] = g.Planes; v[1] = g.InHeight; v[2] = g.InWidth; v[3] = g.OutHeight; v[4] = g.OutWidth; v[5] = g.KernelHeight;
        v[6] = g.KernelWidth; v[7] = g.StrideHeight; v[8] = g.StrideWidth; v[9] = g.PadTop; v[10] = g.PadLeft;
        v[11] = g.DilationHeight; v[12] = g.DilationWidth;
    }

    private (CudaStorage A, CudaStorage B, CudaStorage C) ConvOperands(string op, in ConvGeometry geometry,
        IStorage a, long aLength, IStorage b, long bLength, IStorage c, long cLength, [CallerArgumentExpression(nameof(a))] string aName = "",
        [CallerArgumentExpression(nameof(b))] string bName = "", [CallerArgumentExpression(nameof(c))] string cName = "")
    {
        var sa = Own(a, aName);
        var sb = Own(b, bName);
        var sc = Own(c, cName);
        SameDType(op, sa, sb);
        SameDType(op, sa, sc);
        RequireFloat(op, sa);
        WindowChecks.Validate(op, geometry);
        Holds(op, aName, sa, aLength);
        Holds(op, bName, sb, bLength);
        Holds(op, cName, sc, cLength);
        return (sa, sb, sc);
    }

    private (CudaStorage A, CudaStorage B) PoolOperands(string op, in PoolGeometry geometry, IStorage a, long aLength, IStorage b, long bLength,
        [CallerArgumentExpression(nameof(a))] string aName = "", [CallerArgumentExpression(nameof(b))] string bName = "")
    {
        var sa = Own(a, aName);
        var sb = Own(b, bName);
        SameDType(op, sa, sb);
        RequireFloat(op, sa);
        WindowChecks.Validate(op, geometry, average: true);
        Holds(op, aName, sa, aLength);
        Holds(op, bName, sb, bLength);
        return (sa, sb);
    }

    private (CudaStorage A, CudaStorage B) AdaptiveOperands(string op, int planes, int inHeight, int inWidth, int outHeight, int outWidth,
        IStorage a, long aPlane, IStorage b, long bPlane,
        [CallerArgumentExpression(nameof(a))] string aName = "", [CallerArgumentExpression(nameof(b))] string bName = "")
    {
        var sa = Own(a, aName);
        var sb = Own(b, bName);
        SameDType(op, sa, sb);
        RequireFloat(op, sa);
        WindowChecks.ValidateAdaptive(op, planes, inHeight, inWidth, outHeight, outWidth);
        Holds(op, aName, sa, planes * aPlane);
        Holds(op, bName, sb, planes * bPlane);
        return (sa, sb);
    }

    private static void RequireFloat(string op, CudaStorage s)
    {
        if (!s.DType.IsFloatingPoint())
        {
            throw Unsupported(op, s.DType);
        }
    }

    private static void Holds(string op, string name, CudaStorage s, long count)
    {
        if (count > s.Length)
        {
            throw new ArgumentException($"{op}: {name} needs {count} elements but is {s}.", name);
        }
    }

    // ---- Random ----------------------------------------------------------------------------------

    /// <inheritdoc/>
    public void Random(IStorage destination, RandomDistribution distribution, ulong seed, ulong offset, double a, double b)
    {
        var d = Own(destination, nameof(destination));
        if (!d.DType.IsFloatingPoint())
        {
            throw Unsupported($"Random {distribution}", d.DType);
        }
        Enter();
        Check.ThrowIfFailed(CudaNative.hk_random((int)d.DType, d.Pointer, d.Length, (int)distribution, seed, offset, a, b, _stream));
        GC.KeepAlive(d);
    }

    // ---- Helpers ---------------------------------------------------------------------------------

    private CudaStorage AllocateCore(DType dtype, long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        _ = dtype.SizeOf();
        Enter();
        return Allocator.NewStorage(dtype, length, Device);
    }

    /// <summary>Checks the backend is alive and makes its device current on this thread.</summary>
    private void Enter()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        CudaContext.MakeCurrent(_deviceIndex);
    }

    private CudaStorage Own(IStorage storage, string name)
    {
        ArgumentNullException.ThrowIfNull(storage, name);
        if (storage is CudaStorage cuda && cuda.Owns(Allocator))
        {
            return cuda;
        }
        throw new ArgumentException($"{name} is a {storage.DType.Name()} storage on {storage.Device} ({storage.GetType().Name}), not one of this CUDA backend on {Device}.", name);
    }

    private static nint At(CudaStorage storage, long elementOffset) => storage.Pointer + (nint)(elementOffset * storage.DType.SizeOf());

    private static long Product(List<long> dims)
    {
        long p = 1;
        foreach (long d in dims)
        {
            p *= d;
        }
        return p;
    }

    private static void SameDType(string op, CudaStorage a, CudaStorage b)
    {
        if (a.DType != b.DType)
        {
            throw new ArgumentException($"{op} needs one dtype, got {a} and {b}.");
        }
    }

    private static void SameLength(string op, CudaStorage a, CudaStorage b)
    {
        if (a.Length != b.Length)
        {
            throw new ArgumentException($"{op} needs equal lengths, got {a} and {b}.");
        }
    }

    private static void RequireIndex(CudaStorage index, string op, string name)
    {
        if (index.DType != DType.Int64)
        {
            throw new ArgumentException($"{op} needs an int64 index, got {index}.", name);
        }
    }

    private static void CheckElementType<T>(DType dtype, string name) where T : unmanaged
    {
        var expected = dtype switch
        {
            DType.Float32 => typeof(float),
            DType.Float64 => typeof(double),
            DType.Int64 => typeof(long),
            DType.Bool => typeof(bool),
            _ => null,
        };
        if (expected != typeof(T))
        {
            throw new ArgumentException($"Element type {typeof(T).Name} does not match dtype {dtype.Name()}.", name);
        }
    }

    private static NotSupportedException Unsupported(string op, DType dtype) =>
        new($"{op} is not supported for {dtype.Name()} by the CUDA backend.");
}
