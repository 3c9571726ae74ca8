using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static Higher.Reference.Gemm;

namespace Higher.Reference;

/// <summary>
/// Convolution with the image as the broadcast operand (AVX-512, or AVX2 with FMA): a <see cref="Rows"/> × chunk register
/// tile whose rows broadcast single elements of the source straight from memory, through two tables of offsets,
/// and whose columns are a vector operand packed once per call with the channels innermost. Nothing of the column
/// matrix is gathered, packed or transposed:
/// <list type="bullet">
/// <item>forward: tile rows are <see cref="Rows"/> output pixels (row r reads src[pixelBase[r] + tapOffset[k]] at step
/// k, src zero-padded into a copy where the window reads outside x), columns output channels (Wᵀ[k, channel]); the
/// tile is stored transposed into [n, channel, pixel], the bias added as it is stored;</item>
/// <item>weight gradient: tile rows are <see cref="Rows"/> reduction columns k = (c, p, q) (row r reads
/// src[tapOffset[r] + pixelBase[t]] at pixel t), columns output channels (dyᵀ[pixel, channel], dy transposed once);
/// stored transposed into gradW [channel, k];</item>
/// <item>input gradient (<see cref="InputGrad"/>): per tap, tile rows are output pixels broadcasting dy over the
/// output channels, columns input channels (W's tap packed [o, c]), each tile added into a transposed scratch of the
/// image at the pixels the tap reaches.</item>
/// </list>
/// A chunk is 4·Vector512 channels with AVX-512 (64 float, 32 double), 2·Vector256 with AVX2 (16 float, 8 double: 12
/// accumulators, 2 operands and a broadcast in 15 of the 16 ymm registers). With 64 channels and AVX-512 a step is 6
/// broadcasts and 4 vector loads for 24 FMAs, against 8 broadcasts and 2 loads for 16 in the implicit GEMM's 8 × 32
/// tile, and the implicit GEMM's gathers (18 % of its forward, more of its weight gradient) are gone. Channels are
/// padded with zeros to a multiple of the chunk in the packed operand (their lanes are never stored), so the automatic
/// choice takes the path only where that wastes at most a quarter.
/// <para>
/// Every forward and weight-gradient element is one FMA chain from zero over its terms in ascending order (k = (c·kh +
/// p)·kw + q for the forward, output pixels n·OH·OW + i·OW + j for the weight gradient); the blocks the loops walk in
/// only reload the chain's partial sum from the unit's scratch, which rounds nothing. An input-gradient element adds
/// its taps' chains in ascending tap order. Each element belongs to one work unit, units are fixed by the geometry
/// and shared out between threads, so results are the same bits for any degree of parallelism, and, every lane being
/// its own chain of fused multiply-adds, the same bits with AVX-512 and with AVX2.
/// </para>
/// </summary>
internal static unsafe class ConvBroadcast
{
    // Every loop that runs per tile or per element is AggressiveOptimization, as in Gemm and ConvGemm.

    /// <summary>Rows of the register tile: 6 × 4 accumulators, 4 vector operands and a broadcast in 29 of 32 zmm registers (6 × 2 + 2 + 1 of 16 ymm).</summary>
    private const int Rows = 6;

    /// <summary>Forward: output pixels per work unit (16 tiles; their partial sums, 24 KiB of float, stay in L1).</summary>
    private const int PixelBlock = 16 * Rows;

    /// <summary>Forward: reduction steps per pass over a unit's tiles (a 32 KiB block of the packed weight, reused by each tile).</summary>
    private const int DepthBlock = 128;

    /// <summary>Weight gradient: reduction columns per work unit (16 tiles).</summary>
    private const int ColumnBlock = 16 * Rows;

    /// <summary>Weight gradient: output pixels per pass over a unit's tiles (a 32 KiB block of dyᵀ).</summary>
    private const int PixelPass = 128;

    // Below this many multiply-adds, forking costs more than it saves (the GEMM's threshold).
    private const long ParallelThreshold = 96L * 96 * 96;

    /// <summary>
    /// Rows (pixels or reduction columns, a multiple of <see cref="Rows"/>, at most <paramref name="largest"/>) per work
    /// unit: small enough that every thread gets at least four units where the layer allows (a 3×3 map of 25 images
    /// is 225 pixels, three units of 96, two of them on one thread). Each element's chain is the same whatever the unit
    /// size, so this may depend on the thread count without changing a bit.
    /// </summary>
    private static int UnitSize(int length, int otherUnits, Parallelism threads, int largest)
    {
        long wanted = 4L * threads.MaxDegree;
        long perUnit = (length * (long)otherUnits + wanted - 1) / wanted;
        perUnit = (perUnit + Rows - 1) / Rows * Rows;
        return (int)Math.Clamp(perUnit, Rows, largest);
    }

    /// <summary>Runs the units on the threads where the call has <see cref="ParallelThreshold"/> multiply-adds, else in order on this one (<see cref="ConvWinograd"/>'s too, counting the direct sum's).</summary>
    internal static void ForUnits(Parallelism threads, long work, int units, Action<int> unit)
    {
        if (threads.Enabled && work >= ParallelThreshold && units > 1)
        {
            threads.For(0, units, unit);
            return;
        }
        for (int u = 0; u < units; u++)
        {
            unit(u);
        }
    }

