using Higher.Reference;

namespace Higher.Conformance.Memory;

/// <summary>The host buffer pool: size classes, reuse, statistics, thread safety, one return per storage.</summary>
public sealed class CpuBufferPoolTests
{
    [Theory]
    [InlineData(1, 64)]
    [InlineData(64, 64)]
    [InlineData(65, 128)]
    [InlineData(257, 320)]
    [InlineData(400, 448)]
    [InlineData(1600, 1792)]
    [InlineData(4096, 4096)]
    [InlineData(4097, 5120)]
    [InlineData(5120, 5120)]
    [InlineData(5121, 6144)]
    [InlineData(8192, 8192)]
    [InlineData(8193, 10240)]
    [InlineData(3L << 20, 3L << 20)]
    [InlineData((3L << 20) + 1, 7L << 19)]
    public void SizeClass_RoundsUpToTheNextClass(long bytes, long expected) => Assert.Equal(expected, CpuBufferPool.SizeClass(bytes));

    [Fact]
    public void SizeClasses_AreIncreasing_CoverEveryRequest_AndWasteAtMostAQuarterAbove256Bytes()
    {
        for (int i = 1; i < CpuBufferPool.ClassCount; i++)
        {
            Assert.True(CpuBufferPool.ClassBytes(i) > CpuBufferPool.ClassBytes(i - 1), $"class {i}");
            Assert.Equal(i, CpuBufferPool.ClassIndex(CpuBufferPool.ClassBytes(i)));
            Assert.Equal(i, CpuBufferPool.ClassIndex(CpuBufferPool.ClassBytes(i - 1) + 1));
        }
        for (long bytes = 257; bytes < 1 << 22; bytes = (bytes * 9 / 8) + 7)
        {
            long cls = CpuBufferPool.SizeClass(bytes);
            Assert.InRange(cls, bytes, bytes * 5 / 4 + 1);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => CpuBufferPool.SizeClass(0));
    }

    [Fact]
    public void DisposedStorage_GivesItsArrayBack_AndTheNextRequestOfTheClassAndDTypeReusesIt()
    {
        var pool = new CpuBufferPool();
        var a = CpuStorage.Create(DType.Float32, 1000, zeroed: false, pool);
        var array = a.Data;
        Assert.Equal(1000, a.Length);
        Assert.Equal(1000, a.AsFloat32().Length);
        Assert.Equal(1024, array.Length); // 4000 bytes: the 4 KiB class
        a.AsFloat32().Fill(7);
        Assert.Equal(new CpuBufferPoolStatistics(4096, 0, 4096, 4096, 1, 0, 0), pool.Statistics);

        a.Dispose();
        Assert.Equal(new CpuBufferPoolStatistics(0, 4096, 4096, 4096, 1, 0, 1), pool.Statistics);
        Assert.Throws<ObjectDisposedException>(() => a.AsFloat32().Length);
        Assert.Throws<ObjectDisposedException>(() => a.Data);

        // Another dtype does not take it; the same class and dtype does, zero-filled on request.
        var other = CpuStorage.Create(DType.Int64, 500, zeroed: false, pool);
        Assert.NotSame(array, other.Data);
        var b = CpuStorage.Create(DType.Float32, 900, zeroed: true, pool);
        Assert.Same(array, b.Data);
        Assert.All(b.AsFloat32().ToArray(), v => Assert.Equal(0f, v));
        var stats = pool.Statistics;
        Assert.Equal((3L, 1L, 0L, 8192L), (stats.Rents, stats.Hits, stats.BytesCached, stats.BytesInUse));
        Assert.Equal(1.0 / 3, stats.HitRate, 12);
    }

    [Fact]
    public void DisposingTwice_ReturnsOnce()
    {
        var pool = new CpuBufferPool();
        var s = CpuStorage.Create(DType.Float64, 10, pool: pool);
        s.Dispose();
        s.Dispose();
        Assert.Equal(1, pool.Statistics.Returns);
        Assert.Equal(128, pool.Statistics.BytesCached); // 80 bytes: the 128-byte class
        var x = CpuStorage.Create(DType.Float64, 10, pool: pool);
        var y = CpuStorage.Create(DType.Float64, 10, pool: pool);
        Assert.NotSame(x.Data, y.Data); // the one cached array went to one storage only
    }

    [Fact]
    public void WrappedArrays_AreNeverPooled_AndEmptyStoragesTakeNoArray()
    {
        var pool = new CpuBufferPool();
        var data = new float[] { 1, 2, 3 };
        var wrapped = CpuStorage.Wrap(data);
        Assert.False(wrapped.IsPooled);
        wrapped.Dispose();
        Assert.Equal(new float[] { 1, 2, 3 }, data);
        var empty = CpuStorage.Create(DType.Float32, 0, pool: pool);
        Assert.Equal(0, empty.Length);
        Assert.False(empty.IsPooled);
        Assert.Equal(0, pool.Statistics.Rents);
    }

