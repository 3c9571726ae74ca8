namespace Higher.Cuda;

/// <summary>
/// A contiguous device buffer of the CUDA backend. <see cref="Dispose"/> returns its block to the
/// backend's caching allocator at once (so does the end of the <see cref="CudaAllocationScope"/> it
/// was allocated in, unless kept); a storage that is never disposed gives its block back when
/// finalized (the finalizer only queues it, it makes no CUDA call; the allocator takes it back on
/// its next call, and collects garbage itself when device memory runs short).
/// </summary>
public sealed class CudaStorage : IStorage
{
    private readonly CudaAllocator _allocator;
    private readonly DeviceMemoryHandle? _block;
    private int _disposed;

    internal CudaStorage(CudaAllocator allocator, DeviceMemoryHandle? block, DType dtype, long length, Device device)
    {
        _allocator = allocator;
        _block = block;
        DType = dtype;
        Length = length;
        Device = device;
        if (block is null)
        {
            GC.SuppressFinalize(this);
        }
    }

    /// <summary>Returns the block if the storage was never disposed.</summary>
    ~CudaStorage()
    {
        if (_block is not null && Volatile.Read(ref _disposed) == 0)
        {
            _allocator.ReturnFromFinalizer(_block);
        }
    }

    /// <inheritdoc/>
    public DType DType { get; }

    /// <inheritdoc/>
    public long Length { get; }

    /// <inheritdoc/>
    public Device Device { get; }

    /// <summary>Size of the data in bytes: Length · sizeof(dtype).</summary>
    public long ByteLength => Length * DType.SizeOf();

    /// <summary>The device address of element 0 (0 for an empty storage).</summary>
    internal nint Pointer
    {
        get
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            if (_allocator.IsDisposed)
            {
                throw new ObjectDisposedException(nameof(CudaBackend), $"The CUDA backend of this {DType.Name()} storage on {Device} was disposed.");
            }
            return _block?.Pointer ?? 0;
        }
    }

    internal bool Owns(CudaAllocator allocator) => ReferenceEquals(allocator, _allocator);

    /// <summary>Returns the block to the allocator's cache.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0 && _block is not null)
        {
            _allocator.Return(_block);
        }
        GC.SuppressFinalize(this);
    }

    /// <summary>"cuda:0 float32[12]".</summary>
    public override string ToString() => $"{Device} {DType.Name()}[{Length}]";
}
