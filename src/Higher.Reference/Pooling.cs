using System.Numerics;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Higher.Reference;

/// <summary>
/// Pooling kernels: plain loops over output elements (the adjoints gather over the windows that
/// cover each input element, in ascending window order), split across threads by whole planes,
/// so the thread count never changes a result. Window sums accumulate in double.
/// </summary>
internal static unsafe class Pooling
{
    /// <summary>Below this many window taps a call runs on one thread.</summary>
    private const long ParallelThreshold = 1 << 15;

    /// <summary>Runs body(p0, p1) over plane ranges: in parallel when the work is large enough, always split on whole planes.</summary>
    private static void ForPlanes(Parallelism threads, int planes, long workPerPlane, Action<int, int> body)
    {
        if (!threads.Enabled || planes < 2 || workPerPlane * planes < ParallelThreshold)
        {
            body(0, planes);
            return;
        }
        int chunks = Math.Min(planes, 4 * threads.MaxDegree);
        threads.For(0, chunks, c => body((int)((long)planes * c / chunks), (int)((long)planes * (c + 1) / chunks)));
    }

    /// <summary>Max pooling with flat indices, see <see cref="IBackend.MaxPool2d"/>.</summary>
    public static void MaxPool<T>(Parallelism threads, PoolGeometry g, T* x, T* y, long* indices)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        nint px = (nint)x, py = (nint)y, pi = (nint)indices;
        if (IsPlainTwoByTwo(g))
        {
            ForPlanes(threads, g.Planes, (long)g.OutHeight * g.OutWidth * 4, (p0, p1) => MaxPoolTwoByTwo(g, (T*)px, (T*)py, (long*)pi, p0, p1));
            return;
        }
        ForPlanes(threads, g.Planes, (long)g.OutHeight * g.OutWidth * g.KernelHeight * g.KernelWidth, (p0, p1) =>
        {
            T* xs = (T*)px;
            T* ys = (T*)py;
            long* ids = (long*)pi;
            int h = g.InHeight, w = g.InWidth, oh = g.OutHeight, ow = g.OutWidth;
            for (long plane = p0; plane < p1; plane++)
            {
                T* xp = xs + plane * h * w;
                long o = plane * oh * ow;
                for (int i = 0; i < oh; i++)
                {
                    int hs = i * g.StrideHeight - g.PadTop;
                    var (plo, phi) = WindowChecks.Taps(hs, h, g.KernelHeight, g.DilationHeight);
                    for (int j = 0; j < ow; j++, o++)
                    {
                        int ws = j * g.StrideWidth - g.PadLeft;
                        var (qlo, qhi) = WindowChecks.Taps(ws, w, g.KernelWidth, g.DilationWidth);
                        long best = (long)(hs + plo * g.DilationHeight) * w + ws + qlo * g.DilationWidth;
                        T max = xp[best];
                        for (int p = plo; p < phi && !T.IsNaN(max); p++)
                        {
                            long row = (long)(hs + p * g.DilationHeight) * w;
                            for (int q = qlo; q < qhi; q++)
                            {
                                long at = row + ws + q * g.DilationWidth;
                                T v = xp[at];
                                // Strictly greater keeps the first maximum; the first NaN wins and ends the scan.
                                if (v > max || T.IsNaN(v))
                                {
                                    max = v;
                                    best = at;
                                    if (T.IsNaN(v))
                                    {
                                        break;
                                    }
                                }
                            }
                        }
                        ys[o] = max;
                        ids[o] = best;
                    }
                }
            }
        });
    }

    /// <summary>2×2 windows at stride 2, no padding or dilation, every window inside the input (MaxPool2d(2) without ceil mode overhang).</summary>
    private static bool IsPlainTwoByTwo(in PoolGeometry g) =>
        g.KernelHeight == 2 && g.KernelWidth == 2 && g.StrideHeight == 2 && g.StrideWidth == 2 && g.DilationHeight == 1 && g.DilationWidth == 1
        && g.PadTop == 0 && g.PadLeft == 0 && 2L * g.OutHeight <= g.InHeight && 2L * g.OutWidth <= g.InWidth;

    /// <summary>Whether tap v replaces the running maximum: strictly greater (the first maximum stays), or the first NaN (it then stays).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static bool Takes<T>(T v, T max)
        where T : unmanaged, IFloatingPointIeee754<T> => (v > max) | (T.IsNaN(v) & !T.IsNaN(max));

    /// <summary>The general loop's scan (row by row, the first maximum, the first NaN ends it) unrolled for 2×2 windows.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static void MaxPoolTwoByTwo<T>(PoolGeometry g, T* x, T* y, long* indices, int p0, int p1)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float) && Avx512F.IsSupported && (long)g.InHeight * g.InWidth <= int.MaxValue)
        {
            MaxPoolTwoByTwo512(g, (float*)x, (float*)y, indices, p0, p1);
            return;
        }
        if (typeof(T) == typeof(float) && Avx2.IsSupported && (long)g.InHeight * g.InWidth <= int.MaxValue)
        {
            MaxPoolTwoByTwo256(g, (float*)x, (float*)y, indices, p0, p1);
            return;
        }
        int h = g.InHeight, w = g.InWidth, oh = g.OutHeight, ow = g.OutWidth;
        for (long plane = p0; plane < p1; plane++)
        {
            T* xp = x + plane * h * w;
            long o = plane * oh * ow;
            for (int i = 0; i < oh; i++)
            {
                long top = 2L * i * w;
                for (int j = 0; j < ow; j++, o++)
                {
                    // Branch-free (random data defeats the predictor): each later tap takes over when it
                    // is greater, or when it is the first NaN; the value is reloaded at the winning index.
                    long c = top + (2 * j);
                    long best = c;
                    T max = xp[c];
                    best = Takes(xp[c + 1], max) ? c + 1 : best;
                    max = xp[best];
                    best = Takes(xp[c + w], max) ? c + w : best;
                    max = xp[best];
                    best = Takes(xp[c + w + 1], max) ? c + w + 1 : best;
                    max = xp[best];
                    y[o] = max;
                    indices[o] = best;
                }
            }
        }
    }

    /// <summary>
    /// <see cref="MaxPoolTwoByTwo{T}"/> for float with AVX-512, 16 outputs of a row at a time: the two input rows' 32
    /// columns are split into even and odd columns, and the same three takeovers (greater, or the first NaN) run as
    /// lane masks; the maximum is the winning element itself, so the values are the scalar loop's bits. A row's last
    /// vector is masked (outputs 13 or 5 wide), so nothing outside the row is read or written. Indices are formed in
    /// 32 bits, hence planes under 2^31 elements.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static void MaxPoolTwoByTwo512(PoolGeometry g, float* x, float* y, long* indices, int p0, int p1)
    {
        int h = g.InHeight, w = g.InWidth, oh = g.OutHeight, ow = g.OutWidth;
        var lane = Vector512<int>.Indices;
        var even = lane * 2;
        var odd = even + Vector512<int>.One;
        for (long plane = p0; plane < p1; plane++)
        {
            float* xp = x + plane * h * w;
            long o = plane * oh * ow;
            for (int i = 0; i < oh; i++, o += ow)
            {
                int top = 2 * i * w;
                float* r0 = xp + top, r1 = r0 + w;
                for (int j = 0; j < ow; j += 16)
                {
                    int count = Math.Min(16, ow - j);
                    var lo = Vector512.LessThan(lane, Vector512.Create(2 * count)).AsSingle();
                    var hi = Vector512.LessThan(lane, Vector512.Create(2 * count - 16)).AsSingle();
                    var a0 = Avx512F.MaskLoad(r0 + 2 * j, lo, Vector512<float>.Zero);
                    var a1 = Avx512F.MaskLoad(r0 + 2 * j + 16, hi, Vector512<float>.Zero);
                    var b0 = Avx512F.MaskLoad(r1 + 2 * j, lo, Vector512<float>.Zero);
                    var b1 = Avx512F.MaskLoad(r1 + 2 * j + 16, hi, Vector512<float>.Zero);
                    // Taps in scan order: (0, 0), (0, 1), (1, 0), (1, 1), at flat offsets c, c + 1, c + w, c + w + 1.
                    var max = Avx512F.PermuteVar16x32x2(a0, even, a1);
                    var c = Vector512.Create(top + 2 * j) + even;
                    var best = c;
                    var v = Avx512F.PermuteVar16x32x2(a0, odd, a1);
                    var take = Takes(v, max);
                    max = Vector512.ConditionalSelect(take, v, max);
                    best = Vector512.ConditionalSelect(take.AsInt32(), c + Vector512<int>.One, best);
                    v = Avx512F.PermuteVar16x32x2(b0, even, b1);
                    take = Takes(v, max);
                    max = Vector512.ConditionalSelect(take, v, max);
                    best = Vector512.ConditionalSelect(take.AsInt32(), c + Vector512.Create(w), best);
                    v = Avx512F.PermuteVar16x32x2(b0, odd, b1);
                    take = Takes(v, max);
                    max = Vector512.ConditionalSelect(take, v, max);
                    best = Vector512.ConditionalSelect(take.AsInt32(), c + Vector512.Create(w + 1), best);
                    var outMask = Vector512.LessThan(lane, Vector512.Create(count));
                    Avx512F.MaskStore(y + o + j, outMask.AsSingle(), max);
                    var first = Avx512F.ConvertToVector512Int64(best.GetLower());
                    var second = Avx512F.ConvertToVector512Int64(best.GetUpper());
                    Avx512F.MaskStore(indices + o + j, Avx512F.ConvertToVector512Int64(outMask.GetLower()), first);
                    if (count > 8)
                    {
                        Avx512F.MaskStore(indices + o + j + 8, Avx512F.ConvertToVector512Int64(outMask.GetUpper()), second);
                    }
                }
            }
        }
    }

    /// <summary>
    /// <see cref="MaxPoolTwoByTwo512"/> with AVX2, 8 outputs of a row at a time: the same takeovers as lane masks, the
    /// even and odd columns of 16 inputs split by an in-lane shuffle and a cross-lane permute, masked loads and stores
    /// at a row's end.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static void MaxPoolTwoByTwo256(PoolGeometry g, float* x, float* y, long* indices, int p0, int p1)
    {
        int h = g.InHeight, w = g.InWidth, oh = g.OutHeight, ow = g.OutWidth;
        var lane = Vector256<int>.Indices;
        var even = lane * 2;
        for (long plane = p0; plane < p1; plane++)
        {
            float* xp = x + plane * h * w;
            long o = plane * oh * ow;
            for (int i = 0; i < oh; i++, o += ow)
            {
                int top = 2 * i * w;
                float* r0 = xp + top, r1 = r0 + w;
                for (int j = 0; j < ow; j += 8)
                {
                    int count = Math.Min(8, ow - j);
                    var lo = Vector256.LessThan(lane, Vector256.Create(2 * count)).AsSingle();
                    var hi = Vector256.LessThan(lane, Vector256.Create(2 * count - 8)).AsSingle();
                    var a0 = Avx.MaskLoad(r0 + 2 * j, lo);
                    var a1 = Avx.MaskLoad(r0 + 2 * j + 8, hi);
                    var b0 = Avx.MaskLoad(r1 + 2 * j, lo);
                    var b1 = Avx.MaskLoad(r1 + 2 * j + 8, hi);
                    // Taps in scan order: (0, 0), (0, 1), (1, 0), (1, 1), at flat offsets c, c + 1, c + w, c + w + 1.
                    var max = Even(a0, a1);
                    var c = Vector256.Create(top + 2 * j) + even;
                    var best = c;
                    var v = Odd(a0, a1);
                    var take = Takes(v, max);
                    max = Vector256.ConditionalSelect(take, v, max);
                    best = Vector256.ConditionalSelect(take.AsInt32(), c + Vector256<int>.One, best);
                    v = Even(b0, b1);
                    take = Takes(v, max);
                    max = Vector256.ConditionalSelect(take, v, max);
                    best = Vector256.ConditionalSelect(take.AsInt32(), c + Vector256.Create(w), best);
                    v = Odd(b0, b1);
                    take = Takes(v, max);
                    max = Vector256.ConditionalSelect(take, v, max);
                    best = Vector256.ConditionalSelect(take.AsInt32(), c + Vector256.Create(w + 1), best);
                    var outMask = Vector256.LessThan(lane, Vector256.Create(count));
                    Avx.MaskStore(y + o + j, outMask.AsSingle(), max);
                    Avx2.MaskStore(indices + o + j, Avx2.ConvertToVector256Int64(outMask.GetLower()), Avx2.ConvertToVector256Int64(best.GetLower()));
                    if (count > 4)
                    {
                        Avx2.MaskStore(indices + o + j + 4, Avx2.ConvertToVector256Int64(outMask.GetUpper()), Avx2.ConvertToVector256Int64(best.GetUpper()));
                    }
                }
            }
        }
    }

    /// <summary>Elements 0, 2, …, 14 of the 16 in (a, b).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Even(Vector256<float> a, Vector256<float> b) =>
        Avx2.Permute4x64(Avx.Shuffle(a, b, 0b10_00_10_00).AsDouble(), 0b11_01_10_00).AsSingle();

    /// <summary>Elements 1, 3, …, 15 of the 16 in (a, b).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Odd(Vector256<float> a, Vector256<float> b) =>
        Avx2.Permute4x64(Avx.Shuffle(a, b, 0b11_01_11_01).AsDouble(), 0b11_01_10_00).AsSingle();

    /// <summary>Lanes where v replaces the running maximum (see <see cref="Takes{T}(T, T)"/>).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Takes(Vector256<float> v, Vector256<float> max) =>
        Vector256.GreaterThan(v, max) | Vector256.AndNot(Vector256.Equals(max, max), Vector256.Equals(v, v));

    /// <summary>Lanes where v replaces the running maximum: strictly greater, or the first NaN (see <see cref="Takes{T}(T, T)"/>).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Takes(Vector512<float> v, Vector512<float> max) =>
        Vector512.GreaterThan(v, max) | Vector512.AndNot(Vector512.Equals(max, max), Vector512.Equals(v, v));

    /// <summary>The window sizes of average pooling: (clipped to the padded input, clipped to the input) for one axis.</summary>
    private static (int Padded, int Inside, int Lo, int Hi) AvgWindow(int start, int size, int k, int pad)
    {
        int end = Math.Min(start + k, size + pad);
        int padded = end - start;
        int lo = Math.Max(start, 0), hi = Math.Min(end, size);
        return (padded, Math.Max(0, hi - lo), lo, hi);
    }

    private static double Divisor(bool countIncludePad, int divisorOverride, int paddedH, int paddedW, int insideH, int insideW) =>
        divisorOverride > 0 ? divisorOverride : countIncludePad ? (double)paddedH * paddedW : (double)insideH * insideW;

    /// <summary>Average pooling, see <see cref="IBackend.AvgPool2d"/>.</summary>
    public static void AvgPool<T>(Parallelism threads, PoolGeometry g, bool countIncludePad, int divisorOverride, T* x, T* y)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        nint px = (nint)x, py = (nint)y;
        ForPlanes(threads, g.Planes, (long)g.OutHeight * g.OutWidth * g.KernelHeight * g.KernelWidth, (p0, p1) =>
        {
            T* xs = (T*)px;
            T* ys = (T*)py;
            int h = g.InHeight, w = g.InWidth, oh = g.OutHeight, ow = g.OutWidth;
            for (long plane = p0; plane < p1; plane++)
            {
                T* xp = xs + plane * h * w;
                long o = plane * oh * ow;
                for (int i = 0; i < oh; i++)
                {
                    var rows = AvgWindow(i * g.StrideHeight - g.PadTop, h, g.KernelHeight, g.PadTop);
                    for (int j = 0; j < ow; j++, o++)
                    {
                        var cols = AvgWindow(j * g.StrideWidth - g.PadLeft, w, g.KernelWidth, g.PadLeft);
                        if (rows.Inside == 0 || cols.Inside == 0)
                        {
                            ys[o] = T.Zero;
                            continue;
                        }
                        double sum = 0;
                        for (int r = rows.Lo; r < rows.Hi; r++)
                        {
                            T* xr = xp + (long)r * w;
                            for (int c = cols.Lo; c < cols.Hi; c++)
                            {
                                sum += double.CreateTruncating(xr[c]);
                            }
                        }
                        ys[o] = T.CreateTruncating(sum / Divisor(countIncludePad, divisorOverride, rows.Padded, cols.Padded, rows.Inside, cols.Inside));
                    }
                }
            }
        });
    }

    /// <summary>The adjoint of average pooling, gathered: see <see cref="IBackend.AvgPool2dGrad"/>.</summary>
    public static void AvgPoolGrad<T>(Parallelism threads, PoolGeometry g, bool countIncludePad, int divisorOverride, T* dy, T* dx)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        nint pdy = (nint)dy, pdx = (nint)dx;
        int kh = g.KernelHeight, kw = g.KernelWidth, sh = g.StrideHeight, sw = g.StrideWidth;
        long windowsPerInput = (long)((kh + sh - 1) / sh) * ((kw + sw - 1) / sw);
        ForPlanes(threads, g.Planes, (long)g.InHeight * g.InWidth * windowsPerInput, (p0, p1) =>
        {
            T* dys = (T*)pdy;
            T* dxs = (T*)pdx;
            int h = g.InHeight, w = g.InWidth, oh = g.OutHeight, ow = g.OutWidth;
            for (long plane = p0; plane < p1; plane++)
            {
                T* gy = dys + plane * oh * ow;
                T* gx = dxs + plane * h * w;
                for (int r = 0; r < h; r++)
                {
                    // Windows i with i·sh - padTop ≤ r < i·sh - padTop + kh.
                    int iLo = r + g.PadTop - kh + 1 <= 0 ? 0 : (r + g.PadTop - kh + 1 + sh - 1) / sh;
                    int iHi = Math.Min(oh - 1, (r + g.PadTop) / sh);
                    for (int c = 0; c < w; c++)
                    {
                        int jLo = c + g.PadLeft - kw + 1 <= 0 ? 0 : (c + g.PadLeft - kw + 1 + sw - 1) / sw;
                        int jHi = Math.Min(ow - 1, (c + g.PadLeft) / sw);
                        double sum = 0;
                        for (int i = iLo; i <= iHi; i++)
                        {
                            var rows = AvgWindow(i * sh - g.PadTop, h, kh, g.PadTop);
                            for (int j = jLo; j <= jHi; j++)
                            {
                                var cols = AvgWindow(j * sw - g.PadLeft, w, kw, g.PadLeft);
                                sum += double.CreateTruncating(gy[(long)i * ow + j]) / Divisor(countIncludePad, divisorOverride, rows.Padded, cols.Padded, rows.Inside, cols.Inside);
                            }
                        }
                        gx[(long)r * w + c] = T.CreateTruncating(sum);
                    }
                }
            }
        });
    }

    /// <summary>Adaptive average pooling, see <see cref="IBackend.AdaptiveAvgPool2d"/>.</summary>
    public static void AdaptiveAvgPool<T>(Parallelism threads, int planes, int h, int w, int oh, int ow, T* x, T* y)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        nint px = (nint)x, py = (nint)y;
        ForPlanes(threads, planes, (long)h * w, (p0, p1) =>
        {
            T* xs = (T*)px;
            T* ys = (T*)py;
            for (long plane = p0; plane < p1; plane++)
            {
                T* xp = xs + plane * h * w;
                long o = plane * oh * ow;
                for (int i = 0; i < oh; i++)
                {
                    int r0 = Start(i, h, oh), r1 = End(i, h, oh);
                    for (int j = 0; j < ow; j++, o++)
                    {
                        int c0 = Start(j, w, ow), c1 = End(j, w, ow);
                        double sum = 0;
                        for (int r = r0; r < r1; r++)
                        {
                            for (int c = c0; c < c1; c++)
                            {
                                sum += double.CreateTruncating(xp[(long)r * w + c]);
                            }
                        }
                        ys[o] = T.CreateTruncating(sum / ((double)(r1 - r0) * (c1 - c0)));
                    }
                }
            }
        });
    }

    /// <summary>The adjoint of adaptive average pooling, gathered: see <see cref="IBackend.AdaptiveAvgPool2dGrad"/>.</summary>
    public static void AdaptiveAvgPoolGrad<T>(Parallelism threads, int planes, int h, int w, int oh, int ow, T* dy, T* dx)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        nint pdy = (nint)dy, pdx = (nint)dx;
        long perInput = (long)((oh + Math.Max(h, 1) - 1) / Math.Max(h, 1) + 1) * ((ow + Math.Max(w, 1) - 1) / Math.Max(w, 1) + 1);
        ForPlanes(threads, planes, (long)h * w * perInput, (p0, p1) =>
        {
            T* dys = (T*)pdy;
            T* dxs = (T*)pdx;
            for (long plane = p0; plane < p1; plane++)
            {
                T* gy = dys + plane * oh * ow;
                T* gx = dxs + plane * h * w;
                for (int r = 0; r < h; r++)
                {
                    // Windows i with ⌊i·H/OH⌋ ≤ r < ⌈(i+1)·H/OH⌉.
                    int iLo = (int)((long)r * oh / h), iHi = (int)(((long)(r + 1) * oh - 1) / h);
                    for (int c = 0; c < w; c++)
                    {
                        int jLo = (int)((long)c * ow / w), jHi = (int)(((long)(c + 1) * ow - 1) / w);
                        double sum = 0;
                        for (int i = iLo; i <= iHi; i++)
                        {
                            double rows = End(i, h, oh) - Start(i, h, oh);
                            for (int j = jLo; j <= jHi; j++)
                            {
                                sum += double.CreateTruncating(gy[(long)i * ow + j]) / (rows * (End(j, w, ow) - Start(j, w, ow)));
                            }
                        }
                        gx[(long)r * w + c] = T.CreateTruncating(sum);
                    }
                }
            }
        });
    }

    private static int Start(int i, int size, int outSize) => (int)((long)i * size / outSize);

    private static int End(int i, int size, int outSize) => (int)(((long)(i + 1) * size + outSize - 1) / outSize);
}
