using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Higher.Reference;

/// <summary>
/// The window of one implicit-GEMM convolution: dst[n, g·M + m, i, j] = Σ over c &lt; Cg, p &lt; kh, q &lt; kw of
/// A_g[m, (c·kh + p)·kw + q] · src[n, g·Cg + c, i·sh + p·dh - padTop, j·sw + q·dw - padLeft] (0 outside src).
/// The forward convolution is this window over x with A = W; a stride-1 input gradient is it over dy with
/// A = W transposed and flipped (see <see cref="ConvGemm"/>). Padding may be negative (a crop).
/// </summary>
internal readonly record struct ConvWindow(
    int Batch, int Groups, int InPerGroup, int OutPerGroup, int InHeight, int InWidth, int OutHeight, int OutWidth,
    int KernelHeight, int KernelWidth, int StrideHeight, int StrideWidth, int PadTop, int PadLeft, int DilationHeight, int DilationWidth)
{
    public int Taps => KernelHeight * KernelWidth;

    /// <summary>The reduction length of one output element: Cg·kh·kw.</summary>
    public int Depth => InPerGroup * KernelHeight * KernelWidth;

    public int Pixels => OutHeight * OutWidth;

    public static ConvWindow Forward(in ConvGeometry g) => new(
        g.Batch, g.Groups, g.InChannels / g.Groups, g.OutChannels / g.Groups, g.InHeight, g.InWidth, g.OutHeight, g.OutWidth,
        g.KernelHeight, g.KernelWidth, g.StrideHeight, g.StrideWidth, g.PadTop, g.PadLeft, g.DilationHeight, g.DilationWidth);

    /// <summary>
    /// The input gradient of a stride-1 convolution as a convolution of dy: gradX[n, c, h, w] = Σ dy[n, o, h + padTop - p·dh,
    /// w + padLeft - q·dw]·W[o, c, p, q], which with p' = kh - 1 - p is a window over dy with padding (kh - 1)·dh - padTop.
    /// </summary>
    public static ConvWindow InputGrad(in ConvGeometry g) => new(
        g.Batch, g.Groups, g.OutChannels / g.Groups, g.InChannels / g.Groups, g.OutHeight, g.OutWidth, g.InHeight, g.InWidth,
        g.KernelHeight, g.KernelWidth, 1, 1, (g.KernelHeight - 1) * g.DilationHeight - g.PadTop, (g.KernelWidth - 1) * g.DilationWidth - g.PadLeft,
        g.DilationHeight, g.DilationWidth);
}

/// <summary>
/// Convolution as an implicit GEMM (AVX-512 only): C_g [M, N·OH·OW] = A_g [M, Cg·kh·kw] · B [Cg·kh·kw, N·OH·OW] with B,
/// the column matrix of all N images side by side, never built. Each NR-wide panel of B is packed straight
/// from src (a run of one output row per copy, masked vector loads supplying the zeros of the padding), the
/// MR×NR micro-kernel multiplies it by every MR-row panel of the packed A, and the tile is stored straight into
/// dst's [n, channel, pixel] layout. This does once what im2col + <see cref="Gemm"/> did in four passes (write the
/// column matrix, pack it, multiply, copy the side-by-side result into place), and the panels of the whole batch
/// are shared out between threads evenly instead of a few image blocks.
/// <para>
/// Every output element is one FMA chain from zero over its Cg·kh·kw terms in ascending (c, p, q) order, whichever
/// panel, tile or thread computes it, so results are the same bits for any degree of parallelism.
/// </para>
/// </summary>
internal static unsafe class ConvGemm
{
    private const int MR = 8;

    /// <summary>Deepest reduction packed in one panel: 2048·NR elements is 256 KiB of packed B, within L2. Deeper windows take the im2col path.</summary>
    public const int MaxDepth = 2048;

    // Below this many multiply-adds, forking costs more than it saves (the GEMM's threshold).
    private const long ParallelThreshold = 96L * 96 * 96;

    private static int NR<T>() where T : unmanaged => 2 * Vector512<T>.Count;

    /// <summary>Whether the implicit GEMM can run this window: AVX-512, and a depth whose packed panel fits <see cref="MaxDepth"/>.</summary>
    public static bool Supports(in ConvWindow v) =>
        Vector512.IsHardwareAccelerated && Avx512F.IsSupported && v.Depth > 0 && v.Depth <= MaxDepth && v.OutPerGroup > 0;

