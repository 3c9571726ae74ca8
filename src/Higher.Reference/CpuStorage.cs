using System.Runtime.InteropServices;

namespace Higher.Reference;

/// <summary>
/// A host buffer of the <see cref="ReferenceBackend"/>: one managed array whose element type
/// matches <see cref="DType"/> (float[] for Float32, double[] for Float64, long[] for Int64,
/// bool[] for Bool). Storages made by <see cref="Create"/> rent their array from a
/// <see cref="CpuBufferPool"/> (so it may be longer than <see cref="Length"/>: the span accessors
/// cover the first <see cref="Length"/> elements); <see cref="Dispose"/> gives it back once, after
/// which every accessor throws <see cref="ObjectDisposedException"/>. Storages that wrap a caller's
/// array (<see cref="Wrap(float[])"/>) are never pooled; their Dispose only makes them unusable.
/// A storage that is never disposed is left to the garbage collector.
/// The engine reads it only through <see cref="IHostStorage"/>.
/// </summary>
public sealed class CpuStorage : IHostStorage
{
    private readonly int _length;
    private readonly CpuBufferPool? _pool;
    // Null once disposed (a storage always has an array until then, an empty one too).
    private Array? _data;

    private CpuStorage(Array data, int length, DType dtype, CpuBufferPool? pool)
    {
        _data = data;
        _length = length;
        DType = dtype;
        _pool = pool;
    }

    /// <inheritdoc/>
    public ReadOnlySpan<T> Read<T>() where T : unmanaged => AsSpan<T>();

    /// <summary>The backing array; its element type follows <see cref="DType"/>. A pooled array may be longer than <see cref="Length"/>.</summary>
    public Array Data => _data ?? throw Disposed();

    /// <inheritdoc/>
    public DType DType { get; }

    /// <inheritdoc/>
    public long Length => _length;

    /// <inheritdoc/>
    public Device Device => Device.Cpu;

    /// <summary>True once <see cref="Dispose"/> ran.</summary>
    public bool IsDisposed => Volatile.Read(ref _data) is null;

    /// <summary>Whether the array came from a pool (and goes back to it on <see cref="Dispose"/>).</summary>
    public bool IsPooled => _pool is not null;

    /// <summary>Wraps an existing array without copying; its element type decides the dtype.</summary>
    public static CpuStorage Wrap(float[] data) => new(data ?? throw new ArgumentNullException(nameof(data)), data.Length, DType.Float32, null);

    /// <summary>Wraps an existing array without copying; its element type decides the dtype.</summary>
    public static CpuStorage Wrap(double[] data) => new(data ?? throw new ArgumentNullException(nameof(data)), data.Length, DType.Float64, null);

    /// <summary>Wraps an existing array without copying; its element type decides the dtype.</summary>
    public static CpuStorage Wrap(long[] data) => new(data ?? throw new ArgumentNullException(nameof(data)), data.Length, DType.Int64, null);

    /// <summary>Wraps an existing array without copying; its element type decides the dtype.</summary>
    public static CpuStorage Wrap(bool[] data) => new(data ?? throw new ArgumentNullException(nameof(data)), data.Length, DType.Bool, null);

    /// <summary>
    /// A storage of <paramref name="length"/> elements, zero-filled or (when <paramref name="zeroed"/> is
    /// false) with unspecified content, its array rented from <paramref name="pool"/> (default
    /// <see cref="CpuBufferPool.Shared"/>).
    /// </summary>
    public static CpuStorage Create(DType dtype, long length, bool zeroed = true, CpuBufferPool? pool = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (length > Array.MaxLength)
        {
            throw new ArgumentOutOfRangeException(nameof(length), length, $"The reference backend holds at most {Array.MaxLength} elements per storage.");
        }
        int n = (int)length;
        pool ??= CpuBufferPool.Shared;
        return dtype switch
        {
            DType.Float32 => Rent<float>(pool, dtype, n, zeroed),
            DType.Float64 => Rent<double>(pool, dtype, n, zeroed),
            DType.Int64 => Rent<long>(pool, dtype, n, zeroed),
            DType.Bool => Rent<bool>(pool, dtype, n, zeroed),
            _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Unknown dtype."),
        };
    }

    private static CpuStorage Rent<T>(CpuBufferPool pool, DType dtype, int n, bool zeroed) where T : unmanaged
    {
        var array = pool.Rent<T>(dtype, n, zeroed);
        if (array is not null)
        {
            return new CpuStorage(array, n, dtype, pool);
        }
        // Empty storages and the few lengths beyond the largest class that fits an array are not pooled.
        return new CpuStorage(zeroed ? new T[n] : GC.AllocateUninitializedArray<T>(n), n, dtype, null);
    }

    /// <summary>The elements as float; throws <see cref="InvalidOperationException"/> unless the dtype is Float32.</summary>
    public Span<float> AsFloat32() => new(_data as float[] ?? throw Mismatch(DType.Float32), 0, _length);

    /// <summary>The elements as double; throws <see cref="InvalidOperationException"/> unless the dtype is Float64.</summary>
    public Span<double> AsFloat64() => new(_data as double[] ?? throw Mismatch(DType.Float64), 0, _length);

    /// <summary>The elements as long; throws <see cref="InvalidOperationException"/> unless the dtype is Int64.</summary>
    public Span<long> AsInt64() => new(_data as long[] ?? throw Mismatch(DType.Int64), 0, _length);

    /// <summary>The elements as bool; throws <see cref="InvalidOperationException"/> unless the dtype is Bool.</summary>
    public Span<bool> AsBool() => new(_data as bool[] ?? throw Mismatch(DType.Bool), 0, _length);

    /// <summary>
    /// The elements as <typeparamref name="T"/>, which must be the CLR type of the dtype
    /// (float, double, long or bool); throws <see cref="InvalidOperationException"/> otherwise.
    /// </summary>
    public Span<T> AsSpan<T>() where T : unmanaged =>
        _data is T[] typed ? typed.AsSpan(0, _length)
        : _data is null ? throw Disposed()
        : throw new InvalidOperationException($"Storage of dtype {DType.Name()} cannot be viewed as {typeof(T).Name}.");

    /// <summary>The raw bytes of the buffer (a bool element is one byte, 0 or 1).</summary>
    public Span<byte> AsBytes() => DType switch
    {
        DType.Float32 => MemoryMarshal.AsBytes(AsFloat32()),
        DType.Float64 => MemoryMarshal.AsBytes(AsFloat64()),
        DType.Int64 => MemoryMarshal.AsBytes(AsInt64()),
        _ => MemoryMarshal.AsBytes(AsBool()),
    };

    /// <summary>
    /// Gives a pooled array back to its pool (once: later calls do nothing) and makes the storage
    /// unusable: every accessor throws <see cref="ObjectDisposedException"/> from then on.
    /// </summary>
    public void Dispose()
    {
        // One exchange both marks the storage disposed and takes the array, so it is returned once.
        var data = Interlocked.Exchange(ref _data, null);
        if (data is not null && _pool is not null)
        {
            _pool.Return(DType, data);
        }
    }

    private Exception Mismatch(DType wanted) => _data is null
        ? Disposed()
        : new InvalidOperationException($"Storage of dtype {DType.Name()} was accessed as {wanted.Name()}.");

    private ObjectDisposedException Disposed() =>
        new(nameof(CpuStorage), $"This {DType.Name()}[{_length}] host storage was released (its array went back to the pool); it cannot be read or written.");
}
