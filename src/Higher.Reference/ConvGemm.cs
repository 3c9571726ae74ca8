using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static Higher.Reference.Gemm;

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
/// MR×NR micro-kernel multiplies it by every MR-row panel of the packed A (a block of the reduction at a time), and
/// the tile is stored straight into
/// dst's [n, channel, pixel] layout. This does once what im2col + <see cref="Gemm"/> did in four passes (write the
/// column matrix, pack it, multiply, copy the side-by-side result into place), and the panels of the whole batch
/// are shared out between threads evenly instead of a few image blocks.
/// <para>
/// Every output element sums its Cg·kh·kw terms in ascending (c, p, q) order: an FMA chain from zero over each block
/// of at most <see cref="DepthBlockTarget"/> of them, the blocks added in ascending order, the blocks fixed by the
/// geometry, whichever panel, tile or thread computes it, so results are the same bits for any degree of parallelism. The weight gradient
/// (<see cref="WeightGrad"/>) is the same machinery with the reduction over output pixels instead.
/// </para>
/// </summary>
internal static unsafe class ConvGemm
{
    // Every loop that runs per panel or per element is AggressiveOptimization, as in Gemm: tier-0 code (a fresh
    // process's first calls, and ~100 ms before tier 1 arrives) would otherwise run the packing several times slower.

    private const int MR = 8;

    /// <summary>Deepest reduction the implicit GEMM takes (each group's A is packed whole, M·depth elements); deeper windows take the im2col path.</summary>
    public const int MaxDepth = 2048;

    // Below this many multiply-adds, forking costs more than it saves (the GEMM's threshold).
    private const long ParallelThreshold = 96L * 96 * 96;

    private static int NR<T>() where T : unmanaged => 2 * Vector512<T>.Count;

    /// <summary>Whether the implicit GEMM can run this window: AVX-512, and a depth whose packed panel fits <see cref="MaxDepth"/>.</summary>
    public static bool Supports(in ConvWindow v) =>
        Vector512.IsHardwareAccelerated && Avx512F.IsSupported && v.Depth > 0 && v.Depth <= MaxDepth && v.OutPerGroup > 0;

    /// <summary>A_g = the forward weight: W [O, Cg·kh·kw] row-major, group g's rows g·M ...</summary>
    public static void Forward<T>(Parallelism threads, in ConvGeometry g, T* x, T* w, T* y, T* bias = null)
        where T : unmanaged
    {
        var v = ConvWindow.Forward(g);
        Run(threads, v, w, transposedFlipped: false, x, y, bias);
    }

    /// <summary>gradX of a stride-1 convolution: the window <see cref="ConvWindow.InputGrad"/> over dy, with A_g[c, (o·kh + p')·kw + q'] = W[g·M + o, c, kh-1-p', kw-1-q'].</summary>
    public static void InputGrad<T>(Parallelism threads, in ConvGeometry g, T* dy, T* w, T* dx)
        where T : unmanaged
    {
        var v = ConvWindow.InputGrad(g);
        Run(threads, v, w, transposedFlipped: true, dy, dx);
    }

