using System.Runtime.InteropServices;

namespace Higher.Cuda;

/// <summary>
/// The calling thread's current CUDA device. Kernel launches and allocations use the thread's
/// current device, so every entry point makes its backend's device current first; a per-thread
/// cache keeps that to one cudaSetDevice per thread and device switch.
/// </summary>
internal static class CudaContext
{
    [ThreadStatic]
    private static int t_currentPlusOne;

    /// <summary>Makes <paramref name="device"/> current on this thread, throwing on failure.</summary>
    public static void MakeCurrent(int device) => Check.ThrowIfFailed(TryMakeCurrent(device));

    /// <summary>Makes <paramref name="device"/> current on this thread; returns the status instead of throwing (for release paths).</summary>
    public static CudaError TryMakeCurrent(int device)
    {
        if (t_currentPlusOne == device + 1)
        {
            return CudaError.Success;
        }
        var status = CudaNative.cudaSetDevice(device);
        t_currentPlusOne = status == CudaError.Success ? device + 1 : 0;
        return status;
    }
}

/// <summary>An owned <c>cudaStream_t</c>, destroyed on release.</summary>
internal sealed class CudaStreamHandle : SafeHandle
{
    /// <summary>Used by the import marshaller for <c>out</c> parameters.</summary>
    public CudaStreamHandle()
        : base(0, ownsHandle: true)
    {
    }

    /// <summary>Device the stream was created on (made current before destroying it).</summary>
    public int DeviceIndex { get; set; }

    /// <inheritdoc/>
    public override bool IsInvalid => handle == 0;

    /// <inheritdoc/>
    protected override bool ReleaseHandle() =>
        CudaContext.TryMakeCurrent(DeviceIndex) == CudaError.Success
        && CudaNative.cudaStreamDestroy(handle) == CudaError.Success;
}

/// <summary>An owned <c>cublasHandle_t</c>, destroyed on release.</summary>
internal sealed class CublasHandle : SafeHandle
{
    /// <summary>Used by the import marshaller for <c>out</c> parameters.</summary>
    public CublasHandle()
        : base(0, ownsHandle: true)
    {
    }

    /// <summary>Device the handle was created on.</summary>
    public int DeviceIndex { get; set; }

    /// <inheritdoc/>
    public override bool IsInvalid => handle == 0;

    /// <inheritdoc/>
    protected override bool ReleaseHandle() =>
        CudaContext.TryMakeCurrent(DeviceIndex) == CudaError.Success
        && CudaNative.cublasDestroy_v2(handle) == CublasStatus.Success;
}

/// <summary>
/// One block of device memory from <see cref="IDeviceMemory.Malloc"/>. The caching allocator owns
/// every block (and keeps it reachable), so a block is freed by <see cref="CudaAllocator.EmptyCache"/>
/// or by disposing the backend; its finalizer runs only when a whole backend was leaked.
/// </summary>
internal sealed class DeviceMemoryHandle : SafeHandle
{
    private readonly IDeviceMemory _memory;

    public DeviceMemoryHandle(IDeviceMemory memory, nint pointer, long bytes)
        : base(0, ownsHandle: true)
    {
        _memory = memory;
        SetHandle(pointer);
        Bytes = bytes;
    }

    /// <summary>Size of the block (the size class, at least the requested size).</summary>
    public long Bytes { get; }

    /// <summary>The device address.</summary>
    public nint Pointer => handle;

    /// <inheritdoc/>
    public override bool IsInvalid => handle == 0;

    /// <inheritdoc/>
    protected override bool ReleaseHandle() => _memory.Free(handle) == CudaError.Success;
}
