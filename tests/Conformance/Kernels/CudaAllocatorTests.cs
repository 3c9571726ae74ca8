using System.Runtime.CompilerServices;
using Higher.Cuda;

namespace Higher.Conformance.Kernels;

/// <summary>
/// The caching allocator's logic without a GPU: the same <see cref="CudaAllocator"/> and
/// <see cref="CudaStorage"/> the backend uses, over a fake device memory with a fixed capacity.
/// Covers reuse, the finalizer path (the engine never disposes intermediates), the collection
/// threshold, out-of-memory recovery, and allocation scopes. The class runs alone (its collection
/// is not parallelized), so that no other test's garbage collections finalize its storages early.
/// </summary>
[Collection(nameof(CudaAllocatorTests))]
public sealed class CudaAllocatorTests
{
    private static readonly Device Gpu = Device.Cuda(0);

    /// <summary>Fake device memory: addresses from a counter, cudaErrorMemoryAllocation past the capacity.</summary>
    internal sealed class FakeDeviceMemory(long capacity) : IDeviceMemory
    {
        private readonly Lock _gate = new();
        private readonly Dictionary<nint, long> _live = [];
        private nint _next = 0x1000;

        public int DeviceIndex => 0;

        public long BytesAllocated { get; private set; }

        public int Mallocs { get; private set; }

        public int Frees { get; private set; }

        public int FailedMallocs { get; private set; }

        public CudaError Malloc(long bytes, out nint pointer)
        {
            lock (_gate)
            {
                if (BytesAllocated + bytes > capacity)
                {
                    FailedMallocs++;
                    pointer = 0;
                    return CudaError.MemoryAllocation;
                }
                pointer = _next;
                _next += (nint)bytes;
                _live[pointer] = bytes;
                BytesAllocated += bytes;
                Mallocs++;
                return CudaError.Success;
            }
        }

        public CudaError Free(nint pointer)
        {
            lock (_gate)
            {
                if (!_live.Remove(pointer, out long bytes))
                {
                    return CudaError.InvalidValue;
                }
                BytesAllocated -= bytes;
                Frees++;
                return CudaError.Success;
            }
        }
    }

    private static (CudaAllocator Allocator, FakeDeviceMemory Memory) Create(long capacity = 1L << 30, long threshold = CudaAllocator.DefaultMinimumCollectionThreshold)
    {
        var memory = new FakeDeviceMemory(capacity);
        return (new CudaAllocator(memory, threshold), memory);
    }

    /// <summary>Allocates storages and drops them without disposing (in its own frame, so nothing keeps them alive).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Abandon(CudaAllocator allocator, int count, long floats)
    {
        for (int i = 0; i < count; i++)
        {
            _ = allocator.NewStorage(DType.Float32, floats, Gpu);
        }
    }