    /// <summary>Whether the channels pad to the tile's width with at most a quarter of waste (64 and 112 floats do, 70 and 100 do not).</summary>
    private static bool LittlePadding<T>(int channels) where T : unmanaged => 4L * Padded<T>(channels) <= 5L * channels;

    /// <summary>The 512-bit micro-kernel's machine: AVX-512.</summary>
    private static bool Wide => Vector512.IsHardwareAccelerated && Avx512F.IsSupported;

    /// <summary>AVX-512, or AVX2 with FMA (the 256-bit micro-kernel; without FMA the chains would round twice per term).</summary>
    private static bool Available => Wide || (Vector256.IsHardwareAccelerated && Avx2.IsSupported && Fma.IsSupported);

    /// <summary>Output channels per tile: 64 float or 32 double with AVX-512, 16 or 8 with AVX2.</summary>
    private static int Chunk<T>() where T : unmanaged => Wide ? 4 * Vector512<T>.Count : 2 * Vector256<T>.Count;

    private static int Padded<T>(int channels) where T : unmanaged => (channels + Chunk<T>() - 1) / Chunk<T>() * Chunk<T>();

    /// <summary>
    /// Whether the path can run a window whose tiles span <paramref name="channels"/> output channels: AVX-512,
    /// a non-empty reduction, and offsets that fit an int (the tables are 32-bit).
    /// </summary>
    public static bool Supports<T>(in ConvWindow v, int channels)
        where T : unmanaged =>
        Available && channels > 0 && v.Depth > 0 && v.Batch > 0 && v.Pixels > 0
        && SourceLength(v) < int.MaxValue / 2;

    /// <summary>Where the automatic choice takes it: <see cref="Supports{T}"/>, with the channel padding at most a quarter.</summary>
    public static bool Prefers<T>(in ConvWindow v, int channels)
        where T : unmanaged =>
        Supports<T>(v, channels) && LittlePadding<T>(channels);

    /// <summary>The forward (see <see cref="Supports{T}"/>): y = conv(x, W) (+ bias per channel).</summary>
    public static void Forward<T>(Parallelism threads, in ConvGeometry g, T* x, T* w, T* y, T* bias = null)
        where T : unmanaged =>
        Run(threads, ConvWindow.Forward(g), w, x, y, bias);

    /// <summary>Whether <see cref="InputGrad"/> can run (see <see cref="Supports{T}"/>): its tiles span the forward's input channels per group.</summary>
    public static bool SupportsInputGrad<T>(in ConvGeometry g)
        where T : unmanaged
    {
        var v = ConvWindow.Forward(g);
        long dyLength = (long)v.Batch * v.Groups * v.OutPerGroup * v.Pixels;
        return Available && v.InPerGroup > 0 && v.OutPerGroup > 0 && v.Pixels > 0 && v.Batch > 0
            && dyLength < int.MaxValue / 2 && (long)v.InHeight * v.InWidth * Padded<T>(v.InPerGroup) < int.MaxValue / 2;
    }

    /// <summary>Where the automatic choice takes the input gradient: the input channels pad to the tile with at most a quarter of waste.</summary>
    public static bool PrefersInputGrad<T>(in ConvGeometry g)
        where T : unmanaged =>
        SupportsInputGrad<T>(g) && LittlePadding<T>(g.InChannels / g.Groups);

    /// <summary>
    /// gradX as a sum over taps, any stride, padding or dilation: per image and group, for each tap t = p·kw + q in
    /// ascending order, Z_t[pixel, c] = Σ over o (ascending) of dy[n, g·M + o, pixel]·W[g·M + o, c, p, q] (the tile's
    /// rows broadcast dy, the columns are W's tap t packed [o, c]), and Z_t's row for output pixel (i, j) is added to
    /// gradXᵀ[i·sh + p·dh − padTop, j·sw + q·dw − padLeft] where that lies in x. Only the terms that exist are computed
    /// (the convolution of dy over its zero-padded copy computes H·W·taps terms per channel pair, 1.4× the useful
    /// ones on an 11×11 map, 2.8× on a 3×3), and each gradX element is (…((0 + Z_0) + Z_1) + …) in ascending tap order.
    /// The transposed scratch per image ([H·W, padded Cg]) is written into gradX's [n, c, h, w] at the end.
    /// </summary>
    public static void InputGrad<T>(Parallelism threads, in ConvGeometry g, T* dy, T* w, T* dx)
        where T : unmanaged
    {
        var v = ConvWindow.Forward(g);
        int cg = v.InPerGroup, m = v.OutPerGroup, cp = Padded<T>(cg), chunk = Chunk<T>(), chunks = cp / chunk, taps = v.Taps;
        int pixels = v.Pixels;
        T[] packed = ArrayPool<T>.Shared.Rent(checked(v.Groups * taps * m * cp));
        int[] offsets = ArrayPool<int>.Shared.Rent(m);
        int[] bases = ArrayPool<int>.Shared.Rent(pixels + Rows);
        try
        {
            fixed (T* pv = packed)
            fixed (int* po = offsets, pb = bases)
            {
                // packed[((g·taps + t)·M + o)·cp + c] = W[g·M + o, c, t], zero for the padding channels.
                for (int gi = 0; gi < v.Groups; gi++)
                {
                    for (int t = 0; t < taps; t++)
                    {
                        T* dst = pv + ((long)gi * taps + t) * m * cp;
                        for (int o = 0; o < m; o++)
                        {
                            T* row = dst + (long)o * cp;
                            T* a = w + ((long)gi * m + o) * cg * taps + t;
                            for (int c = 0; c < cg; c++)
                            {
                                row[c] = a[(long)c * taps];
                            }
                            new Span<T>(row + cg, cp - cg).Clear();
                        }
                    }
                }
                for (int o = 0; o < m; o++)
                {
                    po[o] = o * pixels;
                }
                for (int pix = 0; pix < pixels; pix++)
                {
                    pb[pix] = pix;
                }
                for (int r = 0; r < Rows; r++)
                {
                    pb[pixels + r] = pixels - 1;
                }
                int units = v.Groups * v.Batch;
                nint ppv = (nint)pv, ppo = (nint)po, ppb = (nint)pb, pdy = (nint)dy, pdx = (nint)dx;
                var window = v;
                void Unit(int u)
                {
                    int gi = u % window.Groups, n = u / window.Groups;
                    T* src = (T*)pdy + ((long)n * window.Groups + gi) * m * pixels;
                    T* dst = (T*)pdx + ((long)n * window.Groups + gi) * cg * window.InHeight * window.InWidth;
                    InputGradUnit(window, src, (T*)ppv + (long)gi * taps * m * cp, cp, chunks, (int*)ppo, (int*)ppb, dst);
                }
                long work = (long)v.Batch * pixels * m * cp * taps * v.Groups;
                ForUnits(threads, work, units, Unit);
            }
        }
        finally
        {
            ArrayPool<T>.Shared.Return(packed);
            ArrayPool<int>.Shared.Return(offsets);
            ArrayPool<int>.Shared.Return(bases);
        }
    }

