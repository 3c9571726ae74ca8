using System.Numerics;

namespace Higher.Reference;

/// <summary>A snapshot of a <see cref="CpuBufferPool"/>'s counters (bytes are size-class bytes, not requested bytes).</summary>
/// <param name="BytesInUse">Bytes of arrays handed out and not yet returned. A storage that is never released (left to the garbage collector) stays counted: outside scopes this is an upper bound.</param>
/// <param name="BytesCached">Bytes of returned arrays kept for reuse.</param>
/// <param name="PeakBytesInUse">Largest <paramref name="BytesInUse"/> seen so far (exact on one thread; under concurrent rents it may miss the last bytes of a simultaneous rise).</param>
/// <param name="PeakBytesHeld">Largest <paramref name="BytesInUse"/> + <paramref name="BytesCached"/> seen so far (same caveat).</param>
/// <param name="Rents">Arrays handed out (hits plus fresh allocations).</param>
/// <param name="Hits">Rents served from the cache.</param>
/// <param name="Returns">Arrays taken back.</param>
public readonly record struct CpuBufferPoolStatistics(
    long BytesInUse, long BytesCached, long PeakBytesInUse, long PeakBytesHeld, long Rents, long Hits, long Returns)
{
    /// <summary>Bytes the pool accounts for: in use plus cached.</summary>
    public long BytesHeld => BytesInUse + BytesCached;

    /// <summary>Hits / Rents (0 before the first rent).</summary>
    public double HitRate => Rents == 0 ? 0 : (double)Hits / Rents;
}

/// <summary>
/// Host buffer pool of the <see cref="ReferenceBackend"/>, the host twin of the CUDA caching
/// allocator: a request is rounded up to a size class (64, 128 and 256 bytes, then four classes per
/// octave: 1.25, 1.5, 1.75 and 2 times a power of two, so above 256 bytes at most 25% is wasted),
/// and an array given back by <see cref="CpuStorage.Dispose"/> waits in its class's bin for the
/// next request of that class and dtype instead of going to the garbage collector. A hot loop whose
/// tensors die in a scope thus reuses the same arrays and allocates nothing.
/// <para>
/// Thread-safe: each bin has its own lock (kernels running in parallel may allocate at once). The
/// pool never frees on its own; <see cref="Trim"/> drops the cached arrays to the garbage collector.
/// A storage returns its array at most once (its Dispose is idempotent), so an array is never in
/// two hands.
/// </para>
/// <para>
/// Small classes (up to <see cref="ThreadCachedBytes"/>) have a per-thread cache in front of the bins,
/// as the size-class caches of malloc do: a thread's returns of a class go to its own stack of up to
/// <see cref="ThreadCacheDepth"/> arrays, and its rents take from there first, without a lock, so a
/// loop of small ops whose tensors die in a scope reuses its arrays at the cost of a few loads and
/// stores. A full stack spills to the bins; an array may be rented on one thread and returned on
/// another (it then joins the returning thread's stack). The statistics count every thread's cache;
/// the arrays a thread holds count as cached. A thread's cache belongs to one pool at a time (using
/// another pool on that thread moves its arrays back to their bins), and the cache of a thread that
/// ended goes back to the bins at the next <see cref="Statistics"/> or <see cref="Trim"/>.
/// </para>
/// </summary>
public sealed class CpuBufferPool
{
    /// <summary>Number of size classes (the largest holds 2^35 bytes).</summary>
    public const int ClassCount = 3 + ((35 - OctaveShift) * 4);

    /// <summary>The largest class served by the per-thread caches (16 KiB).</summary>
    public const long ThreadCachedBytes = 16 * 1024;

    /// <summary>Arrays of one class and dtype a thread's cache keeps before returns spill to the shared bins.</summary>
    public const int ThreadCacheDepth = 8;

    private const int MinShift = 6;    // 64 bytes
    private const int OctaveShift = 8; // 256 bytes: four classes per octave above
    private const int CachedClasses = 27; // classes 0..26: up to 16 KiB (checked in the constructor)

    [ThreadStatic]
    private static ThreadCache? t_cache;

    // Every live thread cache of this pool (for the statistics and Trim), and the counters of the retired ones.
    private readonly List<ThreadCache> _caches = [];
    private readonly Lock _cachesGate = new();
    private long _retiredHits;
    private long _retiredReturns;
    private long _retiredMisses;
    // Bumped by Trim: a thread cache of an older generation drops its arrays before its next use.
    private volatile int _generation;

