using System.Numerics;
using System.Runtime.Intrinsics;

namespace Higher.Reference;

/// <summary>
/// Training batch normalization over x viewed as [N, C, S] (see <see cref="NormGeometry"/>): the
/// forward (statistics and normalized output), its input gradient and its weight gradient. Each
/// channel is one serial unit of work, so channels run in parallel with results independent of the
/// thread count. A channel sum is in double over sixteen lanes that run across the channel's rows (n, c)
/// in ascending n, sixteen elements a step, each row's last partial step padded with elements that add
/// exactly zero (<see cref="Step16{T, TL}"/>), and the lanes are combined once, in a fixed order, at the
/// end; the elementwise row loops end with a masked step too. No per-row horizontal sum and no scalar
/// tail: on the conv net's 11x11 and 3x3 maps those cost more than the arithmetic (the 3x3 layer's
/// forward 0.081-0.086 → 0.018-0.023 ms, bench/RESULTS.md, sessions 14 and 15). The loops are written
/// once over <see cref="ILanes8{TL}"/> and <see cref="IVec{TV, T}"/> and run with AVX-512 or AVX2 (the
/// same bits with either; scalar, in another order, where neither is present), and every per-channel
/// loop is AggressiveOptimization: tier-0 code would run a fresh process's first calls several times slower.
/// </summary>
internal static unsafe class BatchNormKernels
{
    /// <summary>Below this many elements a call stays on the calling thread.</summary>
    private const long ParallelElements = 1 << 15;

    private static void ForChannels(Parallelism threads, in NormGeometry g, Action<int> body)
    {
        if (threads.Enabled && g.Channels > 1 && g.Length >= ParallelElements)
        {
            threads.For(0, g.Channels, body);
            return;
        }
        for (int c = 0; c < g.Channels; c++)
        {
            body(c);
        }
    }

    /// <summary>Elements per step of the double-accumulating loops: two sets of eight double lanes (<see cref="ILanes8{TL}.Load16{T}(T*, out TL, out TL)"/>).</summary>
    private const int Step = 16;

    /// <summary>Whether the double-accumulating loops take 512-bit vectors (else 256-bit, where present).</summary>
    private static bool Wide => Lanes512.Accelerated;

    /// <summary>
    /// Prefetches the <see cref="Step"/> elements at p into L1 (one line of float, two of double). The channel loops
    /// pass their sums the offset of the next image's row of the channel (0: none), a new stream C·S elements away (173 KB on the conv net's first layer)
    /// that the hardware prefetcher would start cold, one line ahead per line they read. The first layer's shapes with
    /// their inputs out of cache, nine alternating calls each: the backward with its sums 0.67-1.09 → 0.64-0.83 ms,
    /// the forward 0.41-0.59 → 0.38-0.49 ms.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void Prefetch<T>(T* p)
        where T : unmanaged
    {
        if (System.Runtime.Intrinsics.X86.Sse.IsSupported)
        {
            System.Runtime.Intrinsics.X86.Sse.Prefetch0(p);
            if (sizeof(T) == 8)
            {
                System.Runtime.Intrinsics.X86.Sse.Prefetch0((byte*)p + 64);
            }
        }
    }

    /// <summary>
    /// The Step elements of a row from i on, in double: straight from the row while a whole step remains, else the
    /// row's last s - i elements followed by <paramref name="pad"/>, chosen by the caller so that what the step adds to
    /// every lane for the missing elements is exactly zero (masked loads: nothing past the row is read).
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void Step16<T, TL>(T* p, int i, int s, T pad, out TL lo, out TL hi)
        where T : unmanaged
        where TL : struct, ILanes8<TL>
    {
        if (i + Step <= s)
        {
            TL.Load16(p + i, out lo, out hi);
        }
        else
        {
            TL.Load16(p + i, s - i, pad, out lo, out hi);
        }
    }