    /// <summary>A_g = the forward weight: W [O, Cg·kh·kw] row-major, group g's rows g·M ...</summary>
    public static void Forward<T>(Parallelism threads, in ConvGeometry g, T* x, T* w, T* y)
        where T : unmanaged
    {
        var v = ConvWindow.Forward(g);
        Run(threads, v, w, transposedFlipped: false, x, y);
    }

    /// <summary>gradX of a stride-1 convolution: the window <see cref="ConvWindow.InputGrad"/> over dy, with A_g[c, (o·kh + p')·kw + q'] = W[g·M + o, c, kh-1-p', kw-1-q'].</summary>
    public static void InputGrad<T>(Parallelism threads, in ConvGeometry g, T* dy, T* w, T* dx)
        where T : unmanaged
    {
        var v = ConvWindow.InputGrad(g);
        Run(threads, v, w, transposedFlipped: true, dy, dx);
    }

    private static void Run<T>(Parallelism threads, ConvWindow v, T* w, bool transposedFlipped, T* src, T* dst)
        where T : unmanaged
    {
        int depth = v.Depth, m = v.OutPerGroup, rowPanels = (m + MR - 1) / MR, nr = NR<T>();
        long columns = (long)v.Batch * v.Pixels;
        int panels = checked((int)((columns + nr - 1) / nr));
        int aLength = checked(v.Groups * rowPanels * MR * depth);
        T[] aArray = ArrayPool<T>.Shared.Rent(aLength);
        try
        {
            fixed (T* packedA = aArray)
            {
                for (int gi = 0; gi < v.Groups; gi++)
                {
                    PackA(v, w, gi, transposedFlipped, packedA + (long)gi * rowPanels * MR * depth);
                }
                long units = (long)v.Groups * panels;
                long work = units * nr * (long)m * depth;
                int tasks = threads.Enabled && work >= ParallelThreshold ? (int)Math.Min(units, 4L * threads.MaxDegree) : 1;
                if (tasks == 1)
                {
                    Panels(v, packedA, src, dst, 0, units);
                    return;
                }
                nint pa = (nint)packedA, ps = (nint)src, pd = (nint)dst;
                var window = v;
                threads.For(0, tasks, t => Panels(window, (T*)pa, (T*)ps, (T*)pd, units * t / tasks, units * (t + 1) / tasks));
            }
        }
        finally
        {
            ArrayPool<T>.Shared.Return(aArray);
        }
    }

    /// <summary>Packs A_g as MR-row panels, k-major (panel[k·MR + r] = A_g[panelRow + r, k]), zero rows past M.</summary>
    private static void PackA<T>(in ConvWindow v, T* w, int gi, bool transposedFlipped, T* dst)
        where T : unmanaged
    {
        int depth = v.Depth, m = v.OutPerGroup, taps = v.Taps;
        for (int r0 = 0; r0 < m; r0 += MR)
        {
            T* panel = dst + (long)r0 * depth;
            for (int r = 0; r < MR; r++)
            {
                int row = r0 + r;
                if (row >= m)
                {
                    for (int k = 0; k < depth; k++)
                    {
                        panel[(long)k * MR + r] = default;
                    }
                    continue;
                }
                if (!transposedFlipped)
                {
                    // W [O, Cg·kh·kw]: row g·M + row.
                    T* a = w + ((long)gi * m + row) * depth;
                    for (int k = 0; k < depth; k++)
                    {
                        panel[(long)k * MR + r] = a[k];
                    }
                }
                else
                {
                    // Row = input channel c of the forward, k = (o, tap'): W[g·M' + o, c, taps - 1 - tap'] with M' = v.InPerGroup
                    // forward outputs per group and the forward's weight rows taps·M apart.
                    int outs = v.InPerGroup;
                    for (int o = 0; o < outs; o++)
                    {
                        T* a = w + (((long)gi * outs + o) * m + row) * taps + taps - 1;
                        for (int t = 0; t < taps; t++)
                        {
                            panel[((long)o * taps + t) * MR + r] = a[-t];
                        }
                    }
                }
            }
        }
    }

