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
}
