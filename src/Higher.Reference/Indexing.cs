using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Higher.Reference;

/// <summary>gather, scatter_add, index_select and index_add along the middle axis of [outer, size, inner].</summary>
internal static class Indexing
{
    /// <summary>Below this many indexed elements a gather or scatter stays on the calling thread.</summary>
    private const long ParallelElements = 1 << 15;

    /// <summary>y[o, j, i] = x[o, index[o, j, i], i]; slices o in parallel where large (each written by one iteration).</summary>
    public static unsafe void Gather<T>(Parallelism threads, ReadOnlySpan<T> x, int outer, int xSize, int inner, ReadOnlySpan<long> index, int indexSize, Span<T> y)
        where T : unmanaged
    {
        CheckLengths(x.Length, outer, xSize, inner, index.Length, indexSize, y.Length);
        fixed (T* px = x, py = y)
        fixed (long* pi = index)
        {
            bool ok = true;
            if (threads.Enabled && outer > 1 && (long)outer * indexSize * inner >= ParallelElements)
            {
                ok = GatherParallel(threads, px, outer, xSize, inner, pi, indexSize, py);
            }
            else
            {
                for (int o = 0; o < outer && ok; o++)
                {
                    ok = GatherSlice(px, o, xSize, inner, pi, indexSize, py);
                }
            }
            if (!ok)
            {
                throw new ArgumentOutOfRangeException(nameof(index), $"Gather: an index lies outside [0, {xSize}).");
            }
        }
    }

    // The parallel loops are methods of their own: a lambda in Gather or ScatterAdd would capture its locals, and C#
    // allocates that closure on entry to the method, on the serial path too (a small gather in a loss, per call).
    private static unsafe bool GatherParallel<T>(Parallelism threads, T* x, int outer, int xSize, int inner, long* index, int indexSize, T* y)
        where T : unmanaged
    {
        nint ax = (nint)x, ay = (nint)y, ai = (nint)index;
        int bad = 0;
        threads.For(0, outer, o =>
        {
            if (!GatherSlice((T*)ax, o, xSize, inner, (long*)ai, indexSize, (T*)ay))
            {
                Volatile.Write(ref bad, 1);
            }
        });
        return bad == 0;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe bool GatherSlice<T>(T* x, int o, int xSize, int inner, long* index, int indexSize, T* y)
        where T : unmanaged
    {
        T* xs = x + ((long)o * xSize * inner);
        long row0 = (long)o * indexSize * inner;
        long* ix = index + row0;
        T* ys = y + row0;
        long count = (long)indexSize * inner;
        if (inner == 1)
        {
            for (long k = 0; k < count; k++)
            {
                long at = ix[k];
                if ((ulong)at >= (ulong)xSize)
                {
                    return false;
                }
                ys[k] = xs[at];
            }
            return true;
        }
        for (int j = 0; j < indexSize; j++)
        {
            long row = (long)j * inner;
            for (int i = 0; i < inner; i++)
            {
                long at = ix[row + i];
                if ((ulong)at >= (ulong)xSize)
                {
                    return false;
                }
                ys[row + i] = xs[(at * inner) + i];
            }
        }
        return true;
    }

    /// <summary>
    /// destination[o, index[o, j, i], i] += source[o, j, i], j ascending for every (o, i); with
    /// <paramref name="clear"/>, each destination slice [destinationSize, inner] is zeroed first, while it is in cache.
    /// Slices o run in parallel where large, each owned by one iteration, so the sums do not depend on the thread count.
    /// </summary>
    public static unsafe void ScatterAdd<T>(Parallelism threads, Span<T> destination, int outer, int destinationSize, int inner, ReadOnlySpan<long> index, int indexSize,
        ReadOnlySpan<T> source, bool clear)
        where T : unmanaged, INumber<T>
    {
        CheckLengths(destination.Length, outer, destinationSize, inner, index.Length, indexSize, source.Length);
        fixed (T* pd = destination, ps = source)
        fixed (long* pi = index)
        {
            bool ok = true;
            if (threads.Enabled && outer > 1 && (long)outer * Math.Max(indexSize, destinationSize) * inner >= ParallelElements)
            {
                ok = ScatterParallel(threads, pd, outer, destinationSize, inner, pi, indexSize, ps, clear);
            }
            else
            {
                for (int o = 0; o < outer && ok; o++)
                {
                    ok = ScatterSlice(pd, o, destinationSize, inner, pi, indexSize, ps, clear);
                }
            }
            if (!ok)
            {
                throw new ArgumentOutOfRangeException(nameof(index), $"ScatterAdd: an index lies outside [0, {destinationSize}).");
            }
        }
    }

    private static unsafe bool ScatterParallel<T>(Parallelism threads, T* destination, int outer, int destinationSize, int inner, long* index, int indexSize, T* source,
        bool clear)
        where T : unmanaged, INumber<T>
    {
        nint ad = (nint)destination, asrc = (nint)source, ai = (nint)index;
        int bad = 0;
        threads.For(0, outer, o =>
        {
            if (!ScatterSlice((T*)ad, o, destinationSize, inner, (long*)ai, indexSize, (T*)asrc, clear))
            {
                Volatile.Write(ref bad, 1);
            }
        });
        return bad == 0;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe bool ScatterSlice<T>(T* destination, int o, int destinationSize, int inner, long* index, int indexSize, T* source, bool clear)
        where T : unmanaged, INumber<T>
    {
        T* ds = destination + ((long)o * destinationSize * inner);
        if (clear)
        {
            new Span<T>(ds, checked(destinationSize * inner)).Clear();
        }
        long row0 = (long)o * indexSize * inner;
        long* ix = index + row0;
        T* src = source + row0;
        if (inner == 1)
        {
            for (int k = 0; k < indexSize; k++)
            {
                long at = ix[k];
                if ((ulong)at >= (ulong)destinationSize)
                {
                    return false;
                }
                ds[at] += src[k];
            }
            return true;
        }
        for (int j = 0; j < indexSize; j++)
        {
            long row = (long)j * inner;
            for (int i = 0; i < inner; i++)
            {
                long at = ix[row + i];
                if ((ulong)at >= (ulong)destinationSize)
                {
                    return false;
                }
                ds[(at * inner) + i] += src[row + i];
            }
        }
        return true;
    }

    /// <summary>Throws unless the spans hold [outer, size, inner] and two [outer, indexSize, inner] arrays.</summary>
    private static void CheckLengths(int dataLength, int outer, int size, int inner, int indexLength, int indexSize, int otherLength)
    {
        long data = (long)outer * size * inner, indexed = (long)outer * indexSize * inner;
        if (outer < 0 || size < 0 || inner < 0 || indexSize < 0 || data > dataLength || indexed > indexLength || indexed > otherLength)
        {
            throw new ArgumentException(
                $"gather/scatter: [outer {outer}, size {size}, inner {inner}] with {indexSize} indices per slice does not fit storages of {dataLength}, {indexLength} and {otherLength} elements.");
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