    /// <summary>Σ x over channel c in double (see the class summary for the order).</summary>
    private static double Sum<T>(in NormGeometry g, int c, T* x)
        where T : unmanaged, IFloatingPointIeee754<T> =>
        Wide ? Sum<T, Lanes512>(g, c, x) : Sum<T, Lanes256>(g, c, x);

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static double Sum<T, TL>(in NormGeometry g, int c, T* x)
        where T : unmanaged, IFloatingPointIeee754<T>
        where TL : struct, ILanes8<TL>
    {
        int s = g.Spatial;
        long stride = (long)g.Channels * s;
        T* first = x + ((long)c * s);
        if (!TL.Accelerated)
        {
            double total = 0;
            for (int n = 0; n < g.Batch; n++)
            {
                for (int i = 0; i < s; i++)
                {
                    total += double.CreateTruncating(first[(n * stride) + i]);
                }
            }
            return total;
        }
        TL a = default, b = default;
        for (int n = 0; n < g.Batch; n++)
        {
            T* p = first + (n * stride);
            for (int i = 0; i < s; i += Step)
            {
                Step16<T, TL>(p, i, s, T.Zero, out var lo, out var hi);
                a += lo;
                b += hi;
            }
        }
        return TL.Sum(a + b);
    }

    /// <summary>(Σ (x - k), Σ (x - k)²) over channel c in double, k a value of T, each in <see cref="Sum{T}(in NormGeometry, int, T*)"/>'s order.</summary>
    private static (double D, double D2) ShiftedSums<T>(in NormGeometry g, int c, T* x, double k)
        where T : unmanaged, IFloatingPointIeee754<T> =>
        Wide ? ShiftedSums<T, Lanes512>(g, c, x, k) : ShiftedSums<T, Lanes256>(g, c, x, k);

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static (double D, double D2) ShiftedSums<T, TL>(in NormGeometry g, int c, T* x, double k)
        where T : unmanaged, IFloatingPointIeee754<T>
        where TL : struct, ILanes8<TL>
    {
        int s = g.Spatial;
        long stride = (long)g.Channels * s;
        T* first = x + ((long)c * s);
        if (!TL.Accelerated)
        {
            double d1 = 0, d2 = 0;
            for (int n = 0; n < g.Batch; n++)
            {
                for (int i = 0; i < s; i++)
                {
                    double d = double.CreateTruncating(first[(n * stride) + i]) - k;
                    d1 += d;
                    d2 += d * d;
                }
            }
            return (d1, d2);
        }
        // Padded with k itself: k - k is exactly zero.
        T kT = T.CreateTruncating(k);
        var vk = TL.Create(k);
        TL a = default, b = default, aa = default, bb = default;
        for (int n = 0; n < g.Batch; n++)
        {
            T* p = first + (n * stride);
            long next = n + 1 < g.Batch ? stride : 0;
            for (int i = 0; i < s; i += Step)
            {
                if (next != 0)
                {
                    Prefetch(p + next + i);
                }
                Step16<T, TL>(p, i, s, kT, out var lo, out var hi);
                lo -= vk;
                hi -= vk;
                a += lo;
                b += hi;
                aa += lo * lo;
                bb += hi * hi;
            }
        }
        return (TL.Sum(a + b), TL.Sum(aa + bb));
    }