    /// <summary>One image of one group: the taps' tiles added into the transposed scratch, then the scratch written into gradX.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void InputGradUnit<T>(in ConvWindow v, T* dy, T* packed, int cp, int chunks, int* offsets, int* bases, T* dx)
        where T : unmanaged
    {
        int chunk = Chunk<T>(), m = v.OutPerGroup, cg = v.InPerGroup, pixels = v.Pixels, ow = v.OutWidth;
        int h = v.InHeight, wd = v.InWidth, plane = h * wd;
        T[] scratchArray = ArrayPool<T>.Shared.Rent(plane * cp + 64 / Unsafe.SizeOf<T>());
        try
        {
            fixed (T* scratchBase = scratchArray)
            {
                T* xt = (T*)(((nint)scratchBase + 63) & ~(nint)63);
                T** into = stackalloc T*[Rows];
                long* at = stackalloc long[Rows];
                new Span<T>(xt, plane * cp).Clear();
                for (int t = 0; t < v.Taps; t++)
                {
                    int p = t / v.KernelWidth, q = t % v.KernelWidth;
                    int dh = p * v.DilationHeight - v.PadTop, dwo = q * v.DilationWidth - v.PadLeft;
                    T* vt = packed + (long)t * m * cp;
                    for (int p0 = 0, i0 = 0, j0 = 0; p0 < pixels; p0 += Rows)
                    {
                        int rows = Math.Min(Rows, pixels - p0);
                        // Each row's offset in gradXᵀ: the pixel the tap takes it to, -1 where that lies outside x (or past the tile's rows).
                        // (i0, j0) is output pixel p0, stepped without a division.
                        for (int r = 0, i = i0, j = j0; r < Rows; r++)
                        {
                            at[r] = -1;
                            if (r < rows)
                            {
                                int hh = i * v.StrideHeight + dh, ww = j * v.StrideWidth + dwo;
                                if ((uint)hh < (uint)h && (uint)ww < (uint)wd)
                                {
                                    at[r] = ((long)hh * wd + ww) * cp;
                                }
                            }
                            if (++j == ow)
                            {
                                j = 0;
                                i++;
                            }
                        }
                        j0 += Rows;
                        while (j0 >= ow)
                        {
                            j0 -= ow;
                            i0++;
                        }
                        for (int ci = 0; ci < chunks; ci++)
                        {
                            for (int r = 0; r < Rows; r++)
                            {
                                into[r] = at[r] < 0 ? null : xt + at[r] + ci * chunk;
                            }
                            Kernel(dy, bases + p0, offsets, m, vt + ci * chunk, cp, null, accumulate: false, into);
                        }
                    }
                }
                // xt[pixel·cp + c] → dx[c, pixel].
                Copying.Transpose(xt, cp, dx, plane, plane, cg);
            }
        }
        finally
        {
            ArrayPool<T>.Shared.Return(scratchArray);
        }
    }

    /// <summary>Elements of the source the tables index: the padded copy's, or src's where no copy is made.</summary>
    private static long SourceLength(in ConvWindow v)
    {
        return Math.Max(CopyLength(v), (long)v.Batch * v.Groups * v.InPerGroup * v.InHeight * v.InWidth);
    }

    /// <summary>Rows and columns of the source the window reads, from (−padTop, −padLeft).</summary>
    private static (int Rows, int Cols) Extent(in ConvWindow v) =>
        ((v.OutHeight - 1) * v.StrideHeight + (v.KernelHeight - 1) * v.DilationHeight + 1,
         (v.OutWidth - 1) * v.StrideWidth + (v.KernelWidth - 1) * v.DilationWidth + 1);

