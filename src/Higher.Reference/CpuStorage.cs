using System.Runtime.InteropServices;

namespace Higher.Reference;

/// <summary>
/// A host buffer of the <see cref="ReferenceBackend"/>: one managed array whose element type
/// matches <see cref="DType"/> (float[] for Float32, double[] for Float64, long[] for Int64,
/// bool[] for Bool). The garbage collector owns the memory, so <see cref="Dispose"/> does nothing;
/// the engine reads it only through <see cref="IHostStorage"/>.
/// </summary>
public sealed class CpuStorage : IHostStorage
{
    private CpuStorage(Array data, DType dtype)
    {
        Data = data;
        DType = dtype;
    }

    /// <inheritdoc/>
    public ReadOnlySpan<T> Read<T>() where T : unmanaged => AsSpan<T>();

    /// <summary>The backing array; its element type follows <see cref="DType"/>.</summary>
    public Array Data { get; }

    /// <inheritdoc/>
    public DType DType { get; }

    /// <inheritdoc/>
    public long Length => Data.LongLength;

    /// <inheritdoc/>
    public Device Device => Device.Cpu;

    /// <summary>Wraps an existing array without copying; its element type decides the dtype.</summary>
    public static CpuStorage Wrap(float[] data) => new(data ?? throw new ArgumentNullException(nameof(data)), DType.Float32);

    /// <summary>Wraps an existing array without copying; its element type decides the dtype.</summary>
    public static CpuStorage Wrap(double[] data) => new(data ?? throw new ArgumentNullException(nameof(data)), DType.Float64);

    /// <summary>Wraps an existing array without copying; its element type decides the dtype.</summary>
    public static CpuStorage Wrap(long[] data) => new(data ?? throw new ArgumentNullException(nameof(data)), DType.Int64);

    /// <summary>Wraps an existing array without copying; its element type decides the dtype.</summary>
    public static CpuStorage Wrap(bool[] data) => new(data ?? throw new ArgumentNullException(nameof(data)), DType.Bool);

    /// <summary>Allocates a storage of <paramref name="length"/> elements, zero-filled or (when <paramref name="zeroed"/> is false) with unspecified content.</summary>
    public static CpuStorage Create(DType dtype, long length, bool zeroed = true)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (length > Array.MaxLength)
        {
            throw new ArgumentOutOfRangeException(nameof(length), length, $"The reference backend holds at most {Array.MaxLength} elements per storage.");
        }
        int n = (int)length;
        return dtype switch
        {
            DType.Float32 => new CpuStorage(zeroed ? new float[n] : GC.AllocateUninitializedArray<float>(n), dtype),
            DType.Float64 => new CpuStorage(zeroed ? new double[n] : GC.AllocateUninitializedArray<double>(n), dtype),
            DType.Int64 => new CpuStorage(zeroed ? new long[n] : GC.AllocateUninitializedArray<long>(n), dtype),
            DType.Bool => new CpuStorage(zeroed ? new bool[n] : GC.AllocateUninitializedArray<bool>(n), dtype),
            _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Unknown dtype."),
        };
    }

    /// <summary>The elements as float; throws <see cref="InvalidOperationException"/> unless the dtype is Float32.</summary>
    public Span<float> AsFloat32() => Data as float[] ?? throw Mismatch(DType.Float32);

    /// <summary>The elements as double; throws <see cref="InvalidOperationException"/> unless the dtype is Float64.</summary>
    public Span<double> AsFloat64() => Data as double[] ?? throw Mismatch(DType.Float64);

    /// <summary>The elements as long; throws <see cref="InvalidOperationException"/> unless the dtype is Int64.</summary>
    public Span<long> AsInt64() => Data as long[] ?? throw Mismatch(DType.Int64);

    /// <summary>The elements as bool; throws <see cref="InvalidOperationException"/> unless the dtype is Bool.</summary>
    public Span<bool> AsBool() => Data as bool[] ?? throw Mismatch(DType.Bool);

    /// <summary>
    /// The elements as <typeparamref name="T"/>, which must be the CLR type of the dtype
    /// (float, double, long or bool); throws <see cref="InvalidOperationException"/> otherwise.
    /// </summary>
    public Span<T> AsSpan<T>() where T : unmanaged =>
        Data is T[] typed ? typed.AsSpan() : throw new InvalidOperationException($"Storage of dtype {DType.Name()} cannot be viewed as {typeof(T).Name}.");

    /// <summary>The raw bytes of the buffer (a bool element is one byte, 0 or 1).</summary>
    public Span<byte> AsBytes() => DType switch
    {
        DType.Float32 => MemoryMarshal.AsBytes(AsFloat32()),
        DType.Float64 => MemoryMarshal.AsBytes(AsFloat64()),
        DType.Int64 => MemoryMarshal.AsBytes(AsInt64()),
        _ => MemoryMarshal.AsBytes(AsBool()),
    };

    /// <summary>Nothing to release: the garbage collector owns the array.</summary>
    public void Dispose()
    {
    }

    private InvalidOperationException Mismatch(DType wanted) =>
        new($"Storage of dtype {DType.Name()} was accessed as {wanted.Name()}.");
}