    /// <summary>Work units [u0, u1) (unit u: group u / panels, column panel u % panels), on the calling thread with its own packed-B panel.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Panels<T>(in ConvWindow v, T* packedA, T* src, T* dst, long u0, long u1)
        where T : unmanaged
    {
        int depth = v.Depth, m = v.OutPerGroup, rowPanels = (m + MR - 1) / MR, nr = NR<T>(), taps = v.Taps, pixels = v.Pixels;
        long columns = (long)v.Batch * pixels;
        int panels = (int)((columns + nr - 1) / nr);
        long plane = (long)v.InHeight * v.InWidth, srcImage = (long)v.Groups * v.InPerGroup * plane, dstImage = (long)v.Groups * m * pixels;
        // Per panel: its runs (one output row each, at most NR), and per run and tap the source offset and valid lanes.
        int tableLength = nr * taps;
        T[] bArray = ArrayPool<T>.Shared.Rent(depth * nr + 64 / Unsafe.SizeOf<T>());
        long[] offsetArray = ArrayPool<long>.Shared.Rent(tableLength);
        int[] rangeArray = ArrayPool<int>.Shared.Rent(2 * tableLength);
        try
        {
            fixed (T* bBase = bArray)
            fixed (long* offsets = offsetArray)
            fixed (int* ranges = rangeArray)
            {
                T* packedB = (T*)(((nint)bBase + 63) & ~(nint)63);
                int* runLane = stackalloc int[nr + 1];
                int* runLength = stackalloc int[nr];
                T* tile = stackalloc T[MR * nr];
                for (long u = u0; u < u1; u++)
                {
                    int gi = (int)(u / panels), panel = (int)(u % panels);
                    long col0 = (long)panel * nr;
                    int width = (int)Math.Min(nr, columns - col0);
                    int runs = Runs(v, col0, width, srcImage, plane, gi, runLane, runLength, offsets, ranges);
                    PackB(v, src, packedB, runs, runLane, runLength, offsets, ranges, width, plane);
                    int n0 = (int)(col0 / pixels), pix0 = (int)(col0 % pixels);
                    bool direct = width == nr && pix0 + nr <= pixels;
                    T* aG = packedA + (long)gi * rowPanels * MR * depth;
                    for (int rp = 0; rp < rowPanels; rp++)
                    {
                        int rows = Math.Min(MR, m - rp * MR);
                        T* c = dst + n0 * dstImage + ((long)gi * m + rp * MR) * pixels + pix0;
                        Kernel(aG + (long)rp * MR * depth, packedB, depth, direct ? c : tile, direct ? pixels : nr, rows);
                        if (!direct)
                        {
                            Scatter(tile, nr, rows, col0, width, pixels, dst + ((long)gi * m + rp * MR) * pixels, dstImage);
                        }
                    }
                }
            }
        }
        finally
        {
            ArrayPool<T>.Shared.Return(bArray);
            ArrayPool<long>.Shared.Return(offsetArray);
            ArrayPool<int>.Shared.Return(rangeArray);
        }
    }

    /// <summary>
    /// Splits columns [col0, col0 + width) into runs along one output row and, per run r and tap t, writes the
    /// source offset of its first element (channel 0 of group gi) and the lanes [lo, hi) of the run that lie inside src.
    /// </summary>
    private static int Runs(in ConvWindow v, long col0, int width, long srcImage, long plane, int gi,
        int* runLane, int* runLength, long* offsets, int* ranges)
    {
        int pixels = v.Pixels, ow = v.OutWidth, taps = v.Taps, kw = v.KernelWidth;
        int runs = 0;
        for (int lane = 0; lane < width;)
        {
            long col = col0 + lane;
            int n = (int)(col / pixels), pix = (int)(col % pixels), i = pix / ow, j = pix % ow;
            int length = Math.Min(ow - j, width - lane);
            runLane[runs] = lane;
            runLength[runs] = length;
            long image = n * srcImage + (long)gi * v.InPerGroup * plane;
            for (int t = 0; t < taps; t++)
            {
                int p = t / kw, q = t % kw, e = runs * taps + t;
                int h = i * v.StrideHeight + p * v.DilationHeight - v.PadTop;
                int w0 = j * v.StrideWidth + q * v.DilationWidth - v.PadLeft;
                int sw = v.StrideWidth, wIn = v.InWidth;
                // Lanes s with 0 <= w0 + s·sw < W.
                int lo = w0 >= 0 ? 0 : Math.Min(length, (-w0 + sw - 1) / sw);
                int hi = wIn - w0 <= 0 ? 0 : Math.Min(length, (wIn - w0 + sw - 1) / sw);
                if ((uint)h >= (uint)v.InHeight || hi <= lo)
                {
                    lo = hi = 0;
                }
                offsets[e] = image + (long)h * wIn + w0;
                ranges[2 * e] = lo;
                ranges[2 * e + 1] = hi;
            }
            lane += length;
            runs++;
        }
        runLane[runs] = width;
        return runs;
    }