    /// <summary>Whether the window reads outside src (padding, or an extent past its edge): then the tables index a zero-padded copy.</summary>
    private static bool NeedsCopy(in ConvWindow v)
    {
        var (rows, cols) = Extent(v);
        return v.PadTop > 0 || v.PadLeft > 0 || rows - v.PadTop > v.InHeight || cols - v.PadLeft > v.InWidth;
    }

    /// <summary>Elements of the zero-padded copy: exactly the rows and columns the window reads, per plane.</summary>
    private static long CopyLength(in ConvWindow v)
    {
        var (rows, cols) = Extent(v);
        return (long)v.Batch * v.Groups * v.InPerGroup * rows * cols;
    }

    /// <summary>
    /// The source as the tables index it: src itself (shifted to the window's first row and column) where
    /// <paramref name="copy"/> is null, else copy filled with exactly the rows and columns the window reads, zero
    /// outside src.
    /// </summary>
    private static T* Source<T>(Parallelism threads, in ConvWindow v, T* src, T* copy, out int width, out long plane)
        where T : unmanaged
    {
        var (rows, cols) = Extent(v);
        if (copy == null)
        {
            width = v.InWidth;
            plane = (long)v.InHeight * v.InWidth;
            return src + (long)-v.PadTop * v.InWidth - v.PadLeft;
        }
        width = cols;
        plane = (long)rows * cols;
        long planes = (long)v.Batch * v.Groups * v.InPerGroup, copyPlane = plane;
        nint pc = (nint)copy, ps = (nint)src;
        var window = v;
        void CopyPlanes(long p0, long p1)
        {
            T* dst = (T*)pc + p0 * copyPlane;
            // Columns of the copy read src column s − padLeft where that lies in [0, W).
            int lo = Math.Clamp(window.PadLeft, 0, cols), hi = Math.Clamp(window.InWidth + window.PadLeft, lo, cols);
            for (long p = p0; p < p1; p++)
            {
                T* s = (T*)ps + p * window.InHeight * window.InWidth;
                for (int r = 0; r < rows; r++, dst += cols)
                {
                    int h = r - window.PadTop;
                    var row = new Span<T>(dst, cols);
                    if ((uint)h >= (uint)window.InHeight)
                    {
                        row.Clear();
                        continue;
                    }
                    row[..lo].Clear();
                    new ReadOnlySpan<T>(s + (long)h * window.InWidth + (lo - window.PadLeft), hi - lo).CopyTo(row[lo..hi]);
                    row[hi..].Clear();
                }
            }
        }
        int pieces = threads.Enabled && planes * plane >= 1 << 16 ? (int)Math.Min(planes, 4L * threads.MaxDegree) : 1;
        threads.For(0, pieces, i => CopyPlanes(planes * i / pieces, planes * (i + 1) / pieces));
        return copy;
    }

    /// <summary>tapOffset[k] for k = (c·kh + p)·kw + q: c·plane + p·dh·width + q·dw, then <see cref="Rows"/> copies of the last (a partial tile's spare rows read it).</summary>
    private static void TapOffsets(in ConvWindow v, int width, long plane, int* table)
    {
        int k = 0;
        for (int c = 0; c < v.InPerGroup; c++)
        {
            for (int p = 0; p < v.KernelHeight; p++)
            {
                for (int q = 0; q < v.KernelWidth; q++)
                {
                    table[k++] = (int)(c * plane + (long)p * v.DilationHeight * width + (long)q * v.DilationWidth);
                }
            }
        }
        for (int r = 0; r < Rows; r++)
        {
            table[k + r] = table[k - 1];
        }
    }

    /// <summary>pixelBase[n·OH·OW + i·OW + j] = n·image + i·sh·width + j·sw, then <see cref="Rows"/> copies of the last.</summary>
    private static void PixelBases(in ConvWindow v, int width, long image, int* table)
    {
        int t = 0;
        for (int n = 0; n < v.Batch; n++)
        {
            for (int i = 0; i < v.OutHeight; i++)
            {
                long row = n * image + (long)i * v.StrideHeight * width;
                for (int j = 0; j < v.OutWidth; j++)
                {
                    table[t++] = (int)(row + (long)j * v.StrideWidth);
                }
            }
        }
        for (int r = 0; r < Rows; r++)
        {
            table[t + r] = table[t - 1];
        }
    }

    /// <summary>A call's work over the source as the tables index it (see <see cref="WithSource"/>).</summary>
    private delegate void OverSource<T>(T* source, int* tapOffsets, int* pixelBases, long plane)
        where T : unmanaged;

    /// <summary>
    /// Makes the source of window v (src, or its zero-padded copy), its tap offsets and pixel bases, runs body over
    /// them, and returns the scratch: the setup the forward and the weight gradient share.
    /// </summary>
    private static void WithSource<T>(Parallelism threads, in ConvWindow v, T* src, OverSource<T> body)
        where T : unmanaged
    {
        T[]? copy = NeedsCopy(v) ? ArrayPool<T>.Shared.Rent(checked((int)CopyLength(v))) : null;
        int[] taps = ArrayPool<int>.Shared.Rent(v.Depth + Rows);
        int[] bases = ArrayPool<int>.Shared.Rent(v.Batch * v.Pixels + Rows);
        try
        {
            fixed (T* pc = copy)
            fixed (int* pt = taps, pb = bases)
            {
                T* s = Source(threads, v, src, pc, out int width, out long plane);
                TapOffsets(v, width, plane, pt);
                PixelBases(v, width, (long)v.Groups * v.InPerGroup * plane, pb);
                body(s, pt, pb, plane);
            }
        }
        finally
        {
            if (copy is not null)
            {
                ArrayPool<T>.Shared.Return(copy);
            }
            ArrayPool<int>.Shared.Return(taps);
            ArrayPool<int>.Shared.Return(bases);
        }
    }