    [Fact]
    public void Trim_DropsTheCache_AndLeavesArraysInUse()
    {
        var pool = new CpuBufferPool();
        var live = CpuStorage.Create(DType.Float32, 100, pool: pool);
        CpuStorage.Create(DType.Float32, 5000, pool: pool).Dispose();
        Assert.Equal(20480, pool.Statistics.BytesCached);
        pool.Trim();
        Assert.Equal(0, pool.Statistics.BytesCached);
        Assert.Equal(448, pool.Statistics.BytesInUse); // 400 bytes: the 448-byte class
        live.AsFloat32()[0] = 5f;
        Assert.Equal(5f, live.AsFloat32()[0]);
    }

    [Fact]
    public void ParallelRentsAndReturns_KeepTheCountersExact_AndNeverHandOneArrayTwice()
    {
        var pool = new CpuBufferPool();
        var owners = new System.Collections.Concurrent.ConcurrentDictionary<Array, int>(ReferenceEqualityComparer.Instance);
        int clashes = 0;
        Parallel.For(0, 8, new ParallelOptions { MaxDegreeOfParallelism = 8 }, worker =>
        {
            var held = new List<CpuStorage>();
            for (int i = 0; i < 2000; i++)
            {
                var s = CpuStorage.Create(DType.Float32, 100 + (i % 7 * 300), zeroed: false, pool);
                if (!owners.TryAdd(s.Data, worker))
                {
                    Interlocked.Increment(ref clashes);
                }
                s.AsFloat32().Fill(worker);
                held.Add(s);
                if (held.Count > 5)
                {
                    var old = held[0];
                    held.RemoveAt(0);
                    Assert.All(old.AsFloat32().ToArray(), v => Assert.Equal((float)worker, v)); // nobody else wrote into it
                    owners.TryRemove(old.Data, out _);
                    old.Dispose();
                }
            }
            foreach (var s in held)
            {
                owners.TryRemove(s.Data, out _);
                s.Dispose();
            }
        });
        Assert.Equal(0, clashes);
        var stats = pool.Statistics;
        Assert.Equal(0, stats.BytesInUse);
        Assert.Equal(16000, stats.Rents);
        Assert.Equal(16000, stats.Returns);
        Assert.True(stats.HitRate > 0.9, $"hit rate {stats.HitRate}");
        Assert.InRange(stats.PeakBytesInUse, 1, 8 * 6 * 8192);
    }

    // ------------------------------------------------------------------ the per-thread cache of small classes

    [Fact]
    public void ThreadCache_ReusesAReturnedSmallArrayOnTheSameThread_AndTheReleasedStorageThrows()
    {
        var pool = new CpuBufferPool();
        var a = CpuStorage.Create(DType.Float32, 400, zeroed: false, pool); // 1600 bytes: a thread-cached class
        var array = a.Data;
        a.AsFloat32().Fill(3);
        a.Dispose();
        Assert.Equal(new CpuBufferPoolStatistics(0, 1792, 1792, 1792, 1, 0, 1), pool.Statistics);

        var b = CpuStorage.Create(DType.Float32, 400, zeroed: true, pool);
        Assert.Same(array, b.Data);
        Assert.All(b.AsFloat32().ToArray(), v => Assert.Equal(0f, v)); // zeroed on request, also from the thread cache
        Assert.Equal(new CpuBufferPoolStatistics(1792, 0, 1792, 1792, 2, 1, 1), pool.Statistics);
        // The first storage's accessors throw: it can never read or write the array now owned by b.
        Assert.Throws<ObjectDisposedException>(() => a.AsFloat32());
        Assert.Throws<ObjectDisposedException>(() => a.Data);
        b.AsFloat32()[0] = 9;
        Assert.Equal(9f, b.AsFloat32()[0]);
    }

    [Fact]
    public void ThreadCache_AFullStackSpillsToTheSharedBins_AndEveryArrayComesBack()
    {
        var pool = new CpuBufferPool();
        int n = CpuBufferPool.ThreadCacheDepth + 5;
        var storages = Enumerable.Range(0, n).Select(_ => CpuStorage.Create(DType.Float64, 100, zeroed: false, pool)).ToList();
        var arrays = new HashSet<Array>(storages.Select(s => s.Data), ReferenceEqualityComparer.Instance);
        Assert.Equal(n, arrays.Count);
        storages.ForEach(s => s.Dispose());
        var stats = pool.Statistics;
        Assert.Equal((0L, n * 896L, (long)n), (stats.BytesInUse, stats.BytesCached, stats.Returns)); // 800 bytes: the 896-byte class
        // Rented back on another thread: the spilled arrays come from the bins, the rest is fresh.
        var again = OnAnotherThread(() => Enumerable.Range(0, n).Select(_ => CpuStorage.Create(DType.Float64, 100, zeroed: false, pool)).ToList());
        Assert.Equal(5, again.Count(s => arrays.Contains(s.Data)));
        // And on this thread, the thread cache's ones.
        var mine = Enumerable.Range(0, n).Select(_ => CpuStorage.Create(DType.Float64, 100, zeroed: false, pool)).ToList();
        Assert.Equal(CpuBufferPool.ThreadCacheDepth, mine.Count(s => arrays.Contains(s.Data)));
        var all = again.Concat(mine).Select(s => s.Data).ToList();
        Assert.Equal(all.Count, new HashSet<Array>(all, ReferenceEqualityComparer.Instance).Count); // none handed out twice
    }