    private readonly Bin[] _bins = new Bin[4 * ClassCount];
    // Bytes in use and held are global (the peaks need them); the other counters live in the bins,
    // updated under the bin's lock, and are summed on demand.
    private long _bytesInUse;
    private long _bytesHeld;
    private long _peakInUse;
    private long _peakHeld;

    /// <summary>Creates an empty pool.</summary>
    public CpuBufferPool()
    {
        for (int i = 0; i < _bins.Length; i++)
        {
            _bins[i] = new Bin { ClassBytes = ClassBytes(i % ClassCount) };
        }
        System.Diagnostics.Debug.Assert(ClassBytes(CachedClasses - 1) == ThreadCachedBytes);
    }

    /// <summary>The pool of <see cref="ReferenceBackend.Instance"/> and of storages made by <see cref="CpuStorage.Create"/>.</summary>
    public static CpuBufferPool Shared { get; } = new();

    /// <summary>Current counters.</summary>
    public CpuBufferPoolStatistics Statistics
    {
        get
        {
            long rents = 0, hits = 0, returns = 0;
            lock (_cachesGate)
            {
                RetireEndedThreads();
                hits += _retiredHits;
                returns += _retiredReturns;
                rents += _retiredMisses;
                foreach (var cache in _caches)
                {
                    hits += Volatile.Read(ref cache.Hits);
                    returns += Volatile.Read(ref cache.Returns);
                    rents += Volatile.Read(ref cache.Misses);
                }
            }
            rents += hits; // the thread caches' hits and misses; the bins' hits and the misses of larger classes are added below
            foreach (var bin in _bins)
            {
                lock (bin.Gate)
                {
                    rents += bin.Hits + Interlocked.Read(ref bin.Misses);
                    hits += bin.Hits;
                    returns += bin.Returns;
                }
            }
            long inUse = Interlocked.Read(ref _bytesInUse);
            return new(inUse, Interlocked.Read(ref _bytesHeld) - inUse, Interlocked.Read(ref _peakInUse), Interlocked.Read(ref _peakHeld),
                rents, hits, returns);
        }
    }

    /// <summary>The size class (in bytes) a request of <paramref name="bytes"/> is served from.</summary>
    public static long SizeClass(long bytes) => ClassBytes(ClassIndex(bytes));