    private static void Run<T>(Parallelism threads, ConvWindow v, T* w, T* src, T* dst, T* bias)
        where T : unmanaged
    {
        int depth = v.Depth, m = v.OutPerGroup, mp = Padded<T>(m), chunk = Chunk<T>(), chunks = mp / chunk;
        int total = v.Batch * v.Pixels;
        T[] packed = ArrayPool<T>.Shared.Rent(checked(v.Groups * depth * mp));
        try
        {
            fixed (T* pv = packed)
            {
                for (int gi = 0; gi < v.Groups; gi++)
                {
                    PackWeight(v, w, gi, pv + (long)gi * depth * mp, mp);
                }
                int block = UnitSize(total, v.Groups * chunks, threads, PixelBlock);
                int blocks = (total + block - 1) / block;
                nint ppv = (nint)pv, pd = (nint)dst, pbias = (nint)bias;
                var window = v;
                WithSource(threads, v, src, (s, pt, pb, plane) =>
                {
                    nint ps = (nint)s, ppt = (nint)pt, ppb = (nint)pb;
                    void Unit(int u)
                    {
                        int gi = u / (chunks * blocks), ci = u / blocks % chunks, b = u % blocks;
                        ForwardUnit(window, (T*)ps + (long)gi * window.InPerGroup * plane, (T*)ppv + (long)gi * depth * mp + ci * chunk, mp,
                            (int*)ppt, (int*)ppb, gi, ci, b * block, Math.Min(total, (b + 1) * block), (T*)pd, (T*)pbias);
                    }
                    ForUnits(threads, (long)total * mp * depth * window.Groups, window.Groups * chunks * blocks, Unit);
                });
            }
        }
        finally
        {
            ArrayPool<T>.Shared.Return(packed);
        }
    }

    /// <summary>Packs group gi's weight as the vector operand: dst[k·mp + channel] = W[g·M + channel, k], zero for the padding channels.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackWeight<T>(in ConvWindow v, T* w, int gi, T* dst, int mp)
        where T : unmanaged
    {
        int depth = v.Depth, m = v.OutPerGroup;
        for (int k = 0; k < depth; k++)
        {
            new Span<T>(dst + (long)k * mp + m, mp - m).Clear();
        }
        Copying.Transpose(w + (long)gi * m * depth, depth, dst, mp, m, depth);
    }

    /// <summary>Output pixels [p0, p1) of group gi, channel chunk ci: passes over the reduction in blocks, then the transposed store.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ForwardUnit<T>(in ConvWindow v, T* src, T* packed, int mp, int* taps, int* bases, int gi, int ci, int p0, int p1, T* dst, T* bias)
        where T : unmanaged
    {
        int chunk = Chunk<T>(), depth = v.Depth, count = p1 - p0;
        T[] accArray = ArrayPool<T>.Shared.Rent(PixelBlock * chunk + 64 / Unsafe.SizeOf<T>());
        try
        {
            fixed (T* accBase = accArray)
            {
                T* acc = (T*)(((nint)accBase + 63) & ~(nint)63);
                for (int k0 = 0; k0 < depth; k0 += DepthBlock)
                {
                    int kc = Math.Min(DepthBlock, depth - k0);
                    for (int t = 0; t < count; t += Rows)
                    {
                        Kernel(src, bases + p0 + t, taps + k0, kc, packed + (long)k0 * mp, mp, acc + t * chunk, k0 > 0);
                    }
                }
                // acc[r·chunk + channel] → dst[n, g·M + ci·chunk + channel, pixel], per channel along pixels (one image's run at a time).
                int m = v.OutPerGroup, channels = Math.Min(chunk, m - ci * chunk), pixels = v.Pixels;
                long image = (long)v.Groups * m * pixels;
                for (int r = 0; r < count;)
                {
                    int p = p0 + r, n = p / pixels, pix = p % pixels, run = Math.Min(count - r, pixels - pix);
                    T* d = dst + n * image + ((long)gi * m + ci * chunk) * pixels + pix;
                    T* a = acc + r * chunk;
                    Copying.Transpose(a, chunk, d, pixels, run, channels);
                    if (bias != null)
                    {
                        // The bias onto the stored run, still in cache: the bits of the convolution and a separate add.
                        Convolution.AddBias(d, pixels, run, bias + (long)gi * m + ci * chunk, channels);
                    }
                    r += run;
                }
            }
        }
        finally
        {
            ArrayPool<T>.Shared.Return(accArray);
        }
    }

    /// <summary>Whether <see cref="WeightGrad"/> can run (see <see cref="Supports{T}"/>): the tiles span the forward's output channels.</summary>
    public static bool SupportsWeightGrad<T>(in ConvGeometry g)
        where T : unmanaged
    {
        var v = ConvWindow.Forward(g);
        return Supports<T>(v, v.OutPerGroup) && (long)v.Batch * v.Pixels * Padded<T>(v.OutPerGroup) * v.Groups < int.MaxValue;
    }