    /// <summary>
    /// packedB[k·NR + lane] = B[k, col0 + lane] for k = (c·kh + p)·kw + q, zero past the panel's width. The loops run
    /// run, tap, vector, channel: a run's masks depend on its tap only, so the innermost loop over the Cg channels is
    /// one masked load and store each.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackB<T>(in ConvWindow v, T* src, T* packedB, int runs, int* runLane, int* runLength, long* offsets, int* ranges, int width, long plane)
        where T : unmanaged
    {
        int nr = NR<T>(), taps = v.Taps, cg = v.InPerGroup, sw = v.StrideWidth, w = Vector512<T>.Count;
        long rowStep = (long)taps * nr;
        for (int r = 0; r < runs; r++)
        {
            int length = runLength[r];
            for (int t = 0; t < taps; t++)
            {
                int e = r * taps + t;
                int lo = ranges[2 * e], hi = ranges[2 * e + 1];
                T* s = src + offsets[e];
                T* d = packedB + (long)t * nr + runLane[r];
                if (sw != 1)
                {
                    for (int c = 0; c < cg; c++, s += plane, d += rowStep)
                    {
                        for (int l = 0; l < length; l++)
                        {
                            d[l] = l >= lo && l < hi ? s[(long)l * sw] : default;
                        }
                    }
                    continue;
                }
                for (int l = 0; l < length; l += w)
                {
                    var store = LaneMask<T>(0, length - l);
                    var load = LaneMask<T>(lo - l, hi - l);
                    T* sc = s + l, dc = d + l;
                    for (int c = 0; c < cg; c++, sc += plane, dc += rowStep)
                    {
                        MaskedStore(dc, store, MaskedLoad(sc, load));
                    }
                }
            }
        }
        if (width < nr)
        {
            for (int k = 0; k < v.Depth; k++)
            {
                new Span<T>(packedB + (long)k * nr + width, nr - width).Clear();
            }
        }
    }

    /// <summary>
    /// dst[l] = src[l] for lo &lt;= l &lt; hi, 0 for the other l &lt; length: masked vector loads and stores, so src is
    /// never read outside [lo, hi) (where it may not exist) and dst never written past length.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyRun<T>(T* src, T* dst, int length, int lo, int hi)
        where T : unmanaged
    {
        int w = Vector512<T>.Count;
        for (int l = 0; l < length; l += w)
        {
            var store = LaneMask<T>(0, length - l);
            var load = LaneMask<T>(lo - l, hi - l);
            MaskedStore(dst + l, store, MaskedLoad(src + l, load));
        }
    }

