namespace Higher.Cuda;

/// <summary>
/// Several strided operands over one index space, simplified for the kernels: size-1 dimensions
/// are dropped and neighbours that are contiguous in every operand are merged, so a same-shape
/// operation becomes rank 1 (the kernels' fast path). Kernels take at most
/// <see cref="MaxKernelRank"/> dimensions; a layout of higher rank is cut into slices over its
/// leading dimensions, one launch per slice.
/// </summary>
internal sealed class StridedLayout
{
    /// <summary>Most dimensions a kernel takes (HK_MAX_DIMS in kernels.cu).</summary>
    public const int MaxKernelRank = 8;

    private StridedLayout(long[] shape, long[][] strides, long count)
    {
        Shape = shape;
        Strides = strides;
        Count = count;
    }

    /// <summary>Dimensions after simplification.</summary>
    public long[] Shape { get; }

    /// <summary>Per operand, its element stride along each dimension of <see cref="Shape"/>.</summary>
    public long[][] Strides { get; }

    /// <summary>Number of elements in the index space.</summary>
    public long Count { get; }

    /// <summary>Rank after simplification.</summary>
    public int Rank => Shape.Length;

    /// <summary>Simplifies <paramref name="shape"/> with one stride array per operand (each as long as the shape).</summary>
    public static StridedLayout Create(ReadOnlySpan<long> shape, params ReadOnlySpan<long[]> strides)
    {
        long count = 1;
        foreach (long d in shape)
        {
            count *= d;
        }
        int operands = strides.Length;
        var outShape = new List<long>(shape.Length);
        var outStrides = new List<long>[operands];
        for (int k = 0; k < operands; k++)
        {
            outStrides[k] = new List<long>(shape.Length);
        }
        if (count != 0)
        {
            for (int d = 0; d < shape.Length; d++)
            {
                if (shape[d] == 1)
                {
                    continue;
                }
                int last = outShape.Count - 1;
                bool merge = last >= 0;
                for (int k = 0; k < operands && merge; k++)
                {
                    merge = outStrides[k][last] == strides[k][d] * shape[d];
                }
                if (merge)
                {
                    outShape[last] *= shape[d];
                    for (int k = 0; k < operands; k++)
                    {
                        outStrides[k][last] = strides[k][d];
                    }
                }
                else
                {
                    outShape.Add(shape[d]);
                    for (int k = 0; k < operands; k++)
                    {
                        outStrides[k].Add(strides[k][d]);
                    }
                }
            }
        }
        var strideArrays = new long[operands][];
        for (int k = 0; k < operands; k++)
        {
            strideArrays[k] = [.. outStrides[k]];
        }
        return new StridedLayout([.. outShape], strideArrays, count);
    }

    /// <summary>Row-major strides of <paramref name="shape"/>.</summary>
    public static long[] ContiguousStrides(ReadOnlySpan<long> shape)
    {
        var strides = new long[shape.Length];
        long s = 1;
        for (int i = shape.Length - 1; i >= 0; i--)
        {
            strides[i] = s;
            s *= shape[i];
        }
        return strides;
    }

    /// <summary>Strides of a contiguous <paramref name="operand"/> broadcast to <paramref name="target"/> (0 along broadcast dimensions).</summary>
    public static long[] BroadcastStrides(Shape operand, Shape target)
    {
        var od = operand.Dims;
        var own = ContiguousStrides(ToLongs(od));
        var strides = new long[target.Rank];
        int offset = target.Rank - od.Length;
        for (int i = 0; i < od.Length; i++)
        {
            strides[offset + i] = od[i] == 1 && target.Dims[offset + i] != 1 ? 0 : own[i];
        }
        return strides;
    }

    /// <summary>Dimensions as longs.</summary>
    public static long[] ToLongs(ReadOnlySpan<int> dims)
    {
        var result = new long[dims.Length];
        for (int i = 0; i < dims.Length; i++)
        {
            result[i] = dims[i];
        }
        return result;
    }

    /// <summary>The trailing dimensions a kernel launch covers.</summary>
    public long[] KernelShape => Rank <= MaxKernelRank ? Shape : Shape[(Rank - MaxKernelRank)..];

    /// <summary>Operand <paramref name="k"/>'s strides over <see cref="KernelShape"/>.</summary>
    public long[] KernelStrides(int k) => Rank <= MaxKernelRank ? Strides[k] : Strides[k][(Rank - MaxKernelRank)..];

    /// <summary>
    /// Per launch, each operand's element offset: one launch (all zeros) when the rank fits a kernel,
    /// else one per index of the leading <c>Rank - MaxKernelRank</c> dimensions, in row-major order.
    /// </summary>
    public IEnumerable<long[]> SliceOffsets()
    {
        int operands = Strides.Length;
        int leading = Math.Max(0, Rank - MaxKernelRank);
        var index = new long[leading];
        while (true)
        {
            var offsets = new long[operands];
            for (int k = 0; k < operands; k++)
            {
                for (int d = 0; d < leading; d++)
                {
                    offsets[k] += index[d] * Strides[k][d];
                }
            }
            yield return offsets;
            int carry = leading - 1;
            while (carry >= 0 && ++index[carry] == Shape[carry])
            {
                index[carry] = 0;
                carry--;
            }
            if (carry < 0)
            {
                yield break;
            }
        }
    }
}
