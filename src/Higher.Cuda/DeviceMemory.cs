namespace Higher.Cuda;

/// <summary>
/// The raw device-memory calls of <see cref="CudaAllocator"/>. Behind an interface so that the
/// allocator's caching, finalizer, out-of-memory and scope logic is tested without a GPU, against
/// a fake that hands out fake addresses.
/// </summary>
internal interface IDeviceMemory
{
    /// <summary>The CUDA device index the memory lives on.</summary>
    int DeviceIndex { get; }

    /// <summary>Allocates <paramref name="bytes"/> bytes; on failure the runtime's sticky error is cleared.</summary>
    CudaError Malloc(long bytes, out nint pointer);

    /// <summary>Frees a block (called from release paths: never throws).</summary>
    CudaError Free(nint pointer);
}

/// <summary>cudaMalloc and cudaFree on one device, made current first.</summary>
internal sealed class CudaDeviceMemory(int deviceIndex) : IDeviceMemory
{
    /// <inheritdoc/>
    public int DeviceIndex => deviceIndex;

    /// <inheritdoc/>
    public CudaError Malloc(long bytes, out nint pointer)
    {
        CudaContext.MakeCurrent(deviceIndex);
        var status = CudaNative.cudaMalloc(out pointer, (nuint)bytes);
        if (status != CudaError.Success)
        {
            // cudaMalloc's failures are not sticky, but the last-error slot would still report it later.
            _ = CudaNative.cudaGetLastError();
            pointer = 0;
        }
        return status;
    }

    /// <inheritdoc/>
    public CudaError Free(nint pointer)
    {
        var status = CudaContext.TryMakeCurrent(deviceIndex);
        return status == CudaError.Success ? CudaNative.cudaFree(pointer) : status;
    }
}