    /// <summary>Lanes [from, to) set (either may lie outside [0, lanes)).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<T> LaneMask<T>(int from, int to)
        where T : unmanaged
    {
        if (typeof(T) == typeof(float))
        {
            var i = Vector512<int>.Indices;
            return (Vector512.GreaterThanOrEqual(i, Vector512.Create(from)) & Vector512.LessThan(i, Vector512.Create(to))).As<int, T>();
        }
        var l = Vector512<long>.Indices;
        return (Vector512.GreaterThanOrEqual(l, Vector512.Create((long)from)) & Vector512.LessThan(l, Vector512.Create((long)to))).As<long, T>();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<T> MaskedLoad<T>(T* p, Vector512<T> mask) where T : unmanaged
    {
        if (typeof(T) == typeof(float))
        {
            return Avx512F.MaskLoad((float*)p, mask.AsSingle(), Vector512<float>.Zero).As<float, T>();
        }
        return Avx512F.MaskLoad((double*)p, mask.AsDouble(), Vector512<double>.Zero).As<double, T>();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MaskedStore<T>(T* p, Vector512<T> mask, Vector512<T> value) where T : unmanaged
    {
        if (typeof(T) == typeof(float))
        {
            Avx512F.MaskStore((float*)p, mask.AsSingle(), value.AsSingle());
        }
        else
        {
            Avx512F.MaskStore((double*)p, mask.AsDouble(), value.AsDouble());
        }
    }

    /// <summary>Copies rows [0, rows) of a tile (columns col0 + lane of the batch) to dst's [n, channel, pixel] layout, one piece per image.</summary>
    private static void Scatter<T>(T* tile, int ld, int rows, long col0, int width, int pixels, T* dst, long dstImage)
        where T : unmanaged
    {
        for (int lane = 0; lane < width;)
        {
            long col = col0 + lane;
            int n = (int)(col / pixels), pix = (int)(col % pixels);
            int length = Math.Min(pixels - pix, width - lane);
            T* image = dst + n * dstImage + pix;
            for (int r = 0; r < rows; r++)
            {
                CopyRun(tile + r * ld + lane, image + (long)r * pixels, length, 0, length);
            }
            lane += length;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<T> Fma<T>(Vector512<T> a, Vector512<T> b, Vector512<T> c) where T : unmanaged
    {
        if (typeof(T) == typeof(float))
        {
            return Avx512F.FusedMultiplyAdd(a.AsSingle(), b.AsSingle(), c.AsSingle()).As<float, T>();
        }
        return Avx512F.FusedMultiplyAdd(a.AsDouble(), b.AsDouble(), c.AsDouble()).As<double, T>();
    }

    /// <summary>
    /// 8 × (2·Vector512) micro-kernel over the whole depth: C rows [0, rows) (ldc apart) = Σ_k A[:, k] B[k, :], each
    /// element one FMA chain from zero in ascending k, stored as it is.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel<T>(T* a, T* b, int depth, T* c, long ldc, int rows)
        where T : unmanaged
    {
        int w = Vector512<T>.Count;
        Vector512<T> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default, c30 = default, c31 = default;
        Vector512<T> c40 = default, c41 = default, c50 = default, c51 = default, c60 = default, c61 = default, c70 = default, c71 = default;
        for (int k = 0; k < depth; k++)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + w);
            var av = Vector512.Create(a[0]);
            c00 = Fma(av, b0, c00);
            c01 = Fma(av, b1, c01);
            av = Vector512.Create(a[1]);
            c10 = Fma(av, b0, c10);
            c11 = Fma(av, b1, c11);
            av = Vector512.Create(a[2]);
            c20 = Fma(av, b0, c20);
            c21 = Fma(av, b1, c21);
            av = Vector512.Create(a[3]);
            c30 = Fma(av, b0, c30);
            c31 = Fma(av, b1, c31);
            av = Vector512.Create(a[4]);
            c40 = Fma(av, b0, c40);
            c41 = Fma(av, b1, c41);
            av = Vector512.Create(a[5]);
            c50 = Fma(av, b0, c50);
            c51 = Fma(av, b1, c51);
            av = Vector512.Create(a[6]);
            c60 = Fma(av, b0, c60);
            c61 = Fma(av, b1, c61);
            av = Vector512.Create(a[7]);
            c70 = Fma(av, b0, c70);
            c71 = Fma(av, b1, c71);
            a += MR;
            b += 2 * w;
        }
        c00.Store(c); c01.Store(c + w);
        if (rows > 1) { c10.Store(c + ldc); c11.Store(c + ldc + w); }
        if (rows > 2) { c20.Store(c + 2 * ldc); c21.Store(c + 2 * ldc + w); }
        if (rows > 3) { c30.Store(c + 3 * ldc); c31.Store(c + 3 * ldc + w); }
        if (rows > 4) { c40.Store(c + 4 * ldc); c41.Store(c + 4 * ldc + w); }
        if (rows > 5) { c50.Store(c + 5 * ldc); c51.Store(c + 5 * ldc + w); }
        if (rows > 6) { c60.Store(c + 6 * ldc); c61.Store(c + 6 * ldc + w); }
        if (rows > 7) { c70.Store(c + 7 * ldc); c71.Store(c + 7 * ldc + w); }
    }
}