    /// <summary>(Σ gy, Σ gy·(x - μ)) over channel c in double, μ a value of T, in <see cref="Sum{T}(in NormGeometry, int, T*)"/>'s order.</summary>
    private static (double SumG, double SumGD) Moments<T>(in NormGeometry g, int c, T* gy, T* x, double mu)
        where T : unmanaged, IFloatingPointIeee754<T> =>
        Wide ? Moments<T, Lanes512>(g, c, gy, x, mu) : Moments<T, Lanes256>(g, c, gy, x, mu);

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static (double SumG, double SumGD) Moments<T, TL>(in NormGeometry g, int c, T* gy, T* x, double mu)
        where T : unmanaged, IFloatingPointIeee754<T>
        where TL : struct, ILanes8<TL>
    {
        int s = g.Spatial;
        long stride = (long)g.Channels * s;
        long at0 = (long)c * s;
        if (!TL.Accelerated)
        {
            double sg = 0, sgd = 0;
            for (int n = 0; n < g.Batch; n++)
            {
                for (int i = 0; i < s; i++)
                {
                    long at = at0 + (n * stride) + i;
                    double gv = double.CreateTruncating(gy[at]);
                    sg += gv;
                    sgd += gv * (double.CreateTruncating(x[at]) - mu);
                }
            }
            return (sg, sgd);
        }
        // gy padded with zeros and x with μ: the missing elements add 0 and 0·0.
        T muT = T.CreateTruncating(mu);
        var vm = TL.Create(mu);
        TL ga = default, gb = default, da = default, db = default;
        for (int n = 0; n < g.Batch; n++)
        {
            T* pg = gy + at0 + (n * stride), px = x + at0 + (n * stride);
            long next = n + 1 < g.Batch ? stride : 0;
            for (int i = 0; i < s; i += Step)
            {
                if (next != 0)
                {
                    Prefetch(pg + next + i);
                    Prefetch(px + next + i);
                }
                Step16<T, TL>(pg, i, s, T.Zero, out var glo, out var ghi);
                Step16<T, TL>(px, i, s, muT, out var xlo, out var xhi);
                ga += glo;
                gb += ghi;
                da += glo * (xlo - vm);
                db += ghi * (xhi - vm);
            }
        }
        return (TL.Sum(ga + gb), TL.Sum(da + db));
    }

