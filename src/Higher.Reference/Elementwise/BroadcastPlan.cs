using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Higher.Reference.Elementwise;

/// <summary>
/// Turns NumPy broadcasting into strided iteration: every output dimension gets one element
/// stride per input (0 where the input is broadcast), size-1 output dimensions are dropped and
/// adjacent dimensions that are contiguous for every operand are merged. [m, n] + [n] thus
/// becomes a 2-D walk with inner strides (1, 1); equal shapes and scalars collapse to 1-D.
/// </summary>
internal static class BroadcastPlan
{
    /// <summary>Largest rank served from the stack; higher ranks fall back to heap buffers.</summary>
    public const int StackRank = 16;

    /// <summary>
    /// Fills <paramref name="dims"/> (capacity ≥ max(1, y.Rank)) and <paramref name="strides"/>
    /// (operand k's stride for dimension d at [k·capacity + d]) and returns the coalesced rank (≥ 1).
    /// </summary>
    public static int Build(Shape y, Span<int> dims, Span<long> strides, int capacity, params ReadOnlySpan<Shape> inputs)
    {
        var yd = y.Dims;
        int ops = inputs.Length;
        int r = 0;
        Span<long> running = stackalloc long[ops];
        running.Fill(1);
        // Walk from the innermost dimension out so each input's contiguous stride is a running product.
        Span<long> tmpStrides = strides;
        for (int d = yd.Length - 1; d >= 0; d--)
        {
            int size = yd[d];
            for (int k = 0; k < ops; k++)
            {
                var id = inputs[k].Dims;
                int kd = d - (yd.Length - id.Length);
                int inSize = kd >= 0 ? id[kd] : 1;
                long stride = inSize == 1 ? 0 : running[k];
                running[k] *= inSize;
                if (size != 1)
                {
                    tmpStrides[k * capacity + r] = stride;
                }
            }
            if (size != 1)
            {
                dims[r] = size;
                r++;
            }
        }
        // dims/strides now run inner to outer; reverse to outer-to-inner while merging.
        if (r == 0)
        {
            dims[0] = 1;
            for (int k = 0; k < ops; k++)
            {
                strides[k * capacity] = 0;
            }
            return 1;
        }
        dims[..r].Reverse();
        for (int k = 0; k < ops; k++)
        {
            strides.Slice(k * capacity, r).Reverse();
        }
        int w = 0;
        for (int d = 1; d < r; d++)
        {
            bool mergeable = true;
            for (int k = 0; k < ops; k++)
            {
                if (strides[k * capacity + w] != strides[k * capacity + d] * dims[d])
                {
                    mergeable = false;
                    break;
                }
            }
            if (mergeable)
            {
                dims[w] *= dims[d];
                for (int k = 0; k < ops; k++)
                {
                    strides[k * capacity + w] = strides[k * capacity + d];
                }
            }
            else
            {
                w++;
                dims[w] = dims[d];
                for (int k = 0; k < ops; k++)
                {
                    strides[k * capacity + w] = strides[k * capacity + d];
                }
            }
        }
        return w + 1;
    }
}

/// <summary>An inner loop over n elements of two strided inputs into a contiguous output.</summary>
internal interface IInnerKernel2<TA, TB, TY>
{
    void Run(ref TA a, nint strideA, ref TB b, nint strideB, ref TY y, int n);
}

/// <summary>An inner loop over n elements of three strided inputs into a contiguous output.</summary>
internal interface IInnerKernel3<TA, TB, TC, TY>
{
    void Run(ref TA a, nint strideA, ref TB b, nint strideB, ref TC c, nint strideC, ref TY y, int n);
}

