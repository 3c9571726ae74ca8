using System.Buffers;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Higher.Reference;

/// <summary>
/// Sum/max/min over an axis set. Adjacent axes with the same reduce flag are merged (size-1 axes
/// dropped), so one reduced group becomes [outer, R, inner]; several groups take a general
/// odometer path. Sums accumulate in double (also for float32 input) in a fixed order: pairwise
/// over 256-element vector blocks along a contiguous axis, two-level blocked (64 rows) across rows.
/// Split points never depend on the thread count, so neither do results.
/// </summary>
internal static class Reducers
{
    private const int PairwiseBase = 256;
    private const int RowBlock = 64;
    private const long ParallelThreshold = 1 << 18;
    private const int ColumnChunk = 256;

    public static void Reduce<T>(Parallelism threads, ReduceOp op, ReadOnlySpan<T> x, Shape xShape, ReadOnlySpan<bool> reduceAxes, Span<T> y)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var dims = xShape.Dims;
        long keptNumel = 1;
        for (int d = 0; d < dims.Length; d++)
        {
            if (!reduceAxes[d])
            {
                keptNumel *= dims[d];
            }
        }
        Span<T> output = y[..(int)keptNumel];
        if (xShape.Numel == 0)
        {
            output.Fill(Identity<T>(op));
            return;
        }