    /// <summary>Where the automatic choice takes the weight gradient: as <see cref="Prefers{T}"/>.</summary>
    public static bool PrefersWeightGrad<T>(in ConvGeometry g)
        where T : unmanaged =>
        SupportsWeightGrad<T>(g) && LittlePadding<T>(g.OutChannels / g.Groups);

    /// <summary>
    /// gradW_g[channel, k] = Σ over output pixels t (ascending, n·OH·OW + i·OW + j) of dy[n, g·M + channel, i, j] ·
    /// src[tapOffset[k] + pixelBase[t]]: dy transposed once into dyᵀ [pixel, padded channel], then units of
    /// <see cref="ColumnBlock"/> reduction columns × one chunk of channels, each over the pixels in passes of
    /// <see cref="PixelPass"/>.
    /// </summary>
    public static void WeightGrad<T>(Parallelism threads, in ConvGeometry g, T* x, T* dy, T* dw)
        where T : unmanaged
    {
        var v = ConvWindow.Forward(g);
        int depth = v.Depth, m = v.OutPerGroup, mp = Padded<T>(m), chunk = Chunk<T>(), chunks = mp / chunk;
        int total = v.Batch * v.Pixels;
        T[] packed = ArrayPool<T>.Shared.Rent(checked(v.Groups * total * mp));
        try
        {
            fixed (T* pv = packed)
            {
                nint ppv = (nint)pv, pdy = (nint)dy, pd = (nint)dw;
                var window = v;
                long work = (long)total * mp * depth * v.Groups;
                ForUnits(threads, work, v.Groups * v.Batch,
                    i => PackDyT(window, (T*)pdy, i / window.Batch, i % window.Batch, (T*)ppv + (long)(i / window.Batch) * total * mp, mp));
                int block = UnitSize(depth, v.Groups * chunks, threads, ColumnBlock);
                int blocks = (depth + block - 1) / block;
                WithSource(threads, v, x, (s, pt, pb, plane) =>
                {
                    nint ps = (nint)s, ppt = (nint)pt, ppb = (nint)pb;
                    void Unit(int u)
                    {
                        int gi = u / (chunks * blocks), ci = u / blocks % chunks, b = u % blocks;
                        WeightUnit(window, (T*)ps + (long)gi * window.InPerGroup * plane, (T*)ppv + (long)gi * total * mp + ci * chunk, mp,
                            (int*)ppt, (int*)ppb, gi, ci, b * block, Math.Min(depth, (b + 1) * block), (T*)pd);
                    }
                    ForUnits(threads, work, window.Groups * chunks * blocks, Unit);
                });
            }
        }
        finally
        {
            ArrayPool<T>.Shared.Return(packed);
        }
    }

    /// <summary>dst[(n·OH·OW + pixel)·mp + channel] = dy[n, g·M + channel, pixel] for image n of group gi, zero for the padding channels.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackDyT<T>(in ConvWindow v, T* dy, int gi, int n, T* dst, int mp)
        where T : unmanaged
    {
        int m = v.OutPerGroup, pixels = v.Pixels;
        T* s = dy + ((long)n * v.Groups + gi) * m * pixels;
        T* d = dst + (long)n * pixels * mp;
        for (int pix = 0; pix < pixels; pix++)
        {
            new Span<T>(d + (long)pix * mp + m, mp - m).Clear();
        }
        Copying.Transpose(s, pixels, d, mp, m, pixels);
    }

    /// <summary>Reduction columns [k0, k1) of group gi, channel chunk ci: passes over the output pixels, then the transposed store into gradW.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WeightUnit<T>(in ConvWindow v, T* src, T* packed, int mp, int* taps, int* bases, int gi, int ci, int k0, int k1, T* dw)
        where T : unmanaged
    {
        int chunk = Chunk<T>(), depth = v.Depth, count = k1 - k0, total = v.Batch * v.Pixels;
        T[] accArray = ArrayPool<T>.Shared.Rent(ColumnBlock * chunk + 64 / Unsafe.SizeOf<T>());
        try
        {
            fixed (T* accBase = accArray)
            {
                T* acc = (T*)(((nint)accBase + 63) & ~(nint)63);
                for (int p0 = 0; p0 < total; p0 += PixelPass)
                {
                    int pc = Math.Min(PixelPass, total - p0);
                    for (int t = 0; t < count; t += Rows)
                    {
                        Kernel(src, taps + k0 + t, bases + p0, pc, packed + (long)p0 * mp, mp, acc + t * chunk, p0 > 0);
                    }
                }
                // acc[(k − k0)·chunk + channel] → gradW[g·M + ci·chunk + channel, k].
                int m = v.OutPerGroup, channels = Math.Min(chunk, m - ci * chunk);
                for (int c = 0; c < channels; c++)
                {
                    T* d = dw + ((long)gi * m + ci * chunk + c) * depth + k0;
                    for (int i = 0; i < count; i++)
                    {
                        d[i] = acc[i * chunk + c];
                    }
                }
            }
        }
        finally
        {
            ArrayPool<T>.Shared.Return(accArray);
        }
    }

