using System.Collections.Concurrent;

namespace Higher.Cuda;

/// <summary>A snapshot of a <see cref="CudaAllocator"/>'s counters.</summary>
/// <param name="BytesInUse">Bytes of blocks held by live storages (size classes, not requested sizes).</param>
/// <param name="BytesCached">Bytes of freed blocks kept for reuse.</param>
/// <param name="PeakBytesInUse">Largest <paramref name="BytesInUse"/> seen so far.</param>
/// <param name="DeviceAllocations">Number of cudaMalloc calls that succeeded.</param>
/// <param name="Requests">Number of blocks handed out (cache hits plus device allocations).</param>
/// <param name="CacheHits">Number of requests served from the cache.</param>
/// <param name="InducedCollections">Number of garbage collections the allocator started to take back blocks of unreachable storages.</param>
/// <param name="FinalizedReturns">Number of blocks that came back through a storage's finalizer instead of its Dispose.</param>
public readonly record struct CudaAllocatorStatistics(
    long BytesInUse, long BytesCached, long PeakBytesInUse, long DeviceAllocations, long Requests, long CacheHits,
    long InducedCollections, long FinalizedReturns)
{
    /// <summary>CacheHits / Requests (0 before the first request).</summary>
    public double HitRate => Requests == 0 ? 0 : (double)CacheHits / Requests;
}

/// <summary>
/// Caching device allocator. Requests are rounded up to a size class (powers of two from 512 bytes
/// to 1 MiB, then multiples of 2 MiB); a freed block goes back to its class's bin and is reused by
/// the next request of that class instead of calling cudaMalloc/cudaFree (which synchronize the
/// device). Reuse is safe without events because the backend runs all work on one stream, so a
/// block's earlier work is ordered before its next owner's. Thread-safe.
/// <para>
/// In steady state blocks come back deterministically: a storage's Dispose returns its block, and the
/// engine disposes storages when a <c>Higher.TensorScope</c> (an inner-loop context is one) ends and
/// when a backward pass without createGraph finishes with its intermediate gradients; so does
/// <see cref="BeginScope"/> at this level. Finalizers are a backstop for storages left to the garbage
/// collector (which does not see device memory): when a cache miss would take the bytes in use above
/// <see cref="CollectionThreshold"/>, the allocator runs a full collection, waits for finalizers and
/// takes their blocks back before it asks the device (the threshold then becomes twice the bytes
/// still in use, at least <see cref="MinimumCollectionThreshold"/>); and when cudaMalloc reports out
/// of memory, it frees the cache, collects, and retries. A collection never runs under the
/// allocator's lock: other threads keep returning and renting meanwhile.
/// </para>
/// </summary>
public sealed class CudaAllocator : IDisposable
{
    /// <summary>The default <see cref="MinimumCollectionThreshold"/>: 256 MiB.</summary>
    public const long DefaultMinimumCollectionThreshold = 256L << 20;

    private const long MinBlock = 512;
    private const long SmallLimit = 1L << 20;
    private const long LargeGranule = 2L << 20;

    // The innermost allocation scope of this thread, of any allocator; each links to its outer one.
    [ThreadStatic]
    private static CudaAllocationScope? t_innermostScope;

    private readonly Lock _gate = new();
    private readonly IDeviceMemory _memory;
    private readonly Dictionary<long, Stack<DeviceMemoryHandle>> _cached = [];
    private readonly HashSet<DeviceMemoryHandle> _inUse = [];
    // Blocks of storages that were finalized instead of disposed: the finalizer thread only queues
    // them; the next allocator call on an ordinary thread takes them back.
    private readonly ConcurrentQueue<DeviceMemoryHandle> _abandoned = new();
    private readonly long _minimumThreshold;
    private long _threshold;
    private long _bytesInUse;
    private long _bytesCached;
    private long _peak;
    private long _deviceAllocations;
    private long _requests;
    private long _cacheHits;
    private long _collections;
    private long _finalizedReturns;
    private bool _disposed;