    [Fact]
    public void ThreadCache_CrossThreadReturn_JoinsTheReturningThreadsCache_AndTheCountersStayExact()
    {
        var pool = new CpuBufferPool();
        var made = OnAnotherThread(() => CpuStorage.Create(DType.Float32, 1000, zeroed: false, pool));
        var array = made.Data;
        Assert.Equal(4096, pool.Statistics.BytesInUse);
        made.Dispose(); // returned on this thread
        Assert.Equal(new CpuBufferPoolStatistics(0, 4096, 4096, 4096, 1, 0, 1), pool.Statistics);
        var reused = CpuStorage.Create(DType.Float32, 1000, zeroed: false, pool);
        Assert.Same(array, reused.Data);
        // Another thread does not see it while this one holds it.
        var elsewhere = OnAnotherThread(() => CpuStorage.Create(DType.Float32, 1000, zeroed: false, pool));
        Assert.NotSame(array, elsewhere.Data);
        Assert.Equal((3L, 1L, 8192L), (pool.Statistics.Rents, pool.Statistics.Hits, pool.Statistics.BytesInUse));
    }

    [Fact]
    public void ThreadCache_OfAThreadThatEnded_GoesBackToTheBins()
    {
        var pool = new CpuBufferPool();
        Array? array = null;
        var thread = new Thread(() =>
        {
            var s = CpuStorage.Create(DType.Float32, 100, zeroed: false, pool);
            array = s.Data;
            s.Dispose(); // into that thread's cache
        });
        thread.Start();
        thread.Join();
        Assert.Equal(new CpuBufferPoolStatistics(0, 448, 448, 448, 1, 0, 1), pool.Statistics);
        var here = CpuStorage.Create(DType.Float32, 100, zeroed: false, pool);
        Assert.Same(array, here.Data); // from the bins, where the ended thread's cache went
        Assert.Equal((2L, 1L), (pool.Statistics.Rents, pool.Statistics.Hits));
    }

    [Fact]
    public void ThreadCache_Trim_DropsThisThreadsCacheNow_AndAnotherThreadsAtItsNextUse()
    {
        var pool = new CpuBufferPool();
        using var parked = new ManualResetEventSlim();
        using var go = new ManualResetEventSlim();
        Array? otherArray = null;
        Array? otherAfterTrim = null;
        var other = new Thread(() =>
        {
            var s = CpuStorage.Create(DType.Float32, 200, zeroed: false, pool); // 800 bytes: the 896 class
            otherArray = s.Data;
            s.Dispose();
            parked.Set();
            go.Wait();
            otherAfterTrim = CpuStorage.Create(DType.Float32, 200, zeroed: false, pool).Data;
        });
        other.Start();
        parked.Wait(TestContext.Current.CancellationToken);
        var mine = CpuStorage.Create(DType.Float32, 100, zeroed: false, pool);
        var myArray = mine.Data;
        mine.Dispose();
        Assert.Equal(448 + 896, pool.Statistics.BytesCached);
        pool.Trim();
        Assert.Equal(896, pool.Statistics.BytesCached); // the other thread's array until it next uses the pool
        Assert.NotSame(myArray, CpuStorage.Create(DType.Float32, 100, zeroed: false, pool).Data);
        go.Set();
        other.Join();
        Assert.NotSame(otherArray, otherAfterTrim);
        Assert.Equal(0, pool.Statistics.BytesCached);
        Assert.Equal(448 + 896, pool.Statistics.BytesInUse);
    }

    [Fact]
    public void ThreadCache_MovingToAnotherPool_GivesTheArraysBackToTheirOwnPool()
    {
        var first = new CpuBufferPool();
        var second = new CpuBufferPool();
        var a = CpuStorage.Create(DType.Float32, 100, zeroed: false, first);
        var array = a.Data;
        a.Dispose();                                                                          // this thread's cache, for the first pool
        var b = CpuStorage.Create(DType.Float32, 100, zeroed: false, second);                 // the cache now serves the second pool
        Assert.NotSame(array, b.Data);
        Assert.Equal(new CpuBufferPoolStatistics(0, 448, 448, 448, 1, 0, 1), first.Statistics); // the array went to the first pool's bins
        Assert.Same(array, CpuStorage.Create(DType.Float32, 100, zeroed: false, first).Data);
        b.Dispose();
        Assert.Equal((0L, 448L, 1L), (second.Statistics.BytesInUse, second.Statistics.BytesCached, second.Statistics.Returns));
        Assert.Equal((2L, 1L, 1L), (first.Statistics.Rents, first.Statistics.Hits, first.Statistics.Returns));
    }

    /// <summary>Runs <paramref name="body"/> on a new thread (never inlined on this one, as a task's wait may be) and returns its result.</summary>
    private static T OnAnotherThread<T>(Func<T> body)
    {
        T result = default!;
        var thread = new Thread(() => result = body());
        thread.Start();
        thread.Join();
        return result;
    }
}