    public static void Forward<T>(Parallelism threads, NormGeometry g, T* x, T* w, T* b, T* y, T* mean, T* variance)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        nint px = (nint)x, pw = (nint)w, pb = (nint)b, py = (nint)y, pm = (nint)mean, pr = (nint)variance;
        ForChannels(threads, g, c => ForwardChannel(g, c, (T*)px, (T*)pw, (T*)pb, (T*)py, (T*)pm, (T*)pr));
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static void ForwardChannel<T>(in NormGeometry g, int c, T* x, T* w, T* b, T* y, T* mean, T* variance)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int s = g.Spatial;
        long stride = (long)g.Channels * s;
        double count = g.PerChannel;
        T muT, varT;
        double mu;
        if (typeof(T) == typeof(float))
        {
            // float32: one pass for both statistics, sums of d = x - k and d² in double around k, the
            // channel's first value (so d is of the order of the spread, not of the mean, and the
            // difference of the two sums loses nothing a float can hold). One read of x fewer.
            double k = double.CreateTruncating(x[(long)c * s]);
            var (s1, s2) = ShiftedSums(g, c, x, k);
            double meanShift = s1 / count;
            // μ and σ² are rounded to T first, and everything after reads the rounded values, as the
            // gradient kernels (which see only the stored ones) do. σ² is the mean squared deviation from
            // the rounded μ, as the two passes give it: about the exact mean, plus (mean - μ)².
            muT = T.CreateTruncating(k + meanShift);
            mu = double.CreateTruncating(muT);
            double off = k + meanShift - mu;
            varT = T.CreateTruncating(Math.Max(0, (s2 / count) - (meanShift * meanShift)) + (off * off));
        }
        else
        {
            // float64: two passes (the sum, then the squared deviations from the rounded mean), exact to the last bits.
            muT = T.CreateTruncating(Sum(g, c, x) / count);
            mu = double.CreateTruncating(muT);
            varT = T.CreateTruncating(ShiftedSums(g, c, x, mu).D2 / count);
        }
        double r = InverseStd(varT, g.Eps);
        mean[c] = muT;
        variance[c] = varT;
        // y = x·scale + shift with scale = r·w and shift = b - μ·scale, rounded once each to T.
        var (scale, shift) = ForwardCoefficients<T>(r, double.CreateTruncating(w[c]), double.CreateTruncating(b[c]), mu);
        for (int n = 0; n < g.Batch; n++)
        {
            long at = (n * stride) + ((long)c * s);
            Affine(x + at, y + at, s, scale, shift);
        }
    }

    /// <summary>The forward's y = x·scale + shift: scale = r·w and shift = b - μ·scale, each rounded once to T.</summary>
    private static (T Scale, T Shift) ForwardCoefficients<T>(double r, double w, double b, double mu)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        double scaleD = r * w;
        return (T.CreateTruncating(scaleD), T.CreateTruncating(b - (mu * scaleD)));
    }

    /// <summary>1/√(σ² + eps) in double from the stored (rounded) variance.</summary>
    private static double InverseStd<T>(T variance, double eps)
        where T : unmanaged, IFloatingPointIeee754<T> => 1 / Math.Sqrt(double.CreateTruncating(variance) + eps);

    /// <summary>The vector of p[i, i + Count), or of the row's last n - i elements and zeros by a masked load.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static TV Ld<T, TV>(T* p, int i, int n)
        where T : unmanaged
        where TV : struct, IVec<TV, T> =>
        i + TV.Count <= n ? TV.Load(p + i) : TV.Load(p + i, n - i);

    /// <summary>Stores v to p[i, i + Count), or its first n - i lanes by a masked store at the row's end.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void St<T, TV>(TV v, T* p, int i, int n)
        where T : unmanaged
        where TV : struct, IVec<TV, T>
    {
        if (i + TV.Count <= n)
        {
            TV.Store(v, p + i);
        }
        else
        {
            TV.Store(v, p + i, n - i);
        }
    }

    /// <summary>dst[i] = src[i]·scale + shift (one multiply and one add, each rounded: vector width does not change bits).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static void Affine<T>(T* src, T* dst, int n, T scale, T shift)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (Vec512<T>.Accelerated)
        {
            Affine<T, Vec512<T>>(src, dst, n, scale, shift);
        }
        else
        {
            Affine<T, Vec256<T>>(src, dst, n, scale, shift);
        }
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static void Affine<T, TV>(T* src, T* dst, int n, T scale, T shift)
        where T : unmanaged, IFloatingPointIeee754<T>
        where TV : struct, IVec<TV, T>
    {
        int i = 0;
        if (TV.Accelerated)
        {
            var vs = TV.Create(scale);
            var vb = TV.Create(shift);
            for (; i < n; i += TV.Count)
            {
                St((Ld<T, TV>(src, i, n) * vs) + vb, dst, i, n);
            }
            return;
        }
        for (; i < n; i++)
        {
            dst[i] = (src[i] * scale) + shift;
        }
    }

    public static void InputGrad<T>(Parallelism threads, NormGeometry g, T* gy, T* x, T* mean, T* variance, T* w, T* gx)
        where T : unmanaged, IFloatingPointIeee754<T> => Backward(threads, g, gy, x, mean, variance, w, gx, null, null);

    /// <summary>
    /// The input gradient and, where the pointers are not null, the weight gradient (<see cref="WeightGrad"/>'s bits)
    /// and w·x̂ as the forward rounds it (x·T(r·w) + T(-μ·r·w)), from one pass for the channel sums they share and one
    /// that writes: see <see cref="IBackend.BatchNormBackward"/>. An accumulated output is destination + value; xwBias
    /// (where not null) is added to w·x̂ once that is rounded, before any accumulation.
    /// </summary>
    public static void Backward<T>(Parallelism threads, NormGeometry g, T* gy, T* x, T* mean, T* variance, T* w, T* gx, T* gw, T* xw,
        NormAccumulate accumulate = NormAccumulate.None, T* gySums = null, T* gxSums = null, T* xwBias = null)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        nint pg = (nint)gy, px = (nint)x, pm = (nint)mean, pr = (nint)variance, pw = (nint)w, pgx = (nint)gx, pgw = (nint)gw, pxw = (nint)xw;
        nint pys = (nint)gySums, pxs = (nint)gxSums, pxb = (nint)xwBias;
        bool accX = (accumulate & NormAccumulate.GradX) != 0, accN = (accumulate & NormAccumulate.Second) != 0;
        ForChannels(threads, g, c => BackwardChannel(g, c, (T*)pg, (T*)px, (T*)pm, (T*)pr, (T*)pw, (T*)pgx, (T*)pgw, (T*)pxw, accX, accN, (T*)pys, (T*)pxs,
            (T*)pxb));
    }

    /// <summary>
    /// Whether <see cref="Backward"/>'s channel sums have <see cref="Reducers"/>' bits for this geometry: with N, C and S
    /// all above 1, a sum over axes 0 and 2 of [N, C, S] sums each row (n, c) pairwise (<see cref="Reducers.PairwiseSum"/>)
    /// and adds the rows' sums in ascending n to a double from zero, which the kernel repeats; a size-1 axis makes
    /// Reduce merge groups and sum in another order.
    /// </summary>
    public static bool SumsLikeReduce(in NormGeometry g) => g.Batch > 1 && g.Channels > 1 && g.Spatial > 1;

    /// <summary>
    /// The coefficients of gx = A(gy, x, w) = gy·k - x·q + shift from channel c's sums Σ gy and Σ gy·(x - μ):
    /// gx = w·r·(gy - ḡ - x̂·m), x̂ = (x - μ)·r, m = mean(gy·x̂) = r·Σ gy·(x - μ)/count, so
    /// gx = gy·k - (x - μ)·q - k·ḡ with k = w·r and q = w·r³·Σ gy·(x - μ)/count.
    /// </summary>
    private static (T K, T Q, T Shift) InputGradCoefficients<T>(double wc, double r, double mu, double sumG, double sumGD, double count)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        double k = wc * r;
        double q = k * r * r * sumGD / count;
        return (T.CreateTruncating(k), T.CreateTruncating(q), T.CreateTruncating((q * mu) - (k * sumG / count)));
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static void BackwardChannel<T>(in NormGeometry g, int c, T* gy, T* x, T* mean, T* variance, T* w, T* gx, T* gw, T* xw, bool accX, bool accN,
        T* gySums, T* gxSums, T* xwBias)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int s = g.Spatial;
        long stride = (long)g.Channels * s;
        double count = g.PerChannel;
        double mu = double.CreateTruncating(mean[c]), r = InverseStd(variance[c], g.Eps), wc = double.CreateTruncating(w[c]);
        var (sumG, sumGD) = Moments(g, c, gy, x, mu);
        var (tk, tq, shift) = InputGradCoefficients<T>(wc, r, mu, sumG, sumGD, count);
        if (gw != null)
        {
            gw[c] = T.CreateTruncating(sumGD * r);
        }
        // w·x̂ as the forward's y with a zero bias, then the channel's bias added where there is one.
        var (scale, scaleShift) = ForwardCoefficients<T>(r, wc, 0, mu);
        bool biased = xwBias != null;
        T bias = biased ? xwBias[c] : T.Zero;
        for (int n = 0; n < g.Batch; n++)
        {
            long at = (n * stride) + ((long)c * s);
            if (Vec512<T>.Accelerated)
            {
                InputGradRow<T, Vec512<T>>(gy + at, x + at, gx + at, s, tk, tq, shift, accX, xw == null ? null : xw + at, scale, scaleShift, accN, biased, bias);
            }
            else
            {
                InputGradRow<T, Vec256<T>>(gy + at, x + at, gx + at, s, tk, tq, shift, accX, xw == null ? null : xw + at, scale, scaleShift, accN, biased, bias);
            }
        }
        // The rows' sums as Reduce forms them (see SumsLikeReduce), while the channel is in cache.
        if (gySums != null)
        {
            gySums[c] = T.CreateTruncating(RowSumsInOrder(g, c, gy));
        }
        if (gxSums != null)
        {
            gxSums[c] = T.CreateTruncating(RowSumsInOrder(g, c, gx));
        }
    }

    /// <summary>
    /// One row of <see cref="BackwardChannel"/>: po[i] (+)= pg[i]·tk - px[i]·tq + shift and, where pxw is not null,
    /// pxw[i] (+)= px[i]·scale + scaleShift (+ bias, rounded after, where <paramref name="biased"/>).
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static void InputGradRow<T, TV>(T* pg, T* px, T* po, int s, T tk, T tq, T shift, bool accX, T* pxw, T scale, T scaleShift, bool accN,
        bool biased, T bias)
        where T : unmanaged, IFloatingPointIeee754<T>
        where TV : struct, IVec<TV, T>
    {
        int i = 0;
        if (TV.Accelerated)
        {
            var vk = TV.Create(tk);
            var vq = TV.Create(tq);
            var vs = TV.Create(shift);
            if (pxw == null)
            {
                for (; i < s; i += TV.Count)
                {
                    var v = (Ld<T, TV>(pg, i, s) * vk) - (Ld<T, TV>(px, i, s) * vq) + vs;
                    St(accX ? Ld<T, TV>(po, i, s) + v : v, po, i, s);
                }
            }
            else
            {
                var va = TV.Create(scale);
                var vb = TV.Create(scaleShift);
                var vc = TV.Create(bias);
                for (; i < s; i += TV.Count)
                {
                    var vx = Ld<T, TV>(px, i, s);
                    var v = (Ld<T, TV>(pg, i, s) * vk) - (vx * vq) + vs;
                    var u = (vx * va) + vb;
                    if (biased)
                    {
                        u += vc;
                    }
                    St(accX ? Ld<T, TV>(po, i, s) + v : v, po, i, s);
                    St(accN ? Ld<T, TV>(pxw, i, s) + u : u, pxw, i, s);
                }
            }
            return;
        }
        for (; i < s; i++)
        {
            T v = (pg[i] * tk) - (px[i] * tq) + shift;
            po[i] = accX ? po[i] + v : v;
            if (pxw != null)
            {
                T u = (px[i] * scale) + scaleShift;
                if (biased)
                {
                    u += bias;
                }
                pxw[i] = accN ? pxw[i] + u : u;
            }
        }
    }

    /// <summary>Σ over n ascending of <see cref="Reducers.PairwiseSum"/> of row (n, c), added to a double from zero: Reduce's channel sum (see <see cref="SumsLikeReduce"/>).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static double RowSumsInOrder<T>(in NormGeometry g, int c, T* t)
        where T : unmanaged
    {
        int s = g.Spatial;
        long stride = (long)g.Channels * s;
        T* first = t + (long)c * s;
        double total = 0;
        int n = 0;
        if (Reducers.HasSum4)
        {
            double* four = stackalloc double[4];
            for (; n + 4 <= g.Batch; n += 4)
            {
                T* row = first + n * stride;
                Reducers.PairwiseSum4(row, row + stride, row + 2 * stride, row + 3 * stride, s, four);
                total += four[0];
                total += four[1];
                total += four[2];
                total += four[3];
            }
        }
        for (; n < g.Batch; n++)
        {
            total += Reducers.PairwiseSum(ref *(first + n * stride), s, null);
        }
        return total;
    }

    /// <summary>
    /// The five channel sums of the double backward over channel c, in double, each in
    /// <see cref="Sum{T}(in NormGeometry, int, T*)"/>'s order: (Σ g, Σ g·(x - μ)) have <see cref="Moments{T}"/>' bits for g,
    /// (Σ h, Σ h·(x - μ)) its bits for h, and Σ h·g.
    /// </summary>
    private static (double G, double H, double GD, double HD, double HG) DoubleBackwardSums<T>(in NormGeometry g, int c, T* gy, T* h, T* x, double mu)
        where T : unmanaged, IFloatingPointIeee754<T> =>
        Wide ? DoubleBackwardSums<T, Lanes512>(g, c, gy, h, x, mu) : DoubleBackwardSums<T, Lanes256>(g, c, gy, h, x, mu);

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static (double G, double H, double GD, double HD, double HG) DoubleBackwardSums<T, TL>(in NormGeometry g, int c, T* gy, T* h, T* x, double mu)
        where T : unmanaged, IFloatingPointIeee754<T>
        where TL : struct, ILanes8<TL>
    {
        int s = g.Spatial;
        long stride = (long)g.Channels * s;
        long at0 = (long)c * s;
        if (!TL.Accelerated)
        {
            double bG = 0, bH = 0, bGD = 0, bHD = 0, bHG = 0;
            for (int n = 0; n < g.Batch; n++)
            {
                for (int i = 0; i < s; i++)
                {
                    long at = at0 + (n * stride) + i;
                    double gv = double.CreateTruncating(gy[at]), hv = double.CreateTruncating(h[at]), d = double.CreateTruncating(x[at]) - mu;
                    bG += gv;
                    bH += hv;
                    bGD += gv * d;
                    bHD += hv * d;
                    bHG += hv * gv;
                }
            }
            return (bG, bH, bGD, bHD, bHG);
        }
        // gy and h padded with zeros and x with μ, as in Moments.
        T muT = T.CreateTruncating(mu);
        var vm = TL.Create(mu);
        TL g0 = default, g1 = default, h0 = default, h1 = default, gd0 = default, gd1 = default, hd0 = default, hd1 = default, hg0 = default, hg1 = default;
        for (int n = 0; n < g.Batch; n++)
        {
            T* pg = gy + at0 + (n * stride), ph = h + at0 + (n * stride), px = x + at0 + (n * stride);
            long next = n + 1 < g.Batch ? stride : 0;
            for (int i = 0; i < s; i += Step)
            {
                if (next != 0)
                {
                    Prefetch(pg + next + i);
                    Prefetch(ph + next + i);
                    Prefetch(px + next + i);
                }
                Step16<T, TL>(pg, i, s, T.Zero, out var glo, out var ghi);
                Step16<T, TL>(ph, i, s, T.Zero, out var hlo, out var hhi);
                Step16<T, TL>(px, i, s, muT, out var xlo, out var xhi);
                xlo -= vm;
                xhi -= vm;
                g0 += glo;
                g1 += ghi;
                h0 += hlo;
                h1 += hhi;
                gd0 += glo * xlo;
                gd1 += ghi * xhi;
                hd0 += hlo * xlo;
                hd1 += hhi * xhi;
                hg0 += hlo * glo;
                hg1 += hhi * ghi;
            }
        }
        return (TL.Sum(g0 + g1), TL.Sum(h0 + h1), TL.Sum(gd0 + gd1), TL.Sum(hd0 + hd1), TL.Sum(hg0 + hg1));
    }

    /// <summary>
    /// <see cref="IBackend.BatchNormInputGradBackward"/>, and where <paramref name="dgy"/> is not null also its derivative
    /// with respect to gy, A(h, x, w) with <see cref="InputGrad"/>'s bits, from the same pass of sums
    /// (<see cref="IBackend.BatchNormDoubleBackward"/>).
    /// </summary>
    public static void InputGradBackward<T>(Parallelism threads, NormGeometry g, T* gy, T* x, T* mean, T* variance, T* w, T* h, T* dx, T* dw, T* dgy = null,
        NormAccumulate accumulate = NormAccumulate.None)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        nint pg = (nint)gy, px = (nint)x, pm = (nint)mean, pr = (nint)variance, pw = (nint)w, ph = (nint)h, pdx = (nint)dx, pdw = (nint)dw, pdgy = (nint)dgy;
        bool accX = (accumulate & NormAccumulate.GradX) != 0, accG = (accumulate & NormAccumulate.Second) != 0;
        ForChannels(threads, g, c => InputGradBackwardChannel(g, c, (T*)pg, (T*)px, (T*)pm, (T*)pr, (T*)pw, (T*)ph, (T*)pdx, (T*)pdw, (T*)pdgy, accX, accG));
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static void InputGradBackwardChannel<T>(in NormGeometry g, int c, T* gy, T* x, T* mean, T* variance, T* w, T* h, T* dx, T* dw, T* dgy, bool accX, bool accG)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int s = g.Spatial;
        long stride = (long)g.Channels * s;
        double count = g.PerChannel;
        double mu = double.CreateTruncating(mean[c]), r = InverseStd(variance[c], g.Eps), wc = double.CreateTruncating(w[c]);
        var (sumG, sumH, sumGD, sumHD, sumHG) = DoubleBackwardSums(g, c, gy, h, x, mu);
        double gBar = sumG / count, hBar = sumH / count;
        double m = r * sumGD / count, a = r * sumHD / count, sv = (sumHG / count) - (hBar * gBar);
        // dx = w·r²·((x - μ)·r·(3ma - s) - a·gy + a·ḡ - m·h + m·h̄) = x·P - gy·Q - h·R + (K - P·μ).
        double k = wc * r * r;
        double p = k * r * ((3 * m * a) - sv), q = k * a, rr = k * m, kk = k * ((a * gBar) + (m * hBar));
        T tp = T.CreateTruncating(p), tq = T.CreateTruncating(q), tr = T.CreateTruncating(rr);
        T shift = T.CreateTruncating(kk - (p * mu));
        // dgy = A(h, x, w) = h·hk - x·hq + hShift.
        var (hk, hq, hShift) = InputGradCoefficients<T>(wc, r, mu, sumH, sumHD, count);
        for (int n = 0; n < g.Batch; n++)
        {
            long at = (n * stride) + ((long)c * s);
            if (Vec512<T>.Accelerated)
            {
                DoubleBackwardRow<T, Vec512<T>>(gy + at, x + at, h + at, dx + at, s, tp, tq, tr, shift, accX, dgy == null ? null : dgy + at, hk, hq, hShift, accG);
            }
            else
            {
                DoubleBackwardRow<T, Vec256<T>>(gy + at, x + at, h + at, dx + at, s, tp, tq, tr, shift, accX, dgy == null ? null : dgy + at, hk, hq, hShift, accG);
            }
        }
        dw[c] = T.CreateTruncating(count * r * (sv - (m * a)));
    }

    /// <summary>
    /// One row of <see cref="InputGradBackwardChannel"/>: po[i] (+)= px[i]·tp - pg[i]·tq - ph[i]·tr + shift and, where pd
    /// is not null, pd[i] (+)= ph[i]·hk - px[i]·hq + hShift.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static void DoubleBackwardRow<T, TV>(T* pg, T* px, T* ph, T* po, int s, T tp, T tq, T tr, T shift, bool accX, T* pd, T hk, T hq, T hShift, bool accG)
        where T : unmanaged, IFloatingPointIeee754<T>
        where TV : struct, IVec<TV, T>
    {
        int i = 0;
        if (TV.Accelerated)
        {
            var vp = TV.Create(tp);
            var vq = TV.Create(tq);
            var vr = TV.Create(tr);
            var vs = TV.Create(shift);
            if (pd == null)
            {
                for (; i < s; i += TV.Count)
                {
                    var v = (Ld<T, TV>(px, i, s) * vp) - (Ld<T, TV>(pg, i, s) * vq) - (Ld<T, TV>(ph, i, s) * vr) + vs;
                    St(accX ? Ld<T, TV>(po, i, s) + v : v, po, i, s);
                }
            }
            else
            {
                var vhk = TV.Create(hk);
                var vhq = TV.Create(hq);
                var vhs = TV.Create(hShift);
                for (; i < s; i += TV.Count)
                {
                    var vx = Ld<T, TV>(px, i, s);
                    var vh = Ld<T, TV>(ph, i, s);
                    var v = (vx * vp) - (Ld<T, TV>(pg, i, s) * vq) - (vh * vr) + vs;
                    var u = (vh * vhk) - (vx * vhq) + vhs;
                    St(accX ? Ld<T, TV>(po, i, s) + v : v, po, i, s);
                    St(accG ? Ld<T, TV>(pd, i, s) + u : u, pd, i, s);
                }
            }
            return;
        }
        for (; i < s; i++)
        {
            T v = (px[i] * tp) - (pg[i] * tq) - (ph[i] * tr) + shift;
            po[i] = accX ? po[i] + v : v;
            if (pd != null)
            {
                T u = (ph[i] * hk) - (px[i] * hq) + hShift;
                pd[i] = accG ? pd[i] + u : u;
            }
        }
    }

    public static void WeightGrad<T>(Parallelism threads, NormGeometry g, T* gy, T* x, T* mean, T* variance, T* gw)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        nint pg = (nint)gy, px = (nint)x, pm = (nint)mean, pr = (nint)variance, pgw = (nint)gw;
        ForChannels(threads, g, c =>
        {
            double mu = double.CreateTruncating(((T*)pm)[c]);
            var (_, sumGD) = Moments(g, c, (T*)pg, (T*)px, mu);
            ((T*)pgw)[c] = T.CreateTruncating(sumGD * InverseStd(((T*)pr)[c], g.Eps));
        });
    }
}