    internal CudaAllocator(IDeviceMemory memory, long minimumCollectionThreshold = DefaultMinimumCollectionThreshold)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(minimumCollectionThreshold);
        _memory = memory;
        _minimumThreshold = minimumCollectionThreshold;
        _threshold = minimumCollectionThreshold;
    }

    /// <summary>Current counters (blocks of finalized storages are taken back first).</summary>
    public CudaAllocatorStatistics Statistics
    {
        get
        {
            lock (_gate)
            {
                DrainAbandoned();
                return new CudaAllocatorStatistics(_bytesInUse, _bytesCached, _peak, _deviceAllocations, _requests, _cacheHits,
                    _collections, _finalizedReturns);
            }
        }
    }

    /// <summary>The lowest value <see cref="CollectionThreshold"/> takes.</summary>
    public long MinimumCollectionThreshold => _minimumThreshold;

    /// <summary>Bytes in use above which a cache miss first collects garbage (see the class remarks).</summary>
    public long CollectionThreshold
    {
        get
        {
            lock (_gate)
            {
                return _threshold;
            }
        }
    }

    internal bool IsDisposed => Volatile.Read(ref _disposed);

    /// <summary>The size class a request of <paramref name="bytes"/> is served from.</summary>
    public static long SizeClass(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        if (bytes <= SmallLimit)
        {
            return Math.Max(MinBlock, (long)System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)bytes));
        }
        return (bytes + LargeGranule - 1) / LargeGranule * LargeGranule;
    }

    /// <summary>
    /// Starts a scope on this thread: every storage this allocator hands out on this thread until the
    /// scope is disposed is disposed with it, except those passed to <see cref="CudaAllocationScope.Keep{T}"/>.
    /// Scopes nest; dispose them in reverse order, on the thread that began them.
    /// </summary>
    public CudaAllocationScope BeginScope()
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        var scope = new CudaAllocationScope(this, t_innermostScope);
        t_innermostScope = scope;
        return scope;
    }

    /// <summary>Frees every cached block back to the device (cudaFree). Blocks in use are untouched.</summary>
    public void EmptyCache()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }
            DrainAbandoned();
            FreeCached();
        }
    }

    /// <summary>Frees every block, cached or in use; storages of this allocator become unusable.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }
            Volatile.Write(ref _disposed, true);
            FreeCached();
            foreach (var block in _inUse)
            {
                block.Dispose();
            }
            _inUse.Clear();
            _abandoned.Clear();
            _bytesInUse = 0;
        }
    }

    /// <summary>
    /// A new storage of <paramref name="length"/> elements (uninitialized), registered with this
    /// thread's innermost scope of this allocator, if any.
    /// </summary>
    internal CudaStorage NewStorage(DType dtype, long length, Device device)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        long elementSize = dtype.SizeOf();
        if (length == 0)
        {
            return new CudaStorage(this, null, dtype, 0, device);
        }
        var storage = new CudaStorage(this, Rent(length * elementSize), dtype, length, device);
        for (var scope = t_innermostScope; scope is not null; scope = scope.Outer)
        {
            if (scope.Allocator == this)
            {
                scope.Track(storage);
                break;
            }
        }
        return storage;
    }

    /// <summary>
    /// A block of at least <paramref name="bytes"/> bytes (bytes &gt; 0). A garbage collection, when one is
    /// needed (the threshold is crossed, or the device is out of memory), runs with the lock released,
    /// so finalizers and other threads never wait on a collection held under it.
    /// </summary>
    internal DeviceMemoryHandle Rent(long bytes)
    {
        long size = SizeClass(bytes);
        bool collected = false;
        bool counted = false;
        while (true)
        {
            lock (_gate)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                DrainAbandoned();
                if (!counted)
                {
                    _requests++;
                    counted = true;
                }
                if (collected)
                {
                    _collections++;
                    _threshold = Math.Max(_minimumThreshold, 2 * _bytesInUse);
                }
                var block = TryObtain(size, mayCollect: !collected);
                if (block is not null)
                {
                    _inUse.Add(block);
                    _bytesInUse += size;
                    _peak = Math.Max(_peak, _bytesInUse);
                    return block;
                }
            }
            // Outside the lock: a full blocking collection, then the finalizers, whose blocks the next pass takes back.
            GC.Collect();
            GC.WaitForPendingFinalizers();
            collected = true;
        }
    }

    /// <summary>Takes a block back into the cache (from Dispose of its storage).</summary>
    internal void Return(DeviceMemoryHandle block)
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }
            ReturnLocked(block);
        }
    }

    /// <summary>Queues a block of a finalized storage; makes no CUDA call and takes no lock.</summary>
    internal void ReturnFromFinalizer(DeviceMemoryHandle block)
    {
        // A disposed allocator has freed the block already; queueing would only keep it reachable.
        if (!IsDisposed)
        {
            _abandoned.Enqueue(block);
        }
    }

    /// <summary>Makes the scope's outer scope the innermost again; throws when <paramref name="scope"/> is not this thread's innermost.</summary>
    internal static void EndScope(CudaAllocationScope scope)
    {
        if (!ReferenceEquals(t_innermostScope, scope))
        {
            throw new InvalidOperationException(
                "A CUDA allocation scope must be disposed on the thread that began it, after every scope begun inside it.");
        }
        t_innermostScope = scope.Outer;
    }

    /// <summary>A block from the cache or the device; null when a collection should run first (only when <paramref name="mayCollect"/>).</summary>
    private DeviceMemoryHandle? TryObtain(long size, bool mayCollect)
    {
        if (TryTakeCached(size, out var block))
        {
            return block;
        }
        if (mayCollect && _bytesInUse + size > _threshold)
        {
            return null;
        }

        var status = _memory.Malloc(size, out nint pointer);
        if (status == CudaError.MemoryAllocation)
        {
            // Out of memory: give the cached blocks of other sizes back to the device and retry; then
            // (once) have the caller collect what unreachable storages hold, and come back.
            FreeCached();
            status = _memory.Malloc(size, out pointer);
            if (status == CudaError.MemoryAllocation && mayCollect)
            {
                return null;
            }
        }
        Check.ThrowIfFailed(status, $"cudaMalloc({size} bytes) with {_bytesInUse} bytes in use on cuda:{_memory.DeviceIndex}");
        _deviceAllocations++;
        return new DeviceMemoryHandle(_memory, pointer, size);
    }

    private bool TryTakeCached(long size, out DeviceMemoryHandle block)
    {
        if (_cached.TryGetValue(size, out var bin) && bin.TryPop(out block!))
        {
            _bytesCached -= size;
            _cacheHits++;
            return true;
        }
        block = null!;
        return false;
    }

    private void ReturnLocked(DeviceMemoryHandle block)
    {
        if (!_inUse.Remove(block))
        {
            return;
        }
        _bytesInUse -= block.Bytes;
        if (!_cached.TryGetValue(block.Bytes, out var bin))
        {
            bin = new Stack<DeviceMemoryHandle>();
            _cached[block.Bytes] = bin;
        }
        bin.Push(block);
        _bytesCached += block.Bytes;
    }

    private void DrainAbandoned()
    {
        while (_abandoned.TryDequeue(out var block))
        {
            _finalizedReturns++;
            ReturnLocked(block);
        }
    }

    private void FreeCached()
    {
        foreach (var bin in _cached.Values)
        {
            while (bin.Count > 0)
            {
                bin.Pop().Dispose();
            }
        }
        _cached.Clear();
        _bytesCached = 0;
    }
}
