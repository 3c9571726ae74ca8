using System.Numerics;

namespace Higher.Reference;

/// <summary>A snapshot of a <see cref="CpuBufferPool"/>'s counters (bytes are size-class bytes, not requested bytes).</summary>
/// <param name="BytesInUse">Bytes of arrays handed out and not yet returned. A storage that is never released (left to the garbage collector) stays counted: outside scopes this is an upper bound.</param>
/// <param name="BytesCached">Bytes of returned arrays kept for reuse.</param>
/// <param name="PeakBytesInUse">Largest <paramref name="BytesInUse"/> seen so far.</param>
/// <param name="PeakBytesHeld">Largest <paramref name="BytesInUse"/> + <paramref name="BytesCached"/> seen so far.</param>
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
/// allocator: a request is rounded up to a size class (powers of two from 64 bytes to 4 KiB, then
/// four classes per octave: 1, 1.25, 1.5 and 1.75 times a power of two, so at most 25% is wasted),
/// and an array given back by <see cref="CpuStorage.Dispose"/> waits in its class's bin for the
/// next request of that class and dtype instead of going to the garbage collector. A hot loop whose
/// tensors die in a scope thus reuses the same arrays and allocates nothing.
/// <para>
/// Thread-safe: each bin has its own lock (kernels running in parallel may allocate at once). The
/// pool never frees on its own; <see cref="Trim"/> drops the cached arrays to the garbage collector.
/// A storage returns its array at most once (its Dispose is idempotent), so an array is never in
/// two hands.
/// </para>
/// </summary>
public sealed class CpuBufferPool
{
    /// <summary>Number of size classes (the largest holds 2^35 bytes).</summary>
    public const int ClassCount = 7 + ((35 - 12) * 4);

    private const int MinShift = 6;     // 64 bytes
    private const int OctaveShift = 12; // 4 KiB: four classes per octave above

    private readonly Bin[] _bins = new Bin[4 * ClassCount];
    private long _bytesInUse;
    private long _bytesCached;
    private long _peakInUse;
    private long _peakHeld;
    private long _rents;
    private long _hits;
    private long _returns;

    /// <summary>Creates an empty pool.</summary>
    public CpuBufferPool()
    {
        for (int i = 0; i < _bins.Length; i++)
        {
            _bins[i] = new Bin { ClassBytes = ClassBytes(i % ClassCount) };
        }
    }

    /// <summary>The pool of <see cref="ReferenceBackend.Instance"/> and of storages made by <see cref="CpuStorage.Create"/>.</summary>
    public static CpuBufferPool Shared { get; } = new();

    /// <summary>Current counters.</summary>
    public CpuBufferPoolStatistics Statistics => new(
        Interlocked.Read(ref _bytesInUse), Interlocked.Read(ref _bytesCached), Interlocked.Read(ref _peakInUse), Interlocked.Read(ref _peakHeld),
        Interlocked.Read(ref _rents), Interlocked.Read(ref _hits), Interlocked.Read(ref _returns));

    /// <summary>The size class (in bytes) a request of <paramref name="bytes"/> is served from.</summary>
    public static long SizeClass(long bytes) => ClassBytes(ClassIndex(bytes));

    /// <summary>The index (0 to <see cref="ClassCount"/> - 1) of the class of <paramref name="bytes"/> (at least 1).</summary>
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
        int index = 6 + ((k - OctaveShift) * 4) + (int)j;
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
        if (index <= 6)
        {
            return 1L << (index + MinShift);
        }
        int k = OctaveShift + ((index - 7) / 4);
        int j = ((index - 7) % 4) + 1;
        return (1L << k) + (j * (1L << (k - 2)));
    }

    /// <summary>Drops every cached array to the garbage collector; arrays in use are untouched.</summary>
    public void Trim()
    {
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
            Interlocked.Add(ref _bytesCached, -freed);
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
        var bin = _bins[((int)dtype * ClassCount) + cls];
        T[]? array = null;
        lock (bin.Gate)
        {
            if (bin.Count > 0)
            {
                array = (T[])bin.Items[--bin.Count];
                bin.Items[bin.Count] = null!;
            }
        }
        Interlocked.Increment(ref _rents);
        if (array is not null)
        {
            Interlocked.Increment(ref _hits);
            Interlocked.Add(ref _bytesCached, -classBytes);
            if (zeroed)
            {
                Array.Clear(array, 0, length);
            }
        }
        else
        {
            array = zeroed ? new T[capacity] : GC.AllocateUninitializedArray<T>((int)capacity);
        }
        long inUse = Interlocked.Add(ref _bytesInUse, classBytes);
        UpdatePeak(ref _peakInUse, inUse);
        UpdatePeak(ref _peakHeld, inUse + Interlocked.Read(ref _bytesCached));
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
        var bin = _bins[((int)dtype * ClassCount) + cls];
        lock (bin.Gate)
        {
            if (bin.Count == bin.Items.Length)
            {
                Array.Resize(ref bin.Items, Math.Max(4, bin.Items.Length * 2));
            }
            bin.Items[bin.Count++] = array;
        }
        Interlocked.Increment(ref _returns);
        Interlocked.Add(ref _bytesInUse, -classBytes);
        Interlocked.Add(ref _bytesCached, classBytes);
    }

    private static void UpdatePeak(ref long peak, long value)
    {
        long seen = Interlocked.Read(ref peak);
        while (value > seen)
        {
            long previous = Interlocked.CompareExchange(ref peak, value, seen);
            if (previous == seen)
            {
                return;
            }
            seen = previous;
        }
    }

    private sealed class Bin
    {
        public readonly Lock Gate = new();
        public Array[] Items = [];
        public int Count;
        public long ClassBytes;
    }
}