    /// <summary>The index (0 to <see cref="ClassCount"/> - 1) of the class of <paramref name="bytes"/> (at least 1).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public static int ClassIndex(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        if (bytes <= 1L << MinShift)
        {
            return 0;
        }
        if (bytes <= 1L << OctaveShift)
        {
            return BitOperations.Log2(BitOperations.RoundUpToPowerOf2((ulong)bytes)) - MinShift;
        }
        // 2^k < bytes <= 2^(k+1): the classes 2^k + j·2^(k-2), j = 1..4.
        int k = BitOperations.Log2((ulong)(bytes - 1));
        long step = 1L << (k - 2);
        long j = (bytes - (1L << k) + step - 1) / step;
        int index = 2 + ((k - OctaveShift) * 4) + (int)j;
        if (index >= ClassCount)
        {
            throw new ArgumentOutOfRangeException(nameof(bytes), bytes, "The request is larger than the largest size class.");
        }
        return index;
    }

    /// <summary>The bytes of class <paramref name="index"/>.</summary>
    public static long ClassBytes(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, ClassCount);
        if (index <= 2)
        {
            return 1L << (index + MinShift);
        }
        int k = OctaveShift + ((index - 3) / 4);
        int j = ((index - 3) % 4) + 1;
        return (1L << k) + (j * (1L << (k - 2)));
    }

    /// <summary>
    /// Drops every cached array to the garbage collector; arrays in use are untouched. The calling
    /// thread's cache and those of ended threads are dropped now; another live thread drops its cached
    /// arrays at its next rent or return from this pool (they count as cached until then).
    /// </summary>
    public void Trim()
    {
        _generation++;
        if (t_cache is { } own && ReferenceEquals(own.Pool, this))
        {
            DropCached(own);
            own.Generation = _generation;
        }
        lock (_cachesGate)
        {
            RetireEndedThreads();
        }
        foreach (var bin in _bins)
        {
            long freed = 0;
            lock (bin.Gate)
            {
                for (int i = 0; i < bin.Count; i++)
                {
                    freed += bin.ClassBytes;
                    bin.Items[i] = null!;
                }
                bin.Count = 0;
            }
            Interlocked.Add(ref _bytesHeld, -freed);
        }
    }

    /// <summary>
    /// An array of at least <paramref name="length"/> elements of <typeparamref name="T"/> (the CLR
    /// type of <paramref name="dtype"/>), cleared over its first <paramref name="length"/> elements when <paramref name="zeroed"/>.
    /// Returns null for lengths the pool does not serve (0, or a class beyond <see cref="Array.MaxLength"/> elements).
    /// </summary>
    internal T[]? Rent<T>(DType dtype, int length, bool zeroed) where T : unmanaged
    {
        if (length == 0)
        {
            return null;
        }
        int size = System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
        int cls = ClassIndex((long)length * size);
        long classBytes = ClassBytes(cls);
        long capacity = classBytes / size;
        if (capacity > Array.MaxLength)
        {
            return null;
        }
        ThreadCache? cache = null;
        if (cls < CachedClasses)
        {
            cache = CacheOfThisThread();
            int slot = ((int)dtype * CachedClasses) + cls;
            int count = cache.Counts[slot];
            if (count > 0)
            {
                ref var item = ref cache.Items[(slot * ThreadCacheDepth) + count - 1].Array;
                // The slot's dtype and class say what the array is (only Return fills it, checking both).
                var cached = System.Runtime.CompilerServices.Unsafe.As<T[]>(item!);
                item = null;
                cache.Counts[slot] = count - 1;
                cache.Hits++;
                if (zeroed)
                {
                    Array.Clear(cached, 0, length);
                }
                UpdatePeak(ref _peakInUse, Interlocked.Add(ref _bytesInUse, classBytes));
                return cached;
            }
        }
        var bin = _bins[((int)dtype * ClassCount) + cls];
        T[]? array = null;
        // An empty bin is a miss without taking its lock (a stale read only turns a hit into a miss).
        if (Volatile.Read(ref bin.Count) > 0)
        {
            lock (bin.Gate)
            {
                if (bin.Count > 0)
                {
                    array = (T[])bin.Items[--bin.Count];
                    bin.Items[bin.Count] = null!;
                    bin.Hits++;
                }
            }
        }
        long held;
        if (array is null)
        {
            // A thread's own counter for the classes it caches (no atomic on the path of every fresh array).
            if (cache is not null)
            {
                cache.Misses++;
            }
            else
            {
                Interlocked.Increment(ref bin.Misses);
            }
        }
        if (array is not null)
        {
            if (zeroed)
            {
                Array.Clear(array, 0, length);
            }
            held = Interlocked.Read(ref _bytesHeld);
        }
        else
        {
            array = zeroed ? new T[capacity] : GC.AllocateUninitializedArray<T>((int)capacity);
            held = Interlocked.Add(ref _bytesHeld, classBytes);
        }
        long inUse = Interlocked.Add(ref _bytesInUse, classBytes);
        UpdatePeak(ref _peakInUse, inUse);
        UpdatePeak(ref _peakHeld, held);
        return array;
    }

    /// <summary>Takes back an array rented from this pool for <paramref name="dtype"/> (called once per array, by its storage).</summary>
    internal void Return(DType dtype, Array array)
    {
        int size = dtype.SizeOf();
        long classBytes = (long)array.Length * size;
        int cls = ClassIndex(classBytes);
        if (ClassBytes(cls) != classBytes)
        {
            throw new InvalidOperationException($"An array of {array.Length} elements is not of a size class of this pool.");
        }
        if (cls < CachedClasses)
        {
            var cache = CacheOfThisThread();
            int slot = ((int)dtype * CachedClasses) + cls;
            int count = cache.Counts[slot];
            if (count < ThreadCacheDepth)
            {
                cache.Items[(slot * ThreadCacheDepth) + count].Array = array;
                cache.Counts[slot] = count + 1;
                cache.Returns++;
                Interlocked.Add(ref _bytesInUse, -classBytes);
                return;
            }
        }
        PushToBin(dtype, cls, array);
        Interlocked.Add(ref _bytesInUse, -classBytes);
    }

    private void PushToBin(DType dtype, int cls, Array array, bool countReturn = true)
    {
        var bin = _bins[((int)dtype * ClassCount) + cls];
        lock (bin.Gate)
        {
            if (bin.Count == bin.Items.Length)
            {
                Array.Resize(ref bin.Items, Math.Max(4, bin.Items.Length * 2));
            }
            bin.Items[bin.Count++] = array;
            if (countReturn)
            {
                bin.Returns++;
            }
        }
    }

    /// <summary>This thread's cache for this pool: made (and registered) on first use, taken over from another pool, or emptied after a Trim.</summary>
    private ThreadCache CacheOfThisThread()
    {
        var cache = t_cache;
        if (cache is not null && ReferenceEquals(cache.Pool, this) && cache.Generation == _generation)
        {
            return cache;
        }
        return SwitchCache(cache);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private ThreadCache SwitchCache(ThreadCache? cache)
    {
        if (cache is not null && ReferenceEquals(cache.Pool, this))
        {
            // Trimmed since this thread's last use.
            DropCached(cache);
            cache.Generation = _generation;
            return cache;
        }
        if (cache is not null)
        {
            // The thread moves to another pool: its arrays go back to the bins of the pool they came from.
            cache.Pool.Retire(cache);
        }
        var fresh = new ThreadCache(this, _generation);
        lock (_cachesGate)
        {
            RetireEndedThreads();
            _caches.Add(fresh);
        }
        t_cache = fresh;
        return fresh;
    }

    /// <summary>Forgets <paramref name="cache"/>, whose thread moved to another pool: its arrays go back to the bins (or are dropped if a Trim came since) and its counters are folded into the pool's.</summary>
    private void Retire(ThreadCache cache)
    {
        lock (_cachesGate)
        {
            if (_caches.Remove(cache))
            {
                Empty(cache);
            }
        }
    }

    /// <summary>Retires the caches of threads that ended (nothing can touch them any more). Under <see cref="_cachesGate"/>.</summary>
    private void RetireEndedThreads()
    {
        for (int i = _caches.Count - 1; i >= 0; i--)
        {
            var cache = _caches[i];
            if (!cache.Owner.IsAlive)
            {
                _caches.RemoveAt(i);
                Empty(cache);
            }
        }
    }

    /// <summary>Moves a retired cache's arrays to the bins (dropped instead when a Trim came since its last use) and folds its counters in. Under <see cref="_cachesGate"/>.</summary>
    private void Empty(ThreadCache cache)
    {
        _retiredHits += cache.Hits;
        _retiredReturns += cache.Returns;
        _retiredMisses += cache.Misses;
        if (cache.Generation != _generation)
        {
            DropCached(cache);
            return;
        }
        for (int slot = 0; slot < cache.Counts.Length; slot++)
        {
            for (int i = 0; i < cache.Counts[slot]; i++)
            {
                ref var item = ref cache.Items[(slot * ThreadCacheDepth) + i].Array;
                PushToBin((DType)(slot / CachedClasses), slot % CachedClasses, item!, countReturn: false);
                item = null;
            }
            cache.Counts[slot] = 0;
        }
    }

    /// <summary>Drops the arrays of a cache to the garbage collector (by its own thread, or once that thread ended).</summary>
    private void DropCached(ThreadCache cache)
    {
        long freed = 0;
        for (int slot = 0; slot < cache.Counts.Length; slot++)
        {
            int count = cache.Counts[slot];
            if (count == 0)
            {
                continue;
            }
            freed += count * ClassBytes(slot % CachedClasses);
            Array.Clear(cache.Items, slot * ThreadCacheDepth, count);
            cache.Counts[slot] = 0;
        }
        Interlocked.Add(ref _bytesHeld, -freed);
    }

    // A plain compare-and-store, not a CAS loop: in a loop whose storages are never returned the bytes
    // in use grow on every rent, and an atomic per rent costs more than the statistic is worth. Under
    // concurrent rents a peak may thus miss the last few bytes of a simultaneous rise.
    private static void UpdatePeak(ref long peak, long value)
    {
        if (value > Volatile.Read(ref peak))
        {
            Volatile.Write(ref peak, value);
        }
    }

    /// <summary>One thread's stacks of small arrays (owner thread only, apart from retirement once the thread ended).</summary>
    private sealed class ThreadCache(CpuBufferPool pool, int generation)
    {
        public readonly CpuBufferPool Pool = pool;
        public readonly Thread Owner = Thread.CurrentThread;
        // Structs, not Array references: storing or taking one needs no array-covariance check.
        public readonly Slot[] Items = new Slot[4 * CachedClasses * ThreadCacheDepth];
        public readonly int[] Counts = new int[4 * CachedClasses];
        public int Generation = generation;
        public long Hits;
        public long Returns;
        public long Misses;
    }

    private struct Slot
    {
        public Array? Array;
    }

    private sealed class Bin
    {
        public readonly Lock Gate = new();
        public Array[] Items = [];
        public int Count;
        public long ClassBytes;
        public long Misses;
        public long Hits;
        public long Returns;
    }
}
