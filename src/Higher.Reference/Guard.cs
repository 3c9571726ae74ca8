namespace Higher.Reference;

/// <summary>
/// O(rank) checks run before the unchecked inner loops: the engine validates shapes, but an engine
/// bug must surface as an exception naming the operand, never as a silent read or write past a buffer.
/// </summary>
internal static class Guard
{
    /// <summary>Throws unless <paramref name="storage"/> holds at least <paramref name="shape"/>'s elements.</summary>
    public static void Holds(string op, string name, IStorage storage, Shape shape)
    {
        if (shape.Numel > storage.Length)
        {
            throw new ArgumentException($"{op}: {name} has shape {shape} ({shape.Numel} elements) but its storage holds {storage.Length}.", name);
        }
    }

    /// <summary>Throws unless <paramref name="storage"/> holds at least <paramref name="count"/> elements.</summary>
    public static void Holds(string op, string name, IStorage storage, long count)
    {
        if (count > storage.Length)
        {
            throw new ArgumentException($"{op}: {name} needs {count} elements but its storage holds {storage.Length}.", name);
        }
    }

    /// <summary>Throws unless <paramref name="shape"/> broadcasts to <paramref name="target"/>.</summary>
    public static void BroadcastsTo(string op, string name, Shape shape, Shape target)
    {
        if (!shape.IsBroadcastableTo(target))
        {
            throw new ArgumentException($"{op}: cannot broadcast {shape} ({name}) to the output shape {target}.", name);
        }
    }

    /// <summary>Throws unless every position offset + Σ i_d·stride_d over <paramref name="shape"/> lies inside the storage.</summary>
    public static void StridedWithin(string op, string name, IStorage storage, long offset, ReadOnlySpan<long> strides, Shape shape)
    {
        if (strides.Length != shape.Rank)
        {
            throw new ArgumentException($"{op}: {name} has {strides.Length} strides for shape {shape}.", name);
        }
        if (shape.Numel == 0)
        {
            return;
        }
        long lo = offset, hi = offset;
        var dims = shape.Dims;
        for (int d = 0; d < dims.Length; d++)
        {
            long span = (dims[d] - 1) * strides[d];
            if (span < 0)
            {
                lo += span;
            }
            else
            {
                hi += span;
            }
        }
        if (lo < 0 || hi >= storage.Length)
        {
            throw new ArgumentException($"{op}: {name} positions [{lo}, {hi}] for shape {shape}, offset {offset} and strides [{string.Join(", ", strides.ToArray())}] fall outside its {storage.Length} elements.", name);
        }
    }

    /// <summary>Throws unless batch matrices of <paramref name="size"/> elements at multiples of <paramref name="stride"/> fit.</summary>
    public static void MatricesWithin(string name, IStorage storage, int batch, long stride, long size)
    {
        if (batch == 0 || size == 0)
        {
            return;
        }
        if (stride < 0 || (batch - 1) * stride + size > storage.Length)
        {
            throw new ArgumentException($"Gemm: {name} needs {batch} matrices of {size} elements at stride {stride}, but its storage holds {storage.Length}.", name);
        }
    }
}