        // Coalesce into alternating groups of kept / reduced axes.
        Span<long> sizes = stackalloc long[dims.Length + 1];
        Span<bool> flags = stackalloc bool[dims.Length + 1];
        int groups = 0;
        for (int d = 0; d < dims.Length; d++)
        {
            if (dims[d] == 1)
            {
                continue;
            }
            if (groups > 0 && flags[groups - 1] == reduceAxes[d])
            {
                sizes[groups - 1] *= dims[d];
            }
            else
            {
                sizes[groups] = dims[d];
                flags[groups] = reduceAxes[d];
                groups++;
            }
        }
        int reducedGroups = 0;
        int reducedAt = -1;
        for (int g = 0; g < groups; g++)
        {
            if (flags[g])
            {
                reducedGroups++;
                reducedAt = g;
            }
        }
        if (reducedGroups == 0)
        {
            x[..(int)keptNumel].CopyTo(output);
            return;
        }
        if (reducedGroups == 1)
        {
            long outer = 1, inner = 1;
            for (int g = 0; g < reducedAt; g++)
            {
                outer *= sizes[g];
            }
            for (int g = reducedAt + 1; g < groups; g++)
            {
                inner *= sizes[g];
            }
            ReduceOuterRInner(threads, op, x, (int)outer, (int)sizes[reducedAt], (int)inner, output);
            return;
        }
        ReduceGeneral(threads, op, x, sizes[..groups], flags[..groups], output);
    }

    public static T Identity<T>(ReduceOp op) where T : IFloatingPointIeee754<T> => op switch
    {
        ReduceOp.Sum => T.Zero,
        ReduceOp.Max => T.NegativeInfinity,
        _ => T.PositiveInfinity,
    };

    // The parallel paths are methods of their own: lambdas in ReduceOuterRInner would capture its
    // parameters, and C# allocates that closure on entry to the method, on the serial path too (every
    // small reduction of the small-op path).
    private static unsafe void ReduceRowsParallel<T>(Parallelism threads, ReduceOp op, nint xp, int outer, int r, int inner, nint yp)
        where T : unmanaged, IFloatingPointIeee754<T> =>
        // Each output row is owned by one iteration: the split cannot change any sum.
        threads.For(0, outer, o => ReduceRow(op, (T*)xp + (long)o * r * inner, r, inner, inner, (T*)yp + (long)o * inner));

    private static unsafe void ReduceColumnsParallel<T>(Parallelism threads, ReduceOp op, nint xp, int outer, int r, int inner, nint yp)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        // Few rows but wide: split the kept columns instead, again one owner per output.
        int chunks = (inner + ColumnChunk - 1) / ColumnChunk;
        threads.For(0, outer * chunks, t =>
        {
            int o = t / chunks, c0 = t % chunks * ColumnChunk;
            int width = Math.Min(ColumnChunk, inner - c0);
            ReduceRow(op, (T*)xp + (long)o * r * inner + c0, r, width, inner, (T*)yp + (long)o * inner + c0);
        });
    }

    private static unsafe void ReduceOuterRInner<T>(Parallelism threads, ReduceOp op, ReadOnlySpan<T> x, int outer, int r, int inner, Span<T> y)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        long total = (long)outer * r * inner;
        bool parallel = total >= ParallelThreshold && outer >= 2 && threads.Enabled;
        // Pinned: parallel workers address the buffers through raw pointers.
        fixed (T* px = x)
        fixed (T* py = y)
        {
            nint xp = (nint)px, yp = (nint)py;
            if (inner == 1 && outer == 1)
            {
                *py = op == ReduceOp.Sum ? T.CreateTruncating(PairwiseSum(ref *px, r, total >= ParallelThreshold && threads.Enabled ? threads : null)) : Extreme(op, ref *px, r);
                return;
            }
            if (parallel)
            {
                ReduceRowsParallel<T>(threads, op, xp, outer, r, inner, yp);
            }
            else if (outer < threads.MaxDegree && inner >= 2 * ColumnChunk && total >= ParallelThreshold && threads.Enabled)
            {
                ReduceColumnsParallel<T>(threads, op, xp, outer, r, inner, yp);
            }
            else
            {
                for (int o = 0; o < outer; o++)
                {
                    ReduceRow(op, (T*)xp + (long)o * r * inner, r, inner, inner, (T*)yp + (long)o * inner);
                }
            }
        }
    }

    /// <summary>y[i] = op over s of x[s·rowStride + i], for i &lt; inner.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void ReduceRow<T>(ReduceOp op, T* x, int r, int inner, long rowStride, T* y)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (inner == 1)
        {
            if (rowStride == 1)
            {
                *y = op == ReduceOp.Sum ? T.CreateTruncating(PairwiseSum(ref *x, r, null)) : Extreme(op, ref *x, r);
                return;
            }
        }
        var yspan = new Span<T>(y, inner);
        if (op != ReduceOp.Sum)
        {
            new ReadOnlySpan<T>(x, inner).CopyTo(yspan);
            for (int s = 1; s < r; s++)
            {
                if (op == ReduceOp.Max)
                {
                    ExtremeInto(ref *y, ref *(x + s * rowStride), inner, max: true);
                }
                else
                {
                    ExtremeInto(ref *y, ref *(x + s * rowStride), inner, max: false);
                }
            }
            return;
        }
        SumColumns(x, r, rowStride, y, inner);
    }

    /// <summary>
    /// y[i] = Σ_s x[s·rowStride + i] for i &lt; inner in double, blocked by <see cref="RowBlock"/> rows:
    /// per column, tot = 0; for each block, blk = 0, blk += x over its rows in order, tot += blk; y = (T)tot.
    /// The accumulators of 32 columns (4 × 8 double lanes), then of 8, live in registers, then single
    /// columns; the operations per column are <see cref="SumRows{T}"/>'s, so the bits are too.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void SumColumns<T>(T* x, int r, long rowStride, T* y, int inner)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i + 32 <= inner; i += 32)
            {
                Vector512<double> t0 = default, t1 = default, t2 = default, t3 = default;
                for (int s0 = 0; s0 < r; s0 += RowBlock)
                {
                    int s1 = Math.Min(r, s0 + RowBlock);
                    Vector512<double> b0 = default, b1 = default, b2 = default, b3 = default;
                    for (int s = s0; s < s1; s++)
                    {
                        T* row = x + s * rowStride + i;
                        b0 += Widened(row);
                        b1 += Widened(row + 8);
                        b2 += Widened(row + 16);
                        b3 += Widened(row + 24);
                    }
                    t0 += b0;
                    t1 += b1;
                    t2 += b2;
                    t3 += b3;
                }
                StoreNarrowed(y + i, t0);
                StoreNarrowed(y + i + 8, t1);
                StoreNarrowed(y + i + 16, t2);
                StoreNarrowed(y + i + 24, t3);
            }
            for (; i + 8 <= inner; i += 8)
            {
                Vector512<double> t0 = default;
                for (int s0 = 0; s0 < r; s0 += RowBlock)
                {
                    int s1 = Math.Min(r, s0 + RowBlock);
                    Vector512<double> b0 = default;
                    for (int s = s0; s < s1; s++)
                    {
                        b0 += Widened(x + s * rowStride + i);
                    }
                    t0 += b0;
                }
                StoreNarrowed(y + i, t0);
            }
        }
        for (; i < inner; i++)
        {
            double tot = 0;
            for (int s0 = 0; s0 < r; s0 += RowBlock)
            {
                int s1 = Math.Min(r, s0 + RowBlock);
                double blk = 0;
                for (int s = s0; s < s1; s++)
                {
                    blk += double.CreateTruncating(x[s * rowStride + i]);
                }
                tot += blk;
            }
            y[i] = T.CreateTruncating(tot);
        }
    }

    /// <summary>8 elements as double (exact for float).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector512<double> Widened<T>(T* p) where T : unmanaged =>
        typeof(T) == typeof(float)
            ? Avx512F.ConvertToVector512Double(Vector256.Load((float*)p))
            : Vector512.Load((double*)p);

    /// <summary>Stores 8 doubles as T (float rounds to nearest, as a scalar conversion does).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void StoreNarrowed<T>(T* p, Vector512<double> v) where T : unmanaged
    {
        if (typeof(T) == typeof(float))
        {
            Avx512F.ConvertToVector256Single(v).Store((float*)p);
        }
        else
        {
            v.Store((double*)p);
        }
    }

    /// <summary>
    /// y[i] = Σ_s x[s·rowStride + i] in double, blocked by <see cref="RowBlock"/> rows, with caller-provided accumulators of y's length:
    /// the two-buffer form that <see cref="SumColumns{T}"/> replaced, kept as the oracle its tests compare with bit for bit.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void SumRows<T>(T* x, int r, long rowStride, T* y, Span<double> tot, Span<double> blk)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int inner = tot.Length;
        tot.Clear();
        for (int s0 = 0; s0 < r; s0 += RowBlock)
        {
            blk.Clear();
            int s1 = Math.Min(r, s0 + RowBlock);
            for (int s = s0; s < s1; s++)
            {
                AccumulateInto(blk, ref *(x + s * rowStride));
            }
            AccumulateInto(tot, ref MemoryMarshal.GetReference(blk));
        }
        for (int i = 0; i < inner; i++)
        {
            y[i] = T.CreateTruncating(tot[i]);
        }
    }

    /// <summary>acc[i] += (double)x[i], vectorized (float lanes widen to double).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AccumulateInto<T>(Span<double> acc, ref T x) where T : unmanaged
    {
        int n = acc.Length;
        ref double a = ref MemoryMarshal.GetReference(acc);
        int i = 0;
        if (typeof(T) == typeof(double))
        {
            ref double xd = ref Unsafe.As<T, double>(ref x);
            if (Vector512.IsHardwareAccelerated)
            {
                for (; i <= n - 8; i += 8)
                {
                    (Vector512.LoadUnsafe(ref a, (nuint)i) + Vector512.LoadUnsafe(ref xd, (nuint)i)).StoreUnsafe(ref a, (nuint)i);
                }
            }
            for (; i < n; i++)
            {
                Unsafe.Add(ref a, i) += Unsafe.Add(ref xd, i);
            }
        }
        else
        {
            ref float xf = ref Unsafe.As<T, float>(ref x);
            if (Vector512.IsHardwareAccelerated)
            {
                for (; i <= n - 16; i += 16)
                {
                    var (lo, hi) = Vector512.Widen(Vector512.LoadUnsafe(ref xf, (nuint)i));
                    (Vector512.LoadUnsafe(ref a, (nuint)i) + lo).StoreUnsafe(ref a, (nuint)i);
                    (Vector512.LoadUnsafe(ref a, (nuint)(i + 8)) + hi).StoreUnsafe(ref a, (nuint)(i + 8));
                }
            }
            for (; i < n; i++)
            {
                Unsafe.Add(ref a, i) += Unsafe.Add(ref xf, i);
            }
        }
    }

    /// <summary>
    /// Pairwise sum in double; halves split at multiples of the base block, so the tree depends on n only.
    /// With a non-null <paramref name="parallel"/> the caller guarantees <paramref name="x"/> is pinned.
    /// </summary>
    public static double PairwiseSum<T>(ref T x, int n, Parallelism? parallel) where T : unmanaged
    {
        if (n <= PairwiseBase)
        {
            return BlockSum(ref x, n);
        }
        int half = (n / 2 + PairwiseBase - 1) / PairwiseBase * PairwiseBase;
        if (parallel is not null && n >= ParallelThreshold)
        {
            double left = 0, right = 0;
            unsafe
            {
                T* p = (T*)Unsafe.AsPointer(ref x);
                nint addr = (nint)p;
                parallel.Invoke(
                    () => left = PairwiseSum(ref Unsafe.AsRef<T>((T*)addr), half, parallel),
                    () => right = PairwiseSum(ref Unsafe.AsRef<T>((T*)addr + half), n - half, parallel));
            }
            return left + right;
        }
        return PairwiseSum(ref x, half, null) + PairwiseSum(ref Unsafe.Add(ref x, half), n - half, null);
    }

    /// <summary>Whether <see cref="PairwiseSum4"/> can run (its tails use AVX-512 masked loads).</summary>
    internal static bool HasSum4 => Vector512.IsHardwareAccelerated && Avx512F.IsSupported;

    /// <summary>
    /// <see cref="PairwiseSum"/> of four rows of n elements each (at r[0..3]) into sums[0..3], each with that method's
    /// bits: the same split tree (it depends on n only) and, per block, the same lanes and order (<see cref="BlockSum4"/>),
    /// the four rows in lock step so that their dependency chains overlap. Needs AVX-512 (<see cref="HasSum4"/>).
    /// </summary>
    internal static unsafe void PairwiseSum4<T>(T* r0, T* r1, T* r2, T* r3, int n, double* sums) where T : unmanaged
    {
        if (n <= PairwiseBase)
        {
            BlockSum4(r0, r1, r2, r3, n, sums);
            return;
        }
        int half = (n / 2 + PairwiseBase - 1) / PairwiseBase * PairwiseBase;
        double* left = stackalloc double[4];
        double* right = stackalloc double[4];
        PairwiseSum4(r0, r1, r2, r3, half, left);
        PairwiseSum4(r0 + half, r1 + half, r2 + half, r3 + half, n - half, right);
        for (int i = 0; i < 4; i++)
        {
            sums[i] = left[i] + right[i];
        }
    }

    /// <summary>
    /// <see cref="BlockSum"/> of four rows: per row, 16 double lanes accumulate the elements at their index mod 16 in
    /// ascending order (the tail past the last full 16 selected into its lanes, so a lane it does not reach keeps its
    /// value exactly), then the lanes are added in index order to a double from zero.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void BlockSum4<T>(T* r0, T* r1, T* r2, T* r3, int n, double* sums) where T : unmanaged
    {
        Vector512<double> a0 = default, b0 = default, a1 = default, b1 = default, a2 = default, b2 = default, a3 = default, b3 = default;
        int i = 0;
        for (; i <= n - 16; i += 16)
        {
            Add16(r0 + i, ref a0, ref b0);
            Add16(r1 + i, ref a1, ref b1);
            Add16(r2 + i, ref a2, ref b2);
            Add16(r3 + i, ref a3, ref b3);
        }
        int rest = n - i;
        if (rest > 0)
        {
            var ids = Vector512<long>.Indices;
            var lowMask = Vector512.LessThan(ids, Vector512.Create((long)rest)).AsDouble();
            var highMask = Vector512.LessThan(ids, Vector512.Create((long)rest - 8)).AsDouble();
            AddTail(r0 + i, rest, lowMask, highMask, ref a0, ref b0);
            AddTail(r1 + i, rest, lowMask, highMask, ref a1, ref b1);
            AddTail(r2 + i, rest, lowMask, highMask, ref a2, ref b2);
            AddTail(r3 + i, rest, lowMask, highMask, ref a3, ref b3);
        }
        double* lanes = stackalloc double[64];
        a0.Store(lanes);
        b0.Store(lanes + 8);
        a1.Store(lanes + 16);
        b1.Store(lanes + 24);
        a2.Store(lanes + 32);
        b2.Store(lanes + 40);
        a3.Store(lanes + 48);
        b3.Store(lanes + 56);
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (int l = 0; l < 16; l++)
        {
            s0 += lanes[l];
            s1 += lanes[16 + l];
            s2 += lanes[32 + l];
            s3 += lanes[48 + l];
        }
        sums[0] = s0;
        sums[1] = s1;
        sums[2] = s2;
        sums[3] = s3;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Add16<T>(T* p, ref Vector512<double> lo, ref Vector512<double> hi) where T : unmanaged
    {
        if (typeof(T) == typeof(float))
        {
            var (l, h) = Vector512.Widen(Vector512.Load((float*)p));
            lo += l;
            hi += h;
        }
        else
        {
            lo += Vector512.Load((double*)p);
            hi += Vector512.Load((double*)p + 8);
        }
    }

    /// <summary>The rest &lt; 16 elements at p added into lanes [0, rest) (lanes past it unchanged, as BlockSum's scalar tail leaves them); masked loads read nothing past the row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void AddTail<T>(T* p, int rest, Vector512<double> lowMask, Vector512<double> highMask, ref Vector512<double> lo, ref Vector512<double> hi)
        where T : unmanaged
    {
        Vector512<double> l, h;
        if (typeof(T) == typeof(float))
        {
            (l, h) = Vector512.Widen(Gemm.MaskedLoad((float*)p, ConvGemm.LaneMask<float>(0, rest)));
        }
        else
        {
            l = Gemm.MaskedLoad((double*)p, ConvGemm.LaneMask<double>(0, rest));
            h = Gemm.MaskedLoad((double*)p + 8, ConvGemm.LaneMask<double>(0, rest - 8));
        }
        lo = Vector512.ConditionalSelect(lowMask, lo + l, lo);
        hi = Vector512.ConditionalSelect(highMask, hi + h, hi);
    }

    /// <summary>BlockSum's vector part: lane l (of 16) adds p[l], p[l + 16], … in order; returns the elements consumed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe int BlockLanes<T, TL>(T* p, int n, double* lanes)
        where T : unmanaged
        where TL : struct, ILanes8<TL>
    {
        TL a = default, b = default;
        int i = 0;
        for (; i <= n - 16; i += 16)
        {
            TL.Load16(p + i, out var lo, out var hi);
            a += lo;
            b += hi;
        }
        TL.Store(a, lanes);
        TL.Store(b, lanes + 8);
        return i;
    }

    /// <summary>Sum of at most <see cref="PairwiseBase"/> elements: 16 double lanes, then lanes added in index order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe double BlockSum<T>(ref T x, int n) where T : unmanaged
    {
        Span<double> lanes = stackalloc double[16];
        lanes.Clear();
        int i = 0;
        if (n >= 16 && (Lanes512.Accelerated || Lanes256.Accelerated))
        {
            fixed (T* p = &x)
            fixed (double* l = lanes)
            {
                i = Lanes512.Accelerated ? BlockLanes<T, Lanes512>(p, n, l) : BlockLanes<T, Lanes256>(p, n, l);
            }
        }
        for (; i < n; i++)
        {
            lanes[i & 15] += typeof(T) == typeof(float) ? Unsafe.As<T, float>(ref Unsafe.Add(ref x, i)) : Unsafe.As<T, double>(ref Unsafe.Add(ref x, i));
        }
        double s = 0;
        for (int l = 0; l < 16; l++)
        {
            s += lanes[l];
        }
        return s;
    }

    private static T Extreme<T>(ReduceOp op, ref T x, int n) where T : unmanaged, IFloatingPointIeee754<T>
    {
        return op == ReduceOp.Max ? Extreme<T, MaxSelector<T>>(ref x, n) : Extreme<T, MinSelector<T>>(ref x, n);
    }

    /// <summary>Max or min of n elements: four vector accumulators (the NaN-propagating max is a multi-instruction sequence), then lanes in order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static T Extreme<T, TSelect>(ref T x, int n)
        where T : unmanaged, IFloatingPointIeee754<T>
        where TSelect : struct, ISelector<T>
    {
        T best = TSelect.Identity;
        int i = 0;
        int w = Vector512<T>.Count;
        if (Vector512.IsHardwareAccelerated && n >= w)
        {
            var a0 = Vector512.Create(best);
            var a1 = a0;
            var a2 = a0;
            var a3 = a0;
            for (; i <= n - 4 * w; i += 4 * w)
            {
                a0 = TSelect.Pick(a0, Vector512.LoadUnsafe(ref x, (nuint)i));
                a1 = TSelect.Pick(a1, Vector512.LoadUnsafe(ref x, (nuint)(i + w)));
                a2 = TSelect.Pick(a2, Vector512.LoadUnsafe(ref x, (nuint)(i + 2 * w)));
                a3 = TSelect.Pick(a3, Vector512.LoadUnsafe(ref x, (nuint)(i + 3 * w)));
            }
            for (; i <= n - w; i += w)
            {
                a0 = TSelect.Pick(a0, Vector512.LoadUnsafe(ref x, (nuint)i));
            }
            var acc = TSelect.Pick(TSelect.Pick(a0, a1), TSelect.Pick(a2, a3));
            for (int l = 0; l < w; l++)
            {
                best = TSelect.Pick(best, acc[l]);
            }
        }
        for (; i < n; i++)
        {
            best = TSelect.Pick(best, Unsafe.Add(ref x, i));
        }
        return best;
    }

    private interface ISelector<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        static abstract T Identity { get; }

        static abstract T Pick(T a, T b);

        static abstract Vector512<T> Pick(Vector512<T> a, Vector512<T> b);
    }

    private readonly struct MaxSelector<T> : ISelector<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public static T Identity => T.NegativeInfinity;

        public static T Pick(T a, T b) => T.Max(a, b);

        public static Vector512<T> Pick(Vector512<T> a, Vector512<T> b) => Vector512.Max(a, b);
    }

    private readonly struct MinSelector<T> : ISelector<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public static T Identity => T.PositiveInfinity;

        public static T Pick(T a, T b) => T.Min(a, b);

        public static Vector512<T> Pick(Vector512<T> a, Vector512<T> b) => Vector512.Min(a, b);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ExtremeInto<T>(ref T acc, ref T x, int n, bool max) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i <= n - Vector512<T>.Count; i += Vector512<T>.Count)
            {
                var a = Vector512.LoadUnsafe(ref acc, (nuint)i);
                var v = Vector512.LoadUnsafe(ref x, (nuint)i);
                (max ? Vector512.Max(a, v) : Vector512.Min(a, v)).StoreUnsafe(ref acc, (nuint)i);
            }
        }
        for (; i < n; i++)
        {
            ref T a = ref Unsafe.Add(ref acc, i);
            a = max ? T.Max(a, Unsafe.Add(ref x, i)) : T.Min(a, Unsafe.Add(ref x, i));
        }
    }

    /// <summary>
    /// Several reduced groups (the groups alternate kept / reduced). When the innermost group is
    /// reduced, each contiguous row of it is reduced first (pairwise, vectorized) into a partial, and
    /// the partials are then reduced over the remaining groups; with the innermost group kept, every
    /// output row accumulates the input rows of its reduced positions in row-major order (vectorized
    /// along the kept row). Each output, and each partial, has one owner and a fixed order, so the
    /// thread count never changes a bit.
    /// </summary>
    private static unsafe void ReduceGeneral<T>(Parallelism threads, ReduceOp op, ReadOnlySpan<T> x, ReadOnlySpan<long> sizes, ReadOnlySpan<bool> flags, Span<T> y)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int g = sizes.Length;
        long total = 1;
        for (int d = 0; d < g; d++)
        {
            total *= sizes[d];
        }
        bool parallel = total >= ParallelThreshold && threads.Enabled;
        fixed (T* px = x)
        fixed (T* py = y)
        {
            if (!flags[g - 1])
            {
                ReduceKeptLast(parallel ? threads : null, op, px, sizes, flags, py);
                return;
            }
            int length = (int)sizes[g - 1];
            long rows = total / length;
            if (op == ReduceOp.Sum)
            {
                double[] partialArray = ArrayPool<double>.Shared.Rent(checked((int)rows));
                try
                {
                    fixed (double* partial = partialArray)
                    {
                        nint xp = (nint)px, pp = (nint)partial;
                        RowsInChunks(parallel ? threads : null, rows, (r0, r1) => RowSums((T*)xp, length, r0, r1, (double*)pp));
                        ReduceKeptLast(null, op, partial, sizes[..(g - 1)], flags[..(g - 1)], py);
                    }
                }
                finally
                {
                    ArrayPool<double>.Shared.Return(partialArray);
                }
                return;
            }
            T[] extremeArray = ArrayPool<T>.Shared.Rent(checked((int)rows));
            try
            {
                fixed (T* partial = extremeArray)
                {
                    nint xp = (nint)px, pp = (nint)partial;
                    RowsInChunks(parallel ? threads : null, rows, (r0, r1) =>
                    {
                        for (long r = r0; r < r1; r++)
                        {
                            ((T*)pp)[r] = Extreme(op, ref *((T*)xp + r * length), length);
                        }
                    });
                    ReduceKeptLast(null, op, partial, sizes[..(g - 1)], flags[..(g - 1)], py);
                }
            }
            finally
            {
                ArrayPool<T>.Shared.Return(extremeArray);
            }
        }
    }

    /// <summary>partial[r] = <see cref="PairwiseSum"/> of row r (length elements) for r in [r0, r1), four rows at a time where <see cref="HasSum4"/>.</summary>
    private static unsafe void RowSums<T>(T* x, int length, long r0, long r1, double* partial) where T : unmanaged
    {
        long r = r0;
        if (HasSum4)
        {
            for (; r + 4 <= r1; r += 4)
            {
                T* row = x + r * length;
                PairwiseSum4(row, row + length, row + 2L * length, row + 3L * length, length, partial + r);
            }
        }
        for (; r < r1; r++)
        {
            partial[r] = PairwiseSum(ref *(x + r * length), length, null);
        }
    }

    /// <summary>Runs body over [0, rows) in chunks whose bounds depend on rows only; in parallel when <paramref name="threads"/> is given.</summary>
    private static void RowsInChunks(Parallelism? threads, long rows, Action<long, long> body)
    {
        const int Chunks = 64;
        if (threads is null || rows < 2)
        {
            body(0, rows);
            return;
        }
        int chunks = (int)Math.Min(Chunks, rows);
        threads.For(0, chunks, c => body(rows * c / chunks, rows * (c + 1) / chunks));
    }

    /// <summary>
    /// Groups whose innermost one is kept (length K), with at least one reduced group before it:
    /// output row p (the p-th position of the kept groups before K, in row-major order) is the
    /// reduction over the reduced positions, in row-major order, of the K-long input rows at them.
    /// Sums accumulate in double; <typeparamref name="TIn"/> is T or (for partial sums) double, and
    /// for max/min it is T.
    /// </summary>
    private static unsafe void ReduceKeptLast<TIn, T>(Parallelism? threads, ReduceOp op, TIn* x, ReadOnlySpan<long> sizes, ReadOnlySpan<bool> flags, T* y)
        where TIn : unmanaged
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int g = sizes.Length;
        int width = (int)sizes[g - 1];
        // Strides of the groups before K, split into kept (outputs) and reduced (terms).
        var keptSizes = new List<long>(g);
        var keptStrides = new List<long>(g);
        var redSizes = new List<long>(g);
        var redStrides = new List<long>(g);
        long stride = width;
        for (int d = g - 2; d >= 0; d--)
        {
            (flags[d] ? redSizes : keptSizes).Insert(0, sizes[d]);
            (flags[d] ? redStrides : keptStrides).Insert(0, stride);
            stride *= sizes[d];
        }
        long outRows = 1, terms = 1;
        foreach (long size in keptSizes)
        {
            outRows *= size;
        }
        foreach (long size in redSizes)
        {
            terms *= size;
        }
        long[] ks = [.. keptSizes], kst = [.. keptStrides], rs = [.. redSizes], rst = [.. redStrides];
        nint xp = (nint)x, yp = (nint)y;
        RowsInChunks(threads, outRows, (p0, p1) =>
        {
            double[]? accArray = op == ReduceOp.Sum ? ArrayPool<double>.Shared.Rent(width) : null;
            Span<long> index = stackalloc long[Math.Max(rs.Length, 1)];
            try
            {
                for (long p = p0; p < p1; p++)
                {
                    // The kept positions of output row p, as an input offset.
                    long baseOffset = 0, rest = p;
                    for (int d = ks.Length - 1; d >= 0; d--)
                    {
                        baseOffset += rest % ks[d] * kst[d];
                        rest /= ks[d];
                    }
                    T* dst = (T*)yp + p * width;
                    index.Clear();
                    long offset = baseOffset;
                    if (accArray is not null)
                    {
                        var acc = accArray.AsSpan(0, width);
                        acc.Clear();
                        for (long t = 0; t < terms; t++)
                        {
                            AccumulateInto(acc, ref *((TIn*)xp + offset));
                            offset = Next(index, rs, rst, offset);
                        }
                        for (int i = 0; i < width; i++)
                        {
                            dst[i] = T.CreateTruncating(acc[i]);
                        }
                        continue;
                    }
                    T* src = (T*)xp;
                    new ReadOnlySpan<T>(src + offset, width).CopyTo(new Span<T>(dst, width));
                    for (long t = 1; t < terms; t++)
                    {
                        offset = Next(index, rs, rst, offset);
                        ExtremeInto(ref *dst, ref *(src + offset), width, op == ReduceOp.Max);
                    }
                }
            }
            finally
            {
                if (accArray is not null)
                {
                    ArrayPool<double>.Shared.Return(accArray);
                }
            }
        });
    }

    /// <summary>Advances a row-major odometer over the reduced groups and returns the new input offset.</summary>
    private static long Next(Span<long> index, long[] sizes, long[] strides, long offset)
    {
        for (int d = sizes.Length - 1; d >= 0; d--)
        {
            offset += strides[d];
            if (++index[d] < sizes[d])
            {
                return offset;
            }
            offset -= strides[d] * sizes[d];
            index[d] = 0;
        }
        return offset;
    }

    /// <summary>Max/min along the middle axis of [outer, size, inner] with the index of the first extreme; NaN is the extreme.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ArgReduce<T>(ReduceOp op, ReadOnlySpan<T> x, int outer, int size, int inner, Span<T> values, Span<long> indices)
        where T : unmanaged, INumber<T>
    {
        bool max = op == ReduceOp.Max;
        for (int o = 0; o < outer; o++)
        {
            var row = x.Slice(o * size * inner, size * inner);
            var vals = values.Slice(o * inner, inner);
            var idx = indices.Slice(o * inner, inner);
            row[..inner].CopyTo(vals);
            idx.Clear();
            for (int s = 1; s < size; s++)
            {
                var slice = row.Slice(s * inner, inner);
                for (int i = 0; i < inner; i++)
                {
                    T v = slice[i];
                    T best = vals[i];
                    bool better = max ? v > best : v < best;
                    if (better || (T.IsNaN(v) && !T.IsNaN(best)))
                    {
                        vals[i] = v;
                        idx[i] = s;
                    }
                }
            }
        }
    }
}