/// <summary>Odometer walks over a <see cref="BroadcastPlan"/>, calling an inner kernel per innermost row.</summary>
internal static class BroadcastWalker
{
    public static void Walk2<TA, TB, TY, TKernel>(ReadOnlySpan<TA> a, Shape aShape, ReadOnlySpan<TB> b, Shape bShape, Span<TY> y, Shape yShape, TKernel kernel)
        where TKernel : struct, IInnerKernel2<TA, TB, TY>
    {
        if (yShape.Numel == 0)
        {
            return;
        }
        int capacity = Math.Max(1, yShape.Rank);
        Span<int> dims = capacity <= BroadcastPlan.StackRank ? stackalloc int[capacity] : new int[capacity];
        Span<long> strides = capacity <= BroadcastPlan.StackRank ? stackalloc long[2 * capacity] : new long[2 * capacity];
        int r = BroadcastPlan.Build(yShape, dims, strides, capacity, aShape, bShape);
        int n = dims[r - 1];
        nint sa = (nint)strides[r - 1], sb = (nint)strides[capacity + r - 1];
        ref TA ra = ref MemoryMarshal.GetReference(a);
        ref TB rb = ref MemoryMarshal.GetReference(b);
        ref TY ry = ref MemoryMarshal.GetReference(y);
        if (r == 1)
        {
            kernel.Run(ref ra, sa, ref rb, sb, ref ry, n);
            return;
        }
        Span<int> index = capacity <= BroadcastPlan.StackRank ? stackalloc int[capacity] : new int[capacity];
        index.Clear();
        long rows = yShape.Numel / n;
        nint oa = 0, ob = 0;
        for (long row = 0; row < rows; row++)
        {
            kernel.Run(ref Unsafe.Add(ref ra, oa), sa, ref Unsafe.Add(ref rb, ob), sb, ref Unsafe.Add(ref ry, (nint)(row * n)), n);
            for (int d = r - 2; d >= 0; d--)
            {
                oa += (nint)strides[d];
                ob += (nint)strides[capacity + d];
                if (++index[d] < dims[d])
                {
                    break;
                }
                oa -= (nint)(strides[d] * dims[d]);
                ob -= (nint)(strides[capacity + d] * dims[d]);
                index[d] = 0;
            }
        }
    }

    public static void Walk3<TA, TB, TC, TY, TKernel>(ReadOnlySpan<TA> a, Shape aShape, ReadOnlySpan<TB> b, Shape bShape, ReadOnlySpan<TC> c, Shape cShape, Span<TY> y, Shape yShape, TKernel kernel)
        where TKernel : struct, IInnerKernel3<TA, TB, TC, TY>
    {
        if (yShape.Numel == 0)
        {
            return;
        }
        int capacity = Math.Max(1, yShape.Rank);
        Span<int> dims = capacity <= BroadcastPlan.StackRank ? stackalloc int[capacity] : new int[capacity];
        Span<long> strides = capacity <= BroadcastPlan.StackRank ? stackalloc long[3 * capacity] : new long[3 * capacity];
        int r = BroadcastPlan.Build(yShape, dims, strides, capacity, aShape, bShape, cShape);
        int n = dims[r - 1];
        nint sa = (nint)strides[r - 1], sb = (nint)strides[capacity + r - 1], sc = (nint)strides[2 * capacity + r - 1];
        ref TA ra = ref MemoryMarshal.GetReference(a);
        ref TB rb = ref MemoryMarshal.GetReference(b);
        ref TC rc = ref MemoryMarshal.GetReference(c);
        ref TY ry = ref MemoryMarshal.GetReference(y);
        Span<int> index = capacity <= BroadcastPlan.StackRank ? stackalloc int[capacity] : new int[capacity];
        index.Clear();
        long rows = yShape.Numel / n;
        nint oa = 0, ob = 0, oc = 0;
        for (long row = 0; row < rows; row++)
        {
            kernel.Run(ref Unsafe.Add(ref ra, oa), sa, ref Unsafe.Add(ref rb, ob), sb, ref Unsafe.Add(ref rc, oc), sc, ref Unsafe.Add(ref ry, (nint)(row * n)), n);
            for (int d = r - 2; d >= 0; d--)
            {
                oa += (nint)strides[d];
                ob += (nint)strides[capacity + d];
                oc += (nint)strides[2 * capacity + d];
                if (++index[d] < dims[d])
                {
                    break;
                }
                oa -= (nint)(strides[d] * dims[d]);
                ob -= (nint)(strides[capacity + d] * dims[d]);
                oc -= (nint)(strides[2 * capacity + d] * dims[d]);
                index[d] = 0;
            }
        }
    }
}