    private static void Run<T>(Parallelism threads, ConvWindow v, T* w, bool transposedFlipped, T* src, T* dst, T* bias = null)
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
                    Panels(v, packedA, src, dst, bias, 0, units);
                    return;
                }
                nint pa = (nint)packedA, ps = (nint)src, pd = (nint)dst, pb = (nint)bias;
                var window = v;
                threads.For(0, tasks, t => Panels(window, (T*)pa, (T*)ps, (T*)pd, (T*)pb, units * t / tasks, units * (t + 1) / tasks));
            }
        }
        finally
        {
            ArrayPool<T>.Shared.Return(aArray);
        }
    }

    /// <summary>Packs A_g as MR-row panels, k-major (panel[k·MR + r] = A_g[panelRow + r, k]), zero rows past M.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
    private static void Panels<T>(in ConvWindow v, T* packedA, T* src, T* dst, T* bias, long u0, long u1)
        where T : unmanaged
    {
        int depth = v.Depth, m = v.OutPerGroup, rowPanels = (m + MR - 1) / MR, nr = NR<T>(), taps = v.Taps, pixels = v.Pixels;
        long columns = (long)v.Batch * pixels;
        int panels = (int)((columns + nr - 1) / nr);
        long plane = (long)v.InHeight * v.InWidth, srcImage = (long)v.Groups * v.InPerGroup * plane, dstImage = (long)v.Groups * m * pixels;
        // Per panel: its runs (one output row each, at most NR), and per run and tap the source offset and valid lanes.
        int tableLength = nr * taps;
        T[] bArray = ArrayPool<T>.Shared.Rent(Math.Min(depth, DepthBlockTarget) * nr + 64 / Unsafe.SizeOf<T>());
        T[] tileArray = ArrayPool<T>.Shared.Rent(rowPanels * MR * nr + 64 / Unsafe.SizeOf<T>());
        long[] offsetArray = ArrayPool<long>.Shared.Rent(tableLength);
        int[] rangeArray = ArrayPool<int>.Shared.Rent(2 * tableLength);
        try
        {
            fixed (T* bBase = bArray)
            fixed (T* tBase = tileArray)
            fixed (long* offsets = offsetArray)
            fixed (int* ranges = rangeArray)
            {
                T* packedB = (T*)(((nint)bBase + 63) & ~(nint)63);
                int* runLane = stackalloc int[nr + 1];
                int* runLength = stackalloc int[nr];
                T* tiles = (T*)(((nint)tBase + 63) & ~(nint)63);
                int depthBlocks = (depth + DepthBlockTarget - 1) / DepthBlockTarget;
                for (long u = u0; u < u1; u++)
                {
                    int gi = (int)(u / panels), panel = (int)(u % panels);
                    long col0 = (long)panel * nr;
                    int width = (int)Math.Min(nr, columns - col0);
                    int runs = Runs(v, col0, width, srcImage, runLane, runLength, offsets, ranges);
                    int n0 = (int)(col0 / pixels), pix0 = (int)(col0 % pixels);
                    bool direct = width == nr && pix0 + nr <= pixels;
                    T* aG = packedA + (long)gi * rowPanels * MR * depth;
                    for (int db = 0; db < depthBlocks; db++)
                    {
                        int d0 = (int)((long)depth * db / depthBlocks), d1 = (int)((long)depth * (db + 1) / depthBlocks);
                        PackB(v, src + (long)gi * v.InPerGroup * plane, packedB, runs, runLane, runLength, offsets, ranges, width, plane, d0, d1);
                        bool last = db == depthBlocks - 1;
                        for (int rp = 0; rp < rowPanels; rp++)
                        {
                            int rows = Math.Min(MR, m - rp * MR);
                            T* c = dst + n0 * dstImage + ((long)gi * m + rp * MR) * pixels + pix0;
                            T* tile = tiles + rp * MR * nr;
                            Kernel(aG + (long)rp * MR * depth + (long)d0 * MR, packedB, d1 - d0, direct ? c : tile, direct ? pixels : nr, rows, accumulate: db > 0);
                            if (last && bias != null)
                            {
                                // The bias onto the finished tile, still in L1: the bits of a separate add.
                                Convolution.AddBias(direct ? c : tile, direct ? pixels : nr, nr, bias + (long)gi * m + rp * MR, rows);
                            }
                            if (!direct && last)
                            {
                                Scatter(tile, nr, rows, col0, width, pixels, dst + ((long)gi * m + rp * MR) * pixels, dstImage);
                            }
                        }
                    }
                }
            }
        }
        finally
        {
            ArrayPool<T>.Shared.Return(bArray);
            ArrayPool<T>.Shared.Return(tileArray);
            ArrayPool<long>.Shared.Return(offsetArray);
            ArrayPool<int>.Shared.Return(rangeArray);
        }
    }

    /// <summary>
    /// Most rows of packed B per pass: the reduction is cut into equal blocks of at most this many, so that a panel
    /// (256·NR elements, 32 KiB of float) stays in L1 while every row panel of A walks it; measured 10-20 % faster
    /// than one pass over 576 rows (64 channels × 3×3) on the conv net's forward and input gradient.
    /// </summary>
    private const int DepthBlockTarget = 256;

    /// <summary>
    /// Splits columns [col0, col0 + width) into runs along one output row and, per run r and tap t, writes the
    /// source offset of its first element (from channel 0 of the image; the caller adds its group's channels) and the
    /// lanes [lo, hi) of the run that lie inside src.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int Runs(in ConvWindow v, long col0, int width, long srcImage,
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
            long image = n * srcImage;
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
    /// packedB[k·NR + lane] = B[k, col0 + lane] for k = (c·kh + p)·kw + q in [d0, d1), zero past the panel's width:
    /// <see cref="Gather"/> into rows NR apart, then the padding lanes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackB<T>(in ConvWindow v, T* src, T* packedB, int runs, int* runLane, int* runLength, long* offsets, int* ranges, int width, long plane,
        int d0, int d1)
        where T : unmanaged
    {
        int nr = NR<T>();
        Gather(v, src, packedB, nr, runs, runLane, runLength, offsets, ranges, d0, d1 - d0, plane);
        if (width < nr)
        {
            for (int k = 0; k < d1 - d0; k++)
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
    internal static Vector512<T> LaneMask<T>(int from, int to)
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

    /// <summary>Copies rows [0, rows) of a tile (columns col0 + lane of the batch) to dst's [n, channel, pixel] layout, one piece per image.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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

    /// <summary>
    /// 8 × (2·Vector512) micro-kernel over the whole depth: C rows [0, rows) (ldc apart) = Σ_k A[:, k] B[k, :], each
    /// element one FMA chain from zero in ascending k, stored as it is or (<paramref name="accumulate"/>) added to C:
    /// the GEMM's own kernel with alpha 1 (exact) over full-width panels.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Kernel<T>(T* a, T* b, int depth, T* c, long ldc, int rows, bool accumulate = false)
        where T : unmanaged =>
        Gemm.Kernel512(a, b, depth, c, ldc, rows, 2 * Vector512<T>.Count, Gemm.FromDouble<T>(1), default, accumulate ? Gemm.Accumulate : Gemm.Overwrite);

    /// <summary>Reduction rows (output pixels of the batch) per block of the weight gradient: a 512-deep chain per C load and store.</summary>
    private const int ReduceBlock = 512;

    /// <summary>Largest transposed copy of dy the weight gradient makes, in elements (256 MiB of float); bigger layers take the im2col path.</summary>
    private const long MaxPackedDy = 1L << 26;

    /// <summary>At most this many partial sums of the weight gradient (see <see cref="WeightGrad"/>).</summary>
    private const int MaxChunks = 8;

    /// <summary>Whether <see cref="WeightGrad"/> can run: AVX-512 and a transposed dy within <see cref="MaxPackedDy"/> (a 1-channel 3×3 layer's 9 weight columns fill 9 of 32 lanes and still ran 2× faster than im2col + GEMM).</summary>
    public static bool SupportsWeightGrad(in ConvGeometry g)
    {
        var v = ConvWindow.Forward(g);
        long packedDy = (long)v.Groups * ((v.OutPerGroup + MR - 1) / MR * MR) * v.Batch * v.Pixels;
        return Vector512.IsHardwareAccelerated && Avx512F.IsSupported && v.OutPerGroup > 0 && v.Pixels > 0 && v.Batch > 0 && packedDy <= MaxPackedDy;
    }

    /// <summary>
    /// gradW_g [M, Cg·kh·kw] = dy_g [M, N·OH·OW] · colsᵀ as an implicit GEMM: dy is transposed once into MR-row panels
    /// over all N·OH·OW output pixels (the reduction), and per NR-wide panel of weight columns and block of
    /// <see cref="ReduceBlock"/> pixels the column matrix's rows are gathered from x (as the forward packs them) and
    /// transposed in 8×8 register blocks into the packed panel. Every weight element sums its block chains in
    /// ascending block order (an FMA chain from zero over ascending pixels each, then added to C), per chunk of the
    /// reduction where there are few weight panels (the chunks' partials then added in ascending order); threads share
    /// out panels and chunks, whose number depends on the geometry only, so results do not depend on the thread count.
    /// </summary>
    public static void WeightGrad<T>(Parallelism threads, in ConvGeometry g, T* x, T* dy, T* dw)
        where T : unmanaged
    {
        var v = ConvWindow.Forward(g);
        int depth = v.Depth, m = v.OutPerGroup, rowPanels = (m + MR - 1) / MR, nr = NR<T>();
        long reduce = (long)v.Batch * v.Pixels;
        int colPanels = (depth + nr - 1) / nr;
        T[] aArray = ArrayPool<T>.Shared.Rent(checked((int)(v.Groups * rowPanels * MR * reduce)));
        try
        {
            fixed (T* packedA = aArray)
            {
                long units = (long)v.Groups * colPanels;
                long work = reduce * m * depth * v.Groups;
                bool parallel = threads.Enabled && work >= ParallelThreshold;
                nint pa = (nint)packedA, px = (nint)x, pdy = (nint)dy, pdw = (nint)dw;
                var window = v;
                int aPanels = v.Groups * rowPanels;
                if (parallel)
                {
                    threads.For(0, aPanels, i => PackDyT(window, (T*)pdy, i / rowPanels, i % rowPanels, (T*)pa + i * MR * reduce));
                }
                else
                {
                    for (int i = 0; i < aPanels; i++)
                    {
                        PackDyT(v, dy, i / rowPanels, i % rowPanels, packedA + i * MR * reduce);
                    }
                }
                // Few weight-column panels (a 1-channel 3×3 layer has one) leave nothing to share out: the reduction is then
                // cut into a number of chunks fixed by the geometry, each summed into its own partial, the partials
                // added in ascending order afterwards.
                int blocks = (int)((reduce + ReduceBlock - 1) / ReduceBlock);
                int chunks = units >= 8 ? 1 : Math.Max(1, Math.Min(MaxChunks, blocks / 4));
                long weights = (long)v.Groups * m * depth;
                T[]? partialArray = chunks > 1 ? ArrayPool<T>.Shared.Rent(checked((int)((chunks - 1) * weights))) : null;
                try
                {
                    fixed (T* partials = partialArray)
                    {
                        nint pp = (nint)partials;
                        int perChunk = parallel ? (int)Math.Max(1, Math.Min(units, (4L * threads.MaxDegree + chunks - 1) / chunks)) : 1;
                        int tasks = chunks * perChunk;
                        void RunTask(int t)
                        {
                            int chunk = t / perChunk, part = t % perChunk;
                            long r0 = (long)blocks * chunk / chunks * ReduceBlock, r1 = Math.Min(reduce, (long)blocks * (chunk + 1) / chunks * ReduceBlock);
                            T* target = chunk == 0 ? (T*)pdw : (T*)pp + (chunk - 1) * weights;
                            WeightPanels(window, (T*)pa, (T*)px, target, units * part / perChunk, units * (part + 1) / perChunk, r0, r1);
                        }
                        if (tasks == 1)
                        {
                            RunTask(0);
                        }
                        else
                        {
                            threads.For(0, tasks, RunTask);
                        }
                        for (int c = 1; c < chunks; c++)
                        {
                            T* partial = partials + (c - 1) * weights;
                            for (long i = 0; i < weights; i++)
                            {
                                dw[i] = Add(dw[i], partial[i]);
                            }
                        }
                    }
                }
                finally
                {
                    if (partialArray is not null)
                    {
                        ArrayPool<T>.Shared.Return(partialArray);
                    }
                }
            }
        }
        finally
        {
            ArrayPool<T>.Shared.Return(aArray);
        }
    }

    /// <summary>dst[r·MR + i] = dy[n, g·M + rp·MR + i, pixel] for reduction row r = n·OH·OW + pixel, zero for rows past M.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackDyT<T>(in ConvWindow v, T* dy, int gi, int rp, T* dst)
        where T : unmanaged
    {
        int m = v.OutPerGroup, pixels = v.Pixels, block = 32 / Unsafe.SizeOf<T>();
        int rows = Math.Min(MR, m - rp * MR);
        long dyImage = (long)v.Groups * m * pixels;
        for (int n = 0; n < v.Batch; n++)
        {
            T* src = dy + n * dyImage + ((long)gi * m + rp * MR) * pixels;
            T* d = dst + (long)n * pixels * MR;
            int pix = 0;
            if (rows == MR)
            {
                for (; pix + block <= pixels; pix += block)
                {
                    for (int i0 = 0; i0 < MR; i0 += block)
                    {
                        Copying.TransposeBlock(ref Unsafe.AsRef<T>(src + (long)i0 * pixels + pix), pixels, ref Unsafe.AsRef<T>(d + (long)pix * MR + i0), MR);
                    }
                }
            }
            for (; pix < pixels; pix++)
            {
                for (int i = 0; i < MR; i++)
                {
                    d[(long)pix * MR + i] = i < rows ? src[(long)i * pixels + pix] : default;
                }
            }
        }
    }

    /// <summary>Weight-gradient units [u0, u1) (unit u: group u / panels, weight-column panel u % panels) over reduction rows [rBegin, rEnd), into dw.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WeightPanels<T>(in ConvWindow v, T* packedA, T* x, T* dw, long u0, long u1, long rBegin, long rEnd)
        where T : unmanaged
    {
        int depth = v.Depth, m = v.OutPerGroup, rowPanels = (m + MR - 1) / MR, nr = NR<T>(), taps = v.Taps, pixels = v.Pixels;
        int colPanels = (depth + nr - 1) / nr, block = 32 / Unsafe.SizeOf<T>();
        long reduce = (long)v.Batch * pixels;
        long plane = (long)v.InHeight * v.InWidth, srcImage = (long)v.Groups * v.InPerGroup * plane;
        // The gathered rows [NR, ReduceBlock] sit ld apart, off a power of two so that a transpose's 8 row loads do not share an L1 set.
        int ld = ReduceBlock + 64 / Unsafe.SizeOf<T>();
        int maxRuns = ReduceBlock / v.OutWidth + 2;
        int pad = 64 / Unsafe.SizeOf<T>();
        T[] gatherArray = ArrayPool<T>.Shared.Rent(nr * ld + pad);
        T[] bArray = ArrayPool<T>.Shared.Rent(ReduceBlock * nr + pad);
        T[] tileArray = ArrayPool<T>.Shared.Rent(MR * nr);
        long[] offsetArray = ArrayPool<long>.Shared.Rent(maxRuns * taps);
        int[] rangeArray = ArrayPool<int>.Shared.Rent(2 * maxRuns * taps);
        int[] runArray = ArrayPool<int>.Shared.Rent(2 * maxRuns + 1);
        try
        {
            fixed (T* gBase = gatherArray)
            fixed (T* bBase = bArray)
            fixed (T* tile = tileArray)
            fixed (long* offsets = offsetArray)
            fixed (int* ranges = rangeArray)
            fixed (int* runInfo = runArray)
            {
                T* gathered = (T*)(((nint)gBase + 63) & ~(nint)63);
                T* packedB = (T*)(((nint)bBase + 63) & ~(nint)63);
                int* runLane = runInfo, runLength = runInfo + maxRuns + 1;
                // Blocks of the reduction outermost: a block's runs serve every unit, and its packed dy stays in cache across them.
                for (long r0 = rBegin; r0 < rEnd; r0 += ReduceBlock)
                {
                    int kc = (int)Math.Min(ReduceBlock, rEnd - r0);
                    int runs = Runs(v, r0, kc, srcImage, runLane, runLength, offsets, ranges);
                    bool accumulate = r0 > rBegin;
                    for (long u = u0; u < u1; u++)
                    {
                        int gi = (int)(u / colPanels), panel = (int)(u % colPanels);
                        int k0 = panel * nr, width = Math.Min(nr, depth - k0);
                        if (width < nr)
                        {
                            new Span<T>(gathered + (long)width * ld, (nr - width) * ld).Clear();
                        }
                        Gather(v, x + (long)gi * v.InPerGroup * plane, gathered, ld, runs, runLane, runLength, offsets, ranges, k0, width, plane);
                        // packedB[r·NR + l] = gathered[l·ld + r].
                        int r = 0;
                        for (; r + block <= kc; r += block)
                        {
                            for (int l0 = 0; l0 < nr; l0 += block)
                            {
                                Copying.TransposeBlock(ref Unsafe.AsRef<T>(gathered + (long)l0 * ld + r), ld, ref Unsafe.AsRef<T>(packedB + (long)r * nr + l0), nr);
                            }
                        }
                        for (; r < kc; r++)
                        {
                            for (int l = 0; l < nr; l++)
                            {
                                packedB[(long)r * nr + l] = gathered[(long)l * ld + r];
                            }
                        }
                        T* aG = packedA + (long)gi * rowPanels * MR * reduce;
                        T* cG = dw + (long)gi * m * depth + k0;
                        for (int rp = 0; rp < rowPanels; rp++)
                        {
                            int rows = Math.Min(MR, m - rp * MR);
                            T* a = aG + (long)rp * MR * reduce + r0 * MR;
                            T* c = cG + (long)rp * MR * depth;
                            if (width == nr)
                            {
                                Kernel(a, packedB, kc, c, depth, rows, accumulate);
                                continue;
                            }
                            Kernel(a, packedB, kc, tile, nr, rows);
                            for (int i = 0; i < rows; i++)
                            {
                                T* ci = c + (long)i * depth;
                                T* ti = tile + i * nr;
                                for (int l = 0; l < width; l++)
                                {
                                    ci[l] = accumulate ? Add(ci[l], ti[l]) : ti[l];
                                }
                            }
                        }
                    }
                }
            }
        }
        finally
        {
            ArrayPool<T>.Shared.Return(gatherArray);
            ArrayPool<T>.Shared.Return(bArray);
            ArrayPool<T>.Shared.Return(tileArray);
            ArrayPool<long>.Shared.Return(offsetArray);
            ArrayPool<int>.Shared.Return(rangeArray);
            ArrayPool<int>.Shared.Return(runArray);
        }
    }

    /// <summary>
    /// gathered[(k - k0)·ld + lane] = B[k, r0 + lane] for the columns k0 ≤ k = c·kh·kw + tap &lt; k0 + width of the column
    /// matrix (the forward's packed panels, ld = NR, and the weight gradient's rows). The loops run run, tap, vector,
    /// channel: a run's masks depend on its tap only, so the innermost loop over the channels is one masked load and
    /// store each.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Gather<T>(in ConvWindow v, T* src, T* gathered, int ld, int runs, int* runLane, int* runLength, long* offsets, int* ranges,
        int k0, int width, long plane)
        where T : unmanaged
    {
        int taps = v.Taps, sw = v.StrideWidth, w = Vector512<T>.Count;
        for (int r = 0; r < runs; r++)
        {
            int length = runLength[r];
            for (int t = 0; t < taps; t++)
            {
                // Channels c with k0 <= c·taps + t < k0 + width.
                int cLo = Math.Max(0, (k0 - t + taps - 1) / taps), cHi = (k0 + width - 1 - t) < 0 ? 0 : (k0 + width - 1 - t) / taps + 1;
                if (cHi <= cLo)
                {
                    continue;
                }
                int e = r * taps + t;
                int lo = ranges[2 * e], hi = ranges[2 * e + 1];
                T* s = src + offsets[e] + cLo * plane;
                T* d = gathered + (long)(cLo * taps + t - k0) * ld + runLane[r];
                long rowStep = (long)taps * ld;
                if (sw != 1)
                {
                    for (int c = cLo; c < cHi; c++, s += plane, d += rowStep)
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
                    for (int c = cLo; c < cHi; c++, sc += plane, dc += rowStep)
                    {
                        MaskedStore(dc, store, MaskedLoad(sc, load));
                    }
                }
            }
        }
    }
}