    /// <summary>
    /// The <see cref="Rows"/> × chunk micro-kernel: acc[r·chunk + lane] (=, or += with
    /// <paramref name="accumulate"/>, continuing its FMA chain) Σ over steps s &lt; count of src[rowBase[r] + stepOffset[s]] ·
    /// v[s·ldv + lane], in ascending s. Rows past the caller's count read valid memory (the tables' spare copies) and
    /// are never stored. With <paramref name="into"/>, each row's chain (from zero) is instead added to into[r] (one
    /// rounded add per element; a null row is dropped), and acc is not used: the input gradient's scatter-add.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Kernel<T>(T* src, int* rowBase, int* stepOffset, int count, T* v, long ldv, T* acc, bool accumulate, T** into = null)
        where T : unmanaged
    {
        if (Wide)
        {
            Kernel512(src, rowBase, stepOffset, count, v, ldv, acc, accumulate, into);
        }
        else
        {
            Kernel256(src, rowBase, stepOffset, count, v, ldv, acc, accumulate, into);
        }
    }

    /// <summary><see cref="Kernel"/> with AVX-512: 6 × (4·Vector512).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel512<T>(T* src, int* rowBase, int* stepOffset, int count, T* v, long ldv, T* acc, bool accumulate, T** into)
        where T : unmanaged
    {
        int w = Vector512<T>.Count, ld = 4 * w;
        T* x0 = src + rowBase[0], x1 = src + rowBase[1], x2 = src + rowBase[2], x3 = src + rowBase[3], x4 = src + rowBase[4], x5 = src + rowBase[5];
        Vector512<T> c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33, c40, c41, c42, c43, c50, c51, c52, c53;
        if (accumulate)
        {
            c00 = Vector512.Load(acc); c01 = Vector512.Load(acc + w); c02 = Vector512.Load(acc + 2 * w); c03 = Vector512.Load(acc + 3 * w);
            c10 = Vector512.Load(acc + ld); c11 = Vector512.Load(acc + ld + w); c12 = Vector512.Load(acc + ld + 2 * w); c13 = Vector512.Load(acc + ld + 3 * w);
            c20 = Vector512.Load(acc + 2 * ld); c21 = Vector512.Load(acc + 2 * ld + w); c22 = Vector512.Load(acc + 2 * ld + 2 * w); c23 = Vector512.Load(acc + 2 * ld + 3 * w);
            c30 = Vector512.Load(acc + 3 * ld); c31 = Vector512.Load(acc + 3 * ld + w); c32 = Vector512.Load(acc + 3 * ld + 2 * w); c33 = Vector512.Load(acc + 3 * ld + 3 * w);
            c40 = Vector512.Load(acc + 4 * ld); c41 = Vector512.Load(acc + 4 * ld + w); c42 = Vector512.Load(acc + 4 * ld + 2 * w); c43 = Vector512.Load(acc + 4 * ld + 3 * w);
            c50 = Vector512.Load(acc + 5 * ld); c51 = Vector512.Load(acc + 5 * ld + w); c52 = Vector512.Load(acc + 5 * ld + 2 * w); c53 = Vector512.Load(acc + 5 * ld + 3 * w);
        }
        else
        {
            c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = c20 = c21 = c22 = c23 = default;
            c30 = c31 = c32 = c33 = c40 = c41 = c42 = c43 = c50 = c51 = c52 = c53 = default;
        }
        for (int s = 0; s < count; s++)
        {
            int o = stepOffset[s];
            var b0 = Vector512.Load(v);
            var b1 = Vector512.Load(v + w);
            var b2 = Vector512.Load(v + 2 * w);
            var b3 = Vector512.Load(v + 3 * w);
            var a = Vector512.Create(x0[o]);
            c00 = Fma512(a, b0, c00); c01 = Fma512(a, b1, c01); c02 = Fma512(a, b2, c02); c03 = Fma512(a, b3, c03);
            a = Vector512.Create(x1[o]);
            c10 = Fma512(a, b0, c10); c11 = Fma512(a, b1, c11); c12 = Fma512(a, b2, c12); c13 = Fma512(a, b3, c13);
            a = Vector512.Create(x2[o]);
            c20 = Fma512(a, b0, c20); c21 = Fma512(a, b1, c21); c22 = Fma512(a, b2, c22); c23 = Fma512(a, b3, c23);
            a = Vector512.Create(x3[o]);
            c30 = Fma512(a, b0, c30); c31 = Fma512(a, b1, c31); c32 = Fma512(a, b2, c32); c33 = Fma512(a, b3, c33);
            a = Vector512.Create(x4[o]);
            c40 = Fma512(a, b0, c40); c41 = Fma512(a, b1, c41); c42 = Fma512(a, b2, c42); c43 = Fma512(a, b3, c43);
            a = Vector512.Create(x5[o]);
            c50 = Fma512(a, b0, c50); c51 = Fma512(a, b1, c51); c52 = Fma512(a, b2, c52); c53 = Fma512(a, b3, c53);
            v += ldv;
        }
        if (into != null)
        {
            AddInto(into[0], w, c00, c01, c02, c03);
            AddInto(into[1], w, c10, c11, c12, c13);
            AddInto(into[2], w, c20, c21, c22, c23);
            AddInto(into[3], w, c30, c31, c32, c33);
            AddInto(into[4], w, c40, c41, c42, c43);
            AddInto(into[5], w, c50, c51, c52, c53);
            return;
        }
        c00.Store(acc); c01.Store(acc + w); c02.Store(acc + 2 * w); c03.Store(acc + 3 * w);
        c10.Store(acc + ld); c11.Store(acc + ld + w); c12.Store(acc + ld + 2 * w); c13.Store(acc + ld + 3 * w);
        c20.Store(acc + 2 * ld); c21.Store(acc + 2 * ld + w); c22.Store(acc + 2 * ld + 2 * w); c23.Store(acc + 2 * ld + 3 * w);
        c30.Store(acc + 3 * ld); c31.Store(acc + 3 * ld + w); c32.Store(acc + 3 * ld + 2 * w); c33.Store(acc + 3 * ld + 3 * w);
        c40.Store(acc + 4 * ld); c41.Store(acc + 4 * ld + w); c42.Store(acc + 4 * ld + 2 * w); c43.Store(acc + 4 * ld + 3 * w);
        c50.Store(acc + 5 * ld); c51.Store(acc + 5 * ld + w); c52.Store(acc + 5 * ld + 2 * w); c53.Store(acc + 5 * ld + 3 * w);
    }