    private static void CollectAll()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }

    [Fact]
    public void Dispose_ReturnsTheBlockToTheCache_AndTheNextRequestOfTheClassReusesIt()
    {
        var (allocator, memory) = Create();
        var a = allocator.NewStorage(DType.Float32, 100, Gpu);
        nint address = a.Pointer;
        Assert.Equal(new CudaAllocatorStatistics(512, 0, 512, 1, 1, 0, 0, 0), allocator.Statistics);
        a.Dispose();
        Assert.Equal(new CudaAllocatorStatistics(0, 512, 512, 1, 1, 0, 0, 0), allocator.Statistics);

        var b = allocator.NewStorage(DType.Float64, 64, Gpu);
        Assert.Equal(address, b.Pointer);
        var stats = allocator.Statistics;
        Assert.Equal((512L, 0L, 1L, 2L, 1L), (stats.BytesInUse, stats.BytesCached, stats.DeviceAllocations, stats.Requests, stats.CacheHits));
        Assert.Equal(0.5, stats.HitRate);
        Assert.Equal(1, memory.Mallocs);
        Assert.Throws<ObjectDisposedException>(() => a.Pointer);
    }

    [Fact]
    public void EmptyStorages_TakeNoBlock()
    {
        var (allocator, memory) = Create();
        var empty = allocator.NewStorage(DType.Float64, 0, Gpu);
        Assert.Equal(0, empty.Pointer);
        Assert.Equal(0, allocator.Statistics.Requests);
        Assert.Equal(0, memory.Mallocs);
    }

    [Fact]
    public void FinalizedStorages_GiveTheirBlocksBack()
    {
        var (allocator, memory) = Create();
        Abandon(allocator, 8, 1000);
        Assert.Equal(8 * 4096, allocator.Statistics.BytesInUse);
        CollectAll();
        var stats = allocator.Statistics;
        Assert.Equal(0, stats.BytesInUse);
        Assert.Equal(8 * 4096, stats.BytesCached);
        Assert.Equal(8, stats.FinalizedReturns);

        // The blocks are reused: no new device allocation for the same class.
        var again = allocator.NewStorage(DType.Float32, 1000, Gpu);
        Assert.Equal(8, memory.Mallocs);
        Assert.Equal(1, allocator.Statistics.CacheHits);
        GC.KeepAlive(again);
    }

    [Fact]
    public void CrossingTheThreshold_CollectsGarbageBeforeAskingTheDevice_SoMemoryStaysFlat()
    {
        // A loop that never disposes, like the engine's intermediates: 64 KiB per iteration.
        var (allocator, memory) = Create(threshold: 1L << 20);
        var samples = new List<CudaAllocatorStatistics>();
        for (int it = 1; it <= 1000; it++)
        {
            Abandon(allocator, 4, 4096);
            if (it is 1 or 10 or 100 or 1000)
            {
                samples.Add(allocator.Statistics);
            }
        }
        var last = samples[^1];
        Assert.True(last.InducedCollections > 0, "the threshold should have triggered collections");
        // Never more than the threshold (plus one request) was held at once, however many iterations ran.
        Assert.InRange(last.PeakBytesInUse, 0, (1L << 20) + 16384);
        Assert.InRange(memory.BytesAllocated, 0, (1L << 20) + 16384);
        Assert.Equal(samples[2].DeviceAllocations, last.DeviceAllocations);
        Assert.True(last.HitRate > 0.9, $"hit rate {last.HitRate}");
        Assert.Equal(0, memory.FailedMallocs);
    }

    [Fact]
    public void OutOfMemory_FreesTheCacheAndCollects_ThenRetries()
    {
        // Capacity for four 4 KiB blocks; the threshold is out of reach, so only the OOM path can help.
        var (allocator, memory) = Create(capacity: 4 * 4096, threshold: long.MaxValue);
        allocator.NewStorage(DType.Float32, 100, Gpu).Dispose(); // a 512-byte block sits in the cache
        Abandon(allocator, 3, 1000);                             // three unreachable 4 KiB storages
        var live = allocator.NewStorage(DType.Float32, 1000, Gpu);
        Assert.Equal(1, memory.FailedMallocs);                   // the fourth needed the cache freed first
        Assert.Equal(1, memory.Frees);

        // Now the device is full of live and unreachable blocks: only a collection helps.
        var next = allocator.NewStorage(DType.Float32, 1000, Gpu);
        var stats = allocator.Statistics;
        Assert.Equal(3, memory.FailedMallocs);
        Assert.Equal(1, stats.InducedCollections);
        Assert.Equal(3, stats.FinalizedReturns);
        Assert.Equal(2 * 4096, stats.BytesInUse);
        GC.KeepAlive(live);
        GC.KeepAlive(next);
    }

    [Fact]
    public void OutOfMemory_WhenEverythingIsLive_ThrowsCudaExceptionNamingTheRequest()
    {
        var (allocator, _) = Create(capacity: 2 * 4096, threshold: long.MaxValue);
        var a = allocator.NewStorage(DType.Float32, 1000, Gpu);
        var b = allocator.NewStorage(DType.Float32, 1000, Gpu);
        var e = Assert.Throws<CudaException>(() => allocator.NewStorage(DType.Float32, 1000, Gpu));
        Assert.Equal("cudaErrorMemoryAllocation", e.StatusName);
        Assert.Contains("cudaMalloc(4096 bytes) with 8192 bytes in use on cuda:0", e.Message, StringComparison.Ordinal);
        // The failed request left the counters consistent.
        Assert.Equal(8192, allocator.Statistics.BytesInUse);
        GC.KeepAlive(a);
        GC.KeepAlive(b);
    }

    [Fact]
    public void EmptyCache_FreesCachedBlocksOnly_AndDisposeFreesEverything()
    {
        var (allocator, memory) = Create();
        var live = allocator.NewStorage(DType.Float64, 10, Gpu);
        allocator.NewStorage(DType.Float64, 1000, Gpu).Dispose();
        allocator.EmptyCache();
        Assert.Equal(1, memory.Frees);
        Assert.Equal(0, allocator.Statistics.BytesCached);
        Assert.Equal(512, memory.BytesAllocated);

        allocator.Dispose();
        Assert.Equal(0, memory.BytesAllocated);
        var e = Assert.Throws<ObjectDisposedException>(() => live.Pointer);
        Assert.Contains("disposed", e.Message, StringComparison.Ordinal);
        Assert.Throws<ObjectDisposedException>(() => allocator.NewStorage(DType.Float32, 1, Gpu));
        live.Dispose();
    }

    [Fact]
    public void Scope_DisposesWhatWasAllocatedInside_ExceptKeptStorages()
    {
        var (allocator, _) = Create();
        var before = allocator.NewStorage(DType.Float32, 10, Gpu);
        CudaStorage kept, dropped;
        using (var scope = allocator.BeginScope())
        {
            dropped = allocator.NewStorage(DType.Float32, 10, Gpu);
            kept = scope.Keep(allocator.NewStorage(DType.Float32, 10, Gpu));
            var empty = allocator.NewStorage(DType.Float32, 0, Gpu);
            Assert.Equal(1, scope.Count);
            Assert.Same(empty, scope.Keep(empty));
        }
        Assert.Throws<ObjectDisposedException>(() => dropped.Pointer);
        Assert.NotEqual(0, kept.Pointer);
        Assert.NotEqual(0, before.Pointer);
        Assert.Equal(2 * 512, allocator.Statistics.BytesInUse);
    }

    [Fact]
    public void NestedScopes_KeepMovesToTheOuterScope_AndOtherAllocatorsAreUntouched()
    {
        var (allocator, _) = Create();
        var (other, _) = Create();
        CudaStorage fromInner, otherStorage;
        using (var outer = allocator.BeginScope())
        {
            using (var inner = other.BeginScope())
            {
                using var innermost = allocator.BeginScope();
                fromInner = innermost.Keep(allocator.NewStorage(DType.Float32, 10, Gpu));
                Assert.Equal(1, outer.Count);
                otherStorage = other.NewStorage(DType.Float32, 10, Gpu);
                Assert.Equal(1, inner.Count);
                Assert.Equal(0, innermost.Count);
            }
            Assert.Throws<ObjectDisposedException>(() => otherStorage.Pointer);
            Assert.NotEqual(0, fromInner.Pointer);
        }
        Assert.Throws<ObjectDisposedException>(() => fromInner.Pointer);
        Assert.Equal(0, allocator.Statistics.BytesInUse);
    }

    [Fact]
    public void Scope_DisposedOutOfOrder_Throws()
    {
        var (allocator, _) = Create();
        var outer = allocator.BeginScope();
        var inner = allocator.BeginScope();
        Assert.Throws<InvalidOperationException>(outer.Dispose);
        inner.Dispose();
        outer.Dispose();
        outer.Dispose();
        Assert.Throws<ObjectDisposedException>(() => outer.Keep(allocator.NewStorage(DType.Float32, 1, Gpu)));
    }

    [Fact]
    public void Scope_DoesNotCaptureOtherThreadsStorages()
    {
        var (allocator, _) = Create();
        using var scope = allocator.BeginScope();
        CudaStorage? storage = null;
        var thread = new Thread(() => storage = allocator.NewStorage(DType.Float32, 10, Gpu));
        thread.Start();
        thread.Join();
        Assert.Equal(0, scope.Count);
        Assert.NotNull(storage);
        Assert.NotEqual(0, storage.Pointer);
    }
}

/// <summary>Runs <see cref="CudaAllocatorTests"/> alone: its finalizer counts need quiet garbage collections.</summary>
[CollectionDefinition(nameof(CudaAllocatorTests), DisableParallelization = true)]
public sealed class CudaAllocatorTestsCollection;
