using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Higher.Reference;

/// <summary>gather, scatter_add, index_select and index_add along the middle axis of [outer, size, inner].</summary>
internal static class Indexing
{
    /// <summary>y[o, j, i] = x[o, index[o, j, i], i].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Gather<T>(ReadOnlySpan<T> x, int outer, int xSize, int inner, ReadOnlySpan<long> index, int indexSize, Span<T> y)
    {
        for (int o = 0; o < outer; o++)
        {
            var xs = x.Slice(o * xSize * inner, xSize * inner);
            int baseY = o * indexSize * inner;
            for (int j = 0; j < indexSize; j++)
            {
                int row = baseY + j * inner;
                for (int i = 0; i < inner; i++)
                {
                    y[row + i] = xs[(int)index[row + i] * inner + i];
                }
            }
        }
    }

    /// <summary>destination[o, index[o, j, i], i] += source[o, j, i], j ascending for every (o, i).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ScatterAdd<T>(Span<T> destination, int outer, int destinationSize, int inner, ReadOnlySpan<long> index, int indexSize, ReadOnlySpan<T> source)
        where T : INumber<T>
    {
        for (int o = 0; o < outer; o++)
        {
            var ds = destination.Slice(o * destinationSize * inner, destinationSize * inner);
            int baseS = o * indexSize * inner;
            for (int j = 0; j < indexSize; j++)
            {
                int row = baseS + j * inner;
                for (int i = 0; i < inner; i++)
                {
                    ds[(int)index[row + i] * inner + i] += source[row + i];
                }
            }
        }
    }

    /// <summary>y[o, j, :] = x[o, index[j], :], one span copy per row.</summary>
    public static void IndexSelect<T>(ReadOnlySpan<T> x, int outer, int xSize, int inner, ReadOnlySpan<long> index, int indexSize, Span<T> y)
    {
        for (int o = 0; o < outer; o++)
        {
            for (int j = 0; j < indexSize; j++)
            {
                x.Slice((o * xSize + (int)index[j]) * inner, inner).CopyTo(y.Slice((o * indexSize + j) * inner, inner));
            }
        }
    }

    /// <summary>destination[o, index[j], :] += source[o, j, :], j ascending (vectorized over the row).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void IndexAdd<T>(Span<T> destination, int outer, int destinationSize, int inner, ReadOnlySpan<long> index, int indexSize, ReadOnlySpan<T> source)
        where T : unmanaged, INumber<T>
    {
        var add = new Elementwise.AddOperator<T>();
        for (int o = 0; o < outer; o++)
        {
            for (int j = 0; j < indexSize; j++)
            {
                var d = destination.Slice((o * destinationSize + (int)index[j]) * inner, inner);
                var s = source.Slice((o * indexSize + j) * inner, inner);
                Elementwise.BinaryDriver.VectorVector(
                    ref MemoryMarshal.GetReference(d),
                    ref MemoryMarshal.GetReference(s),
                    ref MemoryMarshal.GetReference(d), inner, add);
            }
        }
    }
}