    /// <summary>d[0, 4·w) += a row of the tile (one rounded add per element), unless d is null (a row with no destination).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddInto<T>(T* d, int w, Vector512<T> c0, Vector512<T> c1, Vector512<T> c2, Vector512<T> c3)
        where T : unmanaged
    {
        if (d == null)
        {
            return;
        }
        (Vector512.Load(d) + c0).Store(d);
        (Vector512.Load(d + w) + c1).Store(d + w);
        (Vector512.Load(d + 2 * w) + c2).Store(d + 2 * w);
        (Vector512.Load(d + 3 * w) + c3).Store(d + 3 * w);
    }

    /// <summary><see cref="Kernel"/> with AVX2 and FMA: 6 × (2·Vector256), the same chains as <see cref="Kernel512"/> lane for lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel256<T>(T* src, int* rowBase, int* stepOffset, int count, T* v, long ldv, T* acc, bool accumulate, T** into)
        where T : unmanaged
    {
        int w = Vector256<T>.Count, ld = 2 * w;
        T* x0 = src + rowBase[0], x1 = src + rowBase[1], x2 = src + rowBase[2], x3 = src + rowBase[3], x4 = src + rowBase[4], x5 = src + rowBase[5];
        Vector256<T> c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
        if (accumulate)
        {
            c00 = Vector256.Load(acc); c01 = Vector256.Load(acc + w);
            c10 = Vector256.Load(acc + ld); c11 = Vector256.Load(acc + ld + w);
            c20 = Vector256.Load(acc + 2 * ld); c21 = Vector256.Load(acc + 2 * ld + w);
            c30 = Vector256.Load(acc + 3 * ld); c31 = Vector256.Load(acc + 3 * ld + w);
            c40 = Vector256.Load(acc + 4 * ld); c41 = Vector256.Load(acc + 4 * ld + w);
            c50 = Vector256.Load(acc + 5 * ld); c51 = Vector256.Load(acc + 5 * ld + w);
        }
        else
        {
            c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = default;
        }
        for (int s = 0; s < count; s++)
        {
            int o = stepOffset[s];
            var b0 = Vector256.Load(v);
            var b1 = Vector256.Load(v + w);
            var a = Vector256.Create(x0[o]);
            c00 = Fma256(a, b0, c00); c01 = Fma256(a, b1, c01);
            a = Vector256.Create(x1[o]);
            c10 = Fma256(a, b0, c10); c11 = Fma256(a, b1, c11);
            a = Vector256.Create(x2[o]);
            c20 = Fma256(a, b0, c20); c21 = Fma256(a, b1, c21);
            a = Vector256.Create(x3[o]);
            c30 = Fma256(a, b0, c30); c31 = Fma256(a, b1, c31);
            a = Vector256.Create(x4[o]);
            c40 = Fma256(a, b0, c40); c41 = Fma256(a, b1, c41);
            a = Vector256.Create(x5[o]);
            c50 = Fma256(a, b0, c50); c51 = Fma256(a, b1, c51);
            v += ldv;
        }
        if (into != null)
        {
            AddInto(into[0], w, c00, c01);
            AddInto(into[1], w, c10, c11);
            AddInto(into[2], w, c20, c21);
            AddInto(into[3], w, c30, c31);
            AddInto(into[4], w, c40, c41);
            AddInto(into[5], w, c50, c51);
            return;
        }
        c00.Store(acc); c01.Store(acc + w);
        c10.Store(acc + ld); c11.Store(acc + ld + w);
        c20.Store(acc + 2 * ld); c21.Store(acc + 2 * ld + w);
        c30.Store(acc + 3 * ld); c31.Store(acc + 3 * ld + w);
        c40.Store(acc + 4 * ld); c41.Store(acc + 4 * ld + w);
        c50.Store(acc + 5 * ld); c51.Store(acc + 5 * ld + w);
    }

    /// <summary>d[0, 2·w) += a row of the 256-bit tile, unless d is null.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddInto<T>(T* d, int w, Vector256<T> c0, Vector256<T> c1)
        where T : unmanaged
    {
        if (d == null)
        {
            return;
        }
        (Vector256.Load(d) + c0).Store(d);
        (Vector256.Load(d + w) + c1).Store(d + w);
    }
}
