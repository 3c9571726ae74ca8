using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static Higher.Reference.Gemm;

namespace Higher.Reference;

/// <summary>
/// Direct convolution for a shallow reduction (AVX-512 only): the first layer of a conv net (1 or 3 input channels,
/// 3×3) has Cin·kh·kw = 9 or 27 terms per output element, too few for the implicit GEMM, whose 8×32 tile then does as
/// many multiply-adds per load and store of C and spends its time packing (and whose weight gradient transposes the
/// whole dy first). Here each image's Cin planes are first copied into a zero-padded scratch (OH + (kh - 1)·dh rows of
/// Wp = OW + (kw - 1)·dw), so that every tap of every output position is a plain unaligned load at a fixed offset,
/// and the kernels vectorize along the output width.
/// <para>
/// The forward (<see cref="Forward"/>) is output-stationary: a tile of <see cref="OB"/> output channels × 2 vectors
/// (along one output row, or one vector in each of two rows when a row fits one vector; a row's last vector masked)
/// keeps its accumulators in registers, each an FMA chain from zero over the taps in ascending (c, p, q) order with
/// the weight broadcast, and is stored once. The weight gradient (<see cref="WeightGrad"/>) walks each plane flat at
/// the stride Wp and keeps one vector of per-lane partial sums per weight (<see cref="OB"/> output channels × up to
/// <see cref="TB"/> taps in registers at a time, in a small buffer between images): each lane is one FMA chain over
/// the images of its chunk, then the flat positions, in ascending order; the lanes are then added in ascending
/// order, and the chunks' sums in ascending order. The input gradient of a layer with few input channels
/// (<see cref="InputGrad"/>) is the forward's kernels over dy, padded, with the weight transposed and flipped; a block of
/// one output channel tiles 4 rows × 2 vectors instead (<see cref="ForwardSingle"/>). Images, output channels and
/// chunks are shared out between threads, and every element's sum order depends on the geometry only, so results are
/// the same bits for any thread count.
/// </para>
/// </summary>
internal static unsafe class ConvDirect
{
    // Every loop that runs per tile or per row is AggressiveOptimization, as in Gemm and ConvGemm: tier-0 code would
    // otherwise run a fresh process's first calls several times slower.

    /// <summary>
    /// Deepest reduction (Cin·kh·kw) the direct path takes: its weight gradient was measured faster than the implicit
    /// GEMM's up to depth 45-50 on planes of 12×12 and more, and slower from 54 on; the forward stops earlier (see
    /// <see cref="PrefersForward"/>).
    /// </summary>
    public const int MaxDepth = 48;

    /// <summary>Output channels per tile of either kernel.</summary>
    private const int OB = 4;

    /// <summary>Most taps per register tile of the weight gradient (OB × TB accumulators).</summary>
    private const int TB = 4;

    /// <summary>Weight-gradient units (output-channel blocks × chunks of images) the chunking aims for.</summary>
    private const int TargetUnits = 8;

    // Below this many multiply-adds, forking costs more than it saves (the GEMM's threshold).
    private const long ParallelThreshold = 96L * 96 * 96;

    /// <summary>
    /// Whether the direct path runs this geometry: AVX-512, float or double, one group, stride 1 (any dilation and
    /// padding, negative included), and a reduction depth Cin·kh·kw of at most <see cref="MaxDepth"/>.
    /// </summary>
    public static bool Supports<T>(in ConvGeometry g)
        where T : unmanaged
    {
        long depth = (long)g.InChannels * g.KernelHeight * g.KernelWidth;
        return Vector512.IsHardwareAccelerated && Avx512F.IsSupported && (typeof(T) == typeof(float) || typeof(T) == typeof(double))
            && g.Groups == 1 && g.StrideHeight == 1 && g.StrideWidth == 1 && depth > 0 && depth <= MaxDepth
            && g.Batch > 0 && g.OutChannels > 0 && g.OutHeight > 0 && g.OutWidth > 0;
    }

    /// <summary>
    /// Whether the automatic choice takes the direct forward: depth at most 9 (3×3 over one channel: 1.2-1.8× faster
    /// than the implicit GEMM at every width measured, 5 to 40), or at most 27 where the output rows fill at least 70 %
    /// of their vectors' lanes (3×3 over 2-3 channels, 5×5 over one: 1.0-1.8× at widths 12-40; rows of 5 or 8 floats
    /// in one 16-lane vector were 0.7-0.9× from depth 18 on). Deeper, the implicit GEMM's packing is spread over
    /// enough terms that its full lanes win (0.6-1.0× at depth 36-63).
    /// </summary>
    public static bool PrefersForward<T>(in ConvGeometry g)
        where T : unmanaged
    {
        if (!Supports<T>(g))
        {
            return false;
        }
        int depth = g.InChannels * g.KernelHeight * g.KernelWidth, w = Vector512<T>.Count;
        long lanes = (long)(g.OutWidth + w - 1) / w * w;
        return depth <= 9 || (depth <= 27 && 10L * g.OutWidth >= 7 * lanes);
    }

    /// <summary>
    /// Whether the automatic choice takes the direct weight gradient: depth at most 9 (1.0-2.6× faster than the
    /// implicit GEMM, which transposes the whole dy, at widths 5-40), or any depth up to <see cref="MaxDepth"/> where a
    /// flat plane is at least 8 vectors (12×12 outputs and more: 1.0-2.1× at depth 18-50; 5×5 and 8×8 planes, 3 and 5
    /// vectors, were 0.5-1.0×, their accumulators loaded and stored per image over too few vectors).
    /// </summary>
    public static bool PrefersWeightGrad<T>(in ConvGeometry g)
        where T : unmanaged =>
        Supports<T>(g) && (g.InChannels * g.KernelHeight * g.KernelWidth <= 9 || FlatVectors<T>(g) >= 8);

    /// <summary>Most input channels the direct input gradient takes (its output channels; with more, im2col's GEMM has enough rows).</summary>
    public const int MaxInputGradChannels = 4;

    /// <summary>Deepest reduction O·kh·kw the direct input gradient takes (its tap table is one int per term).</summary>
    public const int MaxInputGradDepth = 4096;

    /// <summary>
    /// Whether the direct input gradient runs this geometry: as <see cref="Supports"/> but with the reduction over the
    /// output channels, O·kh·kw at most <see cref="MaxInputGradDepth"/>, and at most <see cref="MaxInputGradChannels"/>
    /// input channels.
    /// </summary>
    public static bool SupportsInputGrad<T>(in ConvGeometry g)
        where T : unmanaged
    {
        long depth = (long)g.OutChannels * g.KernelHeight * g.KernelWidth;
        return Vector512.IsHardwareAccelerated && Avx512F.IsSupported && (typeof(T) == typeof(float) || typeof(T) == typeof(double))
            && g.Groups == 1 && g.StrideHeight == 1 && g.StrideWidth == 1 && depth > 0 && depth <= MaxInputGradDepth
            && g.InChannels > 0 && g.InChannels <= MaxInputGradChannels
            && g.Batch > 0 && g.InHeight > 0 && g.InWidth > 0 && g.OutHeight > 0 && g.OutWidth > 0;
    }

    /// <summary>
    /// Whether the automatic choice takes the direct input gradient: a reduction O·kh·kw of at most 144 (8 or 16 output
    /// channels, 3×3) over input rows of at least 12: 1.0-2.1× faster than im2col + GEMM + col2im, whose GEMM then has
    /// only Cin·kh·kw rows and little depth. With 64 output channels it was slower (0.5-0.8×: one output channel has each
    /// load of dy feed one multiply-add, from a padded dy of 64 planes that no longer fits L1), as on rows of 7.
    /// </summary>
    public static bool PrefersInputGrad<T>(in ConvGeometry g)
        where T : unmanaged =>
        SupportsInputGrad<T>(g) && (long)g.OutChannels * g.KernelHeight * g.KernelWidth <= 144 && g.InWidth >= 12;

    /// <summary>Rows of the padded scratch: OH + (kh - 1)·dh.</summary>
    private static int PaddedHeight(in ConvGeometry g) => g.OutHeight + (g.KernelHeight - 1) * g.DilationHeight;

    /// <summary>Columns of the padded scratch (also its row stride): OW + (kw - 1)·dw.</summary>
    private static int PaddedWidth(in ConvGeometry g) => g.OutWidth + (g.KernelWidth - 1) * g.DilationWidth;

    /// <summary>Elements of one image's padded scratch, plus a vector of zeros after it for the unmasked loads of a row's last vector.</summary>
    private static int PaddedLength<T>(in ConvGeometry g)
        where T : unmanaged =>
        checked(g.InChannels * PaddedHeight(g) * PaddedWidth(g) + Vector512<T>.Count);

    /// <summary>offsets[(c·kh + p)·kw + q] = c·plane + p·dh·Wp + q·dw: tap (c, p, q)'s offset in the padded scratch from the output position.</summary>
    private static void TapOffsets(in ConvGeometry g, int* offsets)
    {
        int wp = PaddedWidth(g), plane = PaddedHeight(g) * wp, k = 0;
        for (int c = 0; c < g.InChannels; c++)
        {
            for (int p = 0; p < g.KernelHeight; p++)
            {
                for (int q = 0; q < g.KernelWidth; q++)
                {
                    offsets[k++] = c * plane + p * g.DilationHeight * wp + q * g.DilationWidth;
                }
            }
        }
    }

    /// <summary>
    /// dst[c, r, s] = x[c, r - padTop, s - padLeft] (0 outside x) for the padded rows and columns of one image, then
    /// the vector of zeros after the last plane. Masked loads and stores: x is never read outside a row's valid columns.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Pad<T>(in ConvGeometry g, T* x, T* dst)
        where T : unmanaged
    {
        int h = g.InHeight, wIn = g.InWidth, hp = PaddedHeight(g), wp = PaddedWidth(g), w = Vector512<T>.Count;
        // Padded columns [sLo, sHi) hold x's columns sLo - padLeft ...
        int sLo = Math.Clamp(g.PadLeft, 0, wp), sHi = Math.Clamp(wIn + g.PadLeft, sLo, wp);
        long plane = (long)h * wIn;
        T* d = dst;
        for (int c = 0; c < g.InChannels; c++)
        {
            for (int r = 0; r < hp; r++, d += wp)
            {
                int hr = r - g.PadTop;
                bool inside = (uint)hr < (uint)h;
                T* s = x + c * plane + (inside ? (long)hr * wIn : 0) - g.PadLeft;
                for (int l = 0; l < wp; l += w)
                {
                    var store = ConvGemm.LaneMask<T>(0, wp - l);
                    var value = inside ? MaskedLoad(s + l, ConvGemm.LaneMask<T>(sLo - l, sHi - l)) : Vector512<T>.Zero;
                    MaskedStore(d + l, store, value);
                }
            }
        }
        Vector512<T>.Zero.Store(d);
    }

    /// <summary>Lanes [0, count) set.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<T> LaneMask<T>(int count)
        where T : unmanaged
    {
        if (typeof(T) == typeof(float))
        {
            return Vector512.LessThan(Vector512<int>.Indices, Vector512.Create(count)).As<int, T>();
        }
        return Vector512.LessThan(Vector512<long>.Indices, Vector512.Create((long)count)).As<long, T>();
    }

    /// <summary>How many tasks to share units out to: one below the parallel threshold, else up to 4 per thread.</summary>
    private static int Tasks(Parallelism threads, long units, long work) =>
        threads.Enabled && work >= ParallelThreshold ? (int)Math.Min(units, 4L * threads.MaxDegree) : 1;

    /// <summary>y = conv(x, w) for a geometry <see cref="Supports"/> accepts.</summary>
    public static void Forward<T>(Parallelism threads, in ConvGeometry g, T* x, T* w, T* y, T* bias = null)
        where T : unmanaged =>
        Run(threads, g, x, w, transposedFlipped: false, y, bias);

    /// <summary>
    /// gradX = the transposed convolution of dy for a geometry <see cref="SupportsInputGrad"/> accepts: the forward
    /// kernels over the window <see cref="InputGradWindow"/> of dy, with the weight transposed and flipped.
    /// </summary>
    public static void InputGrad<T>(Parallelism threads, in ConvGeometry g, T* dy, T* w, T* dx)
        where T : unmanaged =>
        Run(threads, InputGradWindow(g), dy, w, transposedFlipped: true, dx);

    /// <summary>
    /// The input gradient of a stride-1 convolution as a forward one over dy (as <see cref="ConvWindow.InputGrad"/>):
    /// gradX[n, c, h, w] = Σ_o Σ_p' Σ_q' dy[n, o, h + p'·dh - padTop', w + q'·dw - padLeft']·W[o, c, kh - 1 - p', kw - 1 - q']
    /// with padTop' = (kh - 1)·dh - padTop and padLeft' = (kw - 1)·dw - padLeft; its input channels are the O of the
    /// convolution, its output channels the C.
    /// </summary>
    private static ConvGeometry InputGradWindow(in ConvGeometry g) => new(
        g.Batch, g.OutChannels, g.OutHeight, g.OutWidth, g.InChannels, g.KernelHeight, g.KernelWidth, g.InHeight, g.InWidth,
        1, 1, (g.KernelHeight - 1) * g.DilationHeight - g.PadTop, (g.KernelWidth - 1) * g.DilationWidth - g.PadLeft,
        g.DilationHeight, g.DilationWidth, 1);

    /// <summary>
    /// The forward over window v (src [N, v.C, v.H, v.W] to dst [N, v.O, v.OH, v.OW]): the weights packed per block of
    /// <see cref="OB"/> output channels, then units of one image × one block shared out between threads.
    /// </summary>
    private static void Run<T>(Parallelism threads, in ConvGeometry v, T* src, T* w, bool transposedFlipped, T* dst, T* bias = null)
        where T : unmanaged
    {
        int depth = v.InChannels * v.KernelHeight * v.KernelWidth, oBlocks = (v.OutChannels + OB - 1) / OB;
        T[] packedArray = ArrayPool<T>.Shared.Rent(checked(oBlocks * depth * OB));
        int[] offsetArray = ArrayPool<int>.Shared.Rent(depth);
        try
        {
            fixed (T* packed = packedArray)
            fixed (int* offsets = offsetArray)
            {
                TapOffsets(v, offsets);
                PackWeights(v, w, transposedFlipped, packed);
                long units = (long)v.Batch * oBlocks;
                int tasks = Tasks(threads, units, v.OutputLength * depth);
                if (tasks == 1)
                {
                    ForwardUnits(v, src, packed, offsets, dst, bias, 0, units);
                    return;
                }
                nint ps = (nint)src, pp = (nint)packed, po = (nint)offsets, pd = (nint)dst, pb = (nint)bias;
                var window = v;
                threads.For(0, tasks, t => ForwardUnits(window, (T*)ps, (T*)pp, (int*)po, (T*)pd, (T*)pb, units * t / tasks, units * (t + 1) / tasks));
            }
        }
        finally
        {
            ArrayPool<T>.Shared.Return(packedArray);
            ArrayPool<int>.Shared.Return(offsetArray);
        }
    }

    /// <summary>
    /// packed[(b·depth + k)·OB + r] = A[b·OB + r, k], zero past the last output channel: a tile's weights in the order it
    /// broadcasts them. A is the forward's W [O, C·kh·kw], or for the input gradient's window (<paramref name="transposedFlipped"/>)
    /// A[c, (o·kh + p')·kw + q'] = W[o, c, kh - 1 - p', kw - 1 - q'].
    /// </summary>
    private static void PackWeights<T>(in ConvGeometry v, T* w, bool transposedFlipped, T* packed)
        where T : unmanaged
    {
        int depth = v.InChannels * v.KernelHeight * v.KernelWidth, oBlocks = (v.OutChannels + OB - 1) / OB;
        int taps = v.KernelHeight * v.KernelWidth;
        for (int o = 0; o < oBlocks * OB; o++)
        {
            T* dst = packed + (long)(o / OB) * depth * OB + o % OB;
            for (int k = 0; k < depth; k++)
            {
                T value = default;
                if (o < v.OutChannels && !transposedFlipped)
                {
                    value = w[(long)o * depth + k];
                }
                else if (o < v.OutChannels)
                {
                    // Row o is the convolution's input channel, k = (its output channel, flipped tap); its W is [v.C, v.O, kh, kw].
                    int outChannel = k / taps, tap = k % taps;
                    value = w[((long)outChannel * v.OutChannels + o) * taps + taps - 1 - tap];
                }
                dst[(long)k * OB] = value;
            }
        }
    }

    /// <summary>Forward units [u0, u1) (unit u: image u / blocks, block u % blocks of <see cref="OB"/> output channels), with the task's own padded scratch.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ForwardUnits<T>(in ConvGeometry g, T* x, T* packed, int* offsets, T* y, T* bias, long u0, long u1)
        where T : unmanaged
    {
        int depth = g.InChannels * g.KernelHeight * g.KernelWidth, oBlocks = (g.OutChannels + OB - 1) / OB;
        long inImage = (long)g.InChannels * g.InHeight * g.InWidth, pixels = (long)g.OutHeight * g.OutWidth, outImage = g.OutChannels * pixels;
        T[] paddedArray = ArrayPool<T>.Shared.Rent(PaddedLength<T>(g));
        try
        {
            fixed (T* padded = paddedArray)
            {
                long image = -1;
                for (long u = u0; u < u1; u++)
                {
                    long n = u / oBlocks;
                    int block = (int)(u % oBlocks);
                    if (n != image)
                    {
                        Pad(g, x + n * inImage, padded);
                        image = n;
                    }
                    int o0 = block * OB;
                    T* weights = packed + (long)block * depth * OB;
                    T* dst = y + n * outImage + o0 * pixels;
                    int rows = Math.Min(OB, g.OutChannels - o0);
                    switch (rows)
                    {
                        case 1: ForwardSingle(g, padded, offsets, weights, depth, dst); break;
                        case 2: ForwardRows<T, V2>(g, padded, offsets, weights, depth, dst); break;
                        case 3: ForwardRows<T, V3>(g, padded, offsets, weights, depth, dst); break;
                        default: ForwardRows<T, V4>(g, padded, offsets, weights, depth, dst); break;
                    }
                    if (bias != null)
                    {
                        Convolution.AddBias(dst, pixels, pixels, bias + o0, rows);
                    }
                }
            }
        }
        finally
        {
            ArrayPool<T>.Shared.Return(paddedArray);
        }
    }

    /// <summary>
    /// Every output row of a block of one channel (the input gradient of a 1-channel layer, or the last block of a
    /// forward): tiles of up to 4 rows × 2 vectors, so that a tile has up to 8 independent chains where one of 1 channel ×
    /// 2 vectors would have 2; each element's chain is the same as in <see cref="ForwardTile"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ForwardSingle<T>(in ConvGeometry g, T* padded, int* offsets, T* weights, int depth, T* dst)
        where T : unmanaged
    {
        int oh = g.OutHeight, ow = g.OutWidth, wp = PaddedWidth(g), w = Vector512<T>.Count;
        int vectors = (ow + w - 1) / w;
        for (int i = 0; i < oh; i += 4)
        {
            int rows = Math.Min(4, oh - i);
            T* src = padded + (long)i * wp;
            T* row = dst + (long)i * ow;
            for (int v = 0; v < vectors; v += 2)
            {
                int count = Math.Min(2, vectors - v);
                int tail1 = ow - (v + count - 1) * w, tail0 = count == 2 ? w : tail1;
                T* s = src + v * w;
                T* d = row + v * w;
                if (count == 2)
                {
                    switch (rows)
                    {
                        case 1: ForwardRowTile<T, V1, V2>(s, wp, offsets, weights, depth, d, ow, tail0, tail1); break;
                        case 2: ForwardRowTile<T, V2, V2>(s, wp, offsets, weights, depth, d, ow, tail0, tail1); break;
                        case 3: ForwardRowTile<T, V3, V2>(s, wp, offsets, weights, depth, d, ow, tail0, tail1); break;
                        default: ForwardRowTile<T, V4, V2>(s, wp, offsets, weights, depth, d, ow, tail0, tail1); break;
                    }
                }
                else
                {
                    switch (rows)
                    {
                        case 1: ForwardRowTile<T, V1, V1>(s, wp, offsets, weights, depth, d, ow, tail0, tail1); break;
                        case 2: ForwardRowTile<T, V2, V1>(s, wp, offsets, weights, depth, d, ow, tail0, tail1); break;
                        case 3: ForwardRowTile<T, V3, V1>(s, wp, offsets, weights, depth, d, ow, tail0, tail1); break;
                        default: ForwardRowTile<T, V4, V1>(s, wp, offsets, weights, depth, d, ow, tail0, tail1); break;
                    }
                }
            }
        }
    }

    /// <summary>
    /// dst[r·dstRow + lane] = Σ_k weights[k·OB]·src[offsets[k] + r·srcRow + lane] for rows r &lt; TR and the lanes of TV
    /// vectors along the row (the last one's lanes from its tail on not written): one FMA chain from zero per element in
    /// ascending k, one output channel.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ForwardRowTile<T, TR, TV>(T* src, long srcRow, int* offsets, T* weights, int depth, T* dst, long dstRow, int tail0, int tail1)
        where T : unmanaged
        where TR : struct, ICount
        where TV : struct, ICount
    {
        int w = Vector512<T>.Count, rows = TR.Value;
        bool two = TV.Value > 1;
        Vector512<T> a00 = default, a01 = default, a10 = default, a11 = default, a20 = default, a21 = default, a30 = default, a31 = default;
        for (int k = 0; k < depth; k++, weights += OB)
        {
            T* s = src + offsets[k];
            var b = Vector512.Create(weights[0]);
            a00 = Fma512(b, Vector512.Load(s), a00);
            if (two)
            {
                a01 = Fma512(b, Vector512.Load(s + w), a01);
            }
            if (rows > 1)
            {
                a10 = Fma512(b, Vector512.Load(s + srcRow), a10);
                if (two)
                {
                    a11 = Fma512(b, Vector512.Load(s + srcRow + w), a11);
                }
            }
            if (rows > 2)
            {
                a20 = Fma512(b, Vector512.Load(s + 2 * srcRow), a20);
                if (two)
                {
                    a21 = Fma512(b, Vector512.Load(s + 2 * srcRow + w), a21);
                }
            }
            if (rows > 3)
            {
                a30 = Fma512(b, Vector512.Load(s + 3 * srcRow), a30);
                if (two)
                {
                    a31 = Fma512(b, Vector512.Load(s + 3 * srcRow + w), a31);
                }
            }
        }
        var mask0 = LaneMask<T>(tail0);
        var mask1 = LaneMask<T>(tail1);
        StoreRow(dst, w, two, mask0, mask1, a00, a01);
        if (rows > 1)
        {
            StoreRow(dst + dstRow, w, two, mask0, mask1, a10, a11);
        }
        if (rows > 2)
        {
            StoreRow(dst + 2 * dstRow, w, two, mask0, mask1, a20, a21);
        }
        if (rows > 3)
        {
            StoreRow(dst + 3 * dstRow, w, two, mask0, mask1, a30, a31);
        }
    }

    /// <summary>
    /// Every output row of TO channels of one image: tiles of 2 vectors along the row, the last tile 1 or 2 with its last
    /// vector's tail masked; rows of one vector go in pairs instead (the two vectors of a tile in consecutive rows), so
    /// that a tile still has 2·TO independent chains.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ForwardRows<T, TO>(in ConvGeometry g, T* padded, int* offsets, T* weights, int depth, T* dst)
        where T : unmanaged
        where TO : struct, ICount
    {
        int oh = g.OutHeight, ow = g.OutWidth, wp = PaddedWidth(g), w = Vector512<T>.Count;
        int vectors = (ow + w - 1) / w;
        long pixels = (long)oh * ow;
        if (vectors == 1)
        {
            int i = 0;
            for (; i + 2 <= oh; i += 2)
            {
                ForwardTile<T, TO, V2>(padded + (long)i * wp, wp, offsets, weights, depth, dst + (long)i * ow, ow, pixels, ow, ow);
            }
            if (i < oh)
            {
                ForwardTile<T, TO, V1>(padded + (long)i * wp, 0, offsets, weights, depth, dst + (long)i * ow, 0, pixels, ow, ow);
            }
            return;
        }
        for (int i = 0; i < oh; i++)
        {
            T* src = padded + (long)i * wp;
            T* row = dst + (long)i * ow;
            int v = 0;
            for (; v + 2 <= vectors; v += 2)
            {
                int tail = v + 2 == vectors ? ow - (v + 1) * w : w;
                ForwardTile<T, TO, V2>(src + v * w, w, offsets, weights, depth, row + v * w, w, pixels, w, tail);
            }
            if (v < vectors)
            {
                ForwardTile<T, TO, V1>(src + v * w, 0, offsets, weights, depth, row + v * w, 0, pixels, ow - v * w, ow - v * w);
            }
        }
    }

    /// <summary>
    /// dst[r·plane + lane] = Σ_k weights[k·OB + r]·src[offsets[k] + lane] for r &lt; TO and the lanes of TV vectors (the
    /// second at src + srcStep, dst + dstStep), lanes from tail0 (tail1) on not written: one FMA chain from zero per
    /// element in ascending k.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ForwardTile<T, TO, TV>(T* src, long srcStep, int* offsets, T* weights, int depth, T* dst, long dstStep, long plane, int tail0, int tail1)
        where T : unmanaged
        where TO : struct, ICount
        where TV : struct, ICount
    {
        int outs = TO.Value;
        bool two = TV.Value > 1;
        Vector512<T> a00 = default, a01 = default, a10 = default, a11 = default, a20 = default, a21 = default, a30 = default, a31 = default;
        for (int k = 0; k < depth; k++, weights += OB)
        {
            T* s = src + offsets[k];
            var x0 = Vector512.Load(s);
            var x1 = two ? Vector512.Load(s + srcStep) : default;
            var b = Vector512.Create(weights[0]);
            a00 = Fma512(b, x0, a00);
            if (two)
            {
                a01 = Fma512(b, x1, a01);
            }
            if (outs > 1)
            {
                b = Vector512.Create(weights[1]);
                a10 = Fma512(b, x0, a10);
                if (two)
                {
                    a11 = Fma512(b, x1, a11);
                }
            }
            if (outs > 2)
            {
                b = Vector512.Create(weights[2]);
                a20 = Fma512(b, x0, a20);
                if (two)
                {
                    a21 = Fma512(b, x1, a21);
                }
            }
            if (outs > 3)
            {
                b = Vector512.Create(weights[3]);
                a30 = Fma512(b, x0, a30);
                if (two)
                {
                    a31 = Fma512(b, x1, a31);
                }
            }
        }
        var mask0 = LaneMask<T>(tail0);
        var mask1 = LaneMask<T>(tail1);
        StoreRow(dst, dstStep, two, mask0, mask1, a00, a01);
        if (outs > 1)
        {
            StoreRow(dst + plane, dstStep, two, mask0, mask1, a10, a11);
        }
        if (outs > 2)
        {
            StoreRow(dst + 2 * plane, dstStep, two, mask0, mask1, a20, a21);
        }
        if (outs > 3)
        {
            StoreRow(dst + 3 * plane, dstStep, two, mask0, mask1, a30, a31);
        }
    }

    /// <summary>Stores one tile row: v0 under mask0 (and v1 at dst + step under mask1 when <paramref name="two"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow<T>(T* dst, long step, bool two, Vector512<T> mask0, Vector512<T> mask1, Vector512<T> v0, Vector512<T> v1)
        where T : unmanaged
    {
        MaskedStore(dst, mask0, v0);
        if (two)
        {
            MaskedStore(dst + step, mask1, v1);
        }
    }

    /// <summary>
    /// gradW[o, c, p, q] = Σ_n Σ_i Σ_j dy[n, o, i, j]·x[n, c, i + p·dh - padTop, j + q·dw - padLeft] for a geometry
    /// <see cref="Supports"/> accepts. Each plane is walked flat at the padded row stride Wp: output position i·Wp + j
    /// with j &lt; OW, so that a row's end wastes only the (kw - 1)·dw columns past OW (dy is copied into a scratch of
    /// that stride with zeros there, and x's loads are masked off there, so no product outside the sum is formed).
    /// </summary>
    public static void WeightGrad<T>(Parallelism threads, in ConvGeometry g, T* x, T* dy, T* dw)
        where T : unmanaged
    {
        int depth = g.InChannels * g.KernelHeight * g.KernelWidth, oBlocks = (g.OutChannels + OB - 1) / OB, w = Vector512<T>.Count;
        int* offsets = stackalloc int[MaxDepth];
        TapOffsets(g, offsets);
        // Few output-channel blocks leave too little to share out: the images are then cut into a number of chunks
        // fixed by the geometry, each with its own partial sums.
        int chunks = oBlocks >= TargetUnits ? 1 : Math.Min(g.Batch, (TargetUnits + oBlocks - 1) / oBlocks);
        long weights = (long)g.OutChannels * depth;
        int vectors = FlatVectors<T>(g);
        // partial[((chunk·O + o)·depth + k)·lanes + lane]: lane's share of chunk's sum for weight (o, k).
        T[] partialArray = ArrayPool<T>.Shared.Rent(checked((int)(chunks * weights * w)));
        T[] maskArray = ArrayPool<T>.Shared.Rent(checked(vectors * w));
        try
        {
            fixed (T* partials = partialArray)
            fixed (T* masks = maskArray)
            {
                new Span<T>(partials, (int)(chunks * weights * w)).Clear();
                FlatMasks(g, masks, vectors);
                long units = (long)chunks * oBlocks;
                int tasks = Tasks(threads, units, g.OutputLength * depth);
                if (tasks == 1)
                {
                    WeightUnits(g, x, dy, offsets, masks, partials, chunks, 0, units);
                }
                else
                {
                    nint px = (nint)x, pdy = (nint)dy, po = (nint)offsets, pm = (nint)masks, pp = (nint)partials;
                    var geometry = g;
                    threads.For(0, tasks, t => WeightUnits(geometry, (T*)px, (T*)pdy, (int*)po, (T*)pm, (T*)pp, chunks, units * t / tasks, units * (t + 1) / tasks));
                }
                for (long e = 0; e < weights; e++)
                {
                    T sum = default;
                    for (int c = 0; c < chunks; c++)
                    {
                        T* lanes = partials + (c * weights + e) * w;
                        T chunkSum = lanes[0];
                        for (int l = 1; l < w; l++)
                        {
                            chunkSum = Add(chunkSum, lanes[l]);
                        }
                        sum = c == 0 ? chunkSum : Add(sum, chunkSum);
                    }
                    dw[e] = sum;
                }
            }
        }
        finally
        {
            ArrayPool<T>.Shared.Return(partialArray);
            ArrayPool<T>.Shared.Return(maskArray);
        }
    }

    /// <summary>Vectors covering a flat output plane at the padded stride: ⌈OH·Wp / lanes⌉.</summary>
    private static int FlatVectors<T>(in ConvGeometry g)
        where T : unmanaged =>
        checked((int)(((long)g.OutHeight * PaddedWidth(g) + Vector512<T>.Count - 1) / Vector512<T>.Count));

    /// <summary>masks[v·lanes + lane] all ones where flat position P = v·lanes + lane is an output (P &lt; OH·Wp and P mod Wp &lt; OW), else zero.</summary>
    private static void FlatMasks<T>(in ConvGeometry g, T* masks, int vectors)
        where T : unmanaged
    {
        int wp = PaddedWidth(g);
        var table = new Span<T>(masks, vectors * Vector512<T>.Count);
        table.Clear();
        T ones = Vector512<T>.AllBitsSet.ToScalar();
        for (int i = 0; i < g.OutHeight; i++)
        {
            table.Slice(i * wp, g.OutWidth).Fill(ones);
        }
    }

    /// <summary>
    /// Weight-gradient units [u0, u1) (unit u: chunk u / blocks of the images, block u % blocks of <see cref="OB"/>
    /// output channels): per image of the chunk, padded once into the task's scratch, every block of the range copies
    /// its dy planes to the flat stride and adds its terms to its partial sums.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WeightUnits<T>(in ConvGeometry g, T* x, T* dy, int* offsets, T* masks, T* partials, int chunks, long u0, long u1)
        where T : unmanaged
    {
        int depth = g.InChannels * g.KernelHeight * g.KernelWidth, oBlocks = (g.OutChannels + OB - 1) / OB, w = Vector512<T>.Count;
        long inImage = (long)g.InChannels * g.InHeight * g.InWidth, pixels = (long)g.OutHeight * g.OutWidth, outImage = g.OutChannels * pixels;
        long weights = (long)g.OutChannels * depth;
        int vectors = FlatVectors<T>(g), flat = vectors * w;
        T[] paddedArray = ArrayPool<T>.Shared.Rent(PaddedLength<T>(g));
        T[] dyArray = ArrayPool<T>.Shared.Rent(checked(OB * flat));
        try
        {
            fixed (T* padded = paddedArray)
            fixed (T* dyFlat = dyArray)
            {
                // The columns past OW and the tail past OH·Wp stay zero: Flatten writes only the outputs' positions.
                new Span<T>(dyFlat, OB * flat).Clear();
                for (long u = u0; u < u1;)
                {
                    int chunk = (int)(u / oBlocks), b0 = (int)(u % oBlocks), b1 = (int)Math.Min(oBlocks, b0 + (u1 - u));
                    int n0 = (int)((long)g.Batch * chunk / chunks), n1 = (int)((long)g.Batch * (chunk + 1) / chunks);
                    for (int n = n0; n < n1; n++)
                    {
                        Pad(g, x + n * inImage, padded);
                        for (int block = b0; block < b1; block++)
                        {
                            int o0 = block * OB, outs = Math.Min(OB, g.OutChannels - o0);
                            Flatten(g, dy + n * outImage + o0 * pixels, outs, dyFlat, flat);
                            T* acc = partials + (chunk * weights + (long)o0 * depth) * w;
                            switch (outs)
                            {
                                case 1: WeightTaps<T, V1>(padded, offsets, depth, dyFlat, flat, masks, vectors, acc); break;
                                case 2: WeightTaps<T, V2>(padded, offsets, depth, dyFlat, flat, masks, vectors, acc); break;
                                case 3: WeightTaps<T, V3>(padded, offsets, depth, dyFlat, flat, masks, vectors, acc); break;
                                default: WeightTaps<T, V4>(padded, offsets, depth, dyFlat, flat, masks, vectors, acc); break;
                            }
                        }
                    }
                    u += b1 - b0;
                }
            }
        }
        finally
        {
            ArrayPool<T>.Shared.Return(paddedArray);
            ArrayPool<T>.Shared.Return(dyArray);
        }
    }

    /// <summary>dst[b·flat + i·Wp + j] = dy[b, i, j] for b &lt; outs, j &lt; OW: each plane at the padded stride (the other positions are left as they are, zero).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Flatten<T>(in ConvGeometry g, T* dy, int outs, T* dst, int flat)
        where T : unmanaged
    {
        int oh = g.OutHeight, ow = g.OutWidth, wp = PaddedWidth(g), w = Vector512<T>.Count;
        long pixels = (long)oh * ow;
        for (int l = 0; l < ow; l += w)
        {
            var mask = LaneMask<T>(ow - l);
            for (int b = 0; b < outs; b++)
            {
                T* s = dy + b * pixels + l;
                T* d = dst + (long)b * flat + l;
                for (int i = 0; i < oh; i++, s += ow, d += wp)
                {
                    MaskedStore(d, mask, MaskedLoad(s, mask));
                }
            }
        }
    }

    /// <summary>One image's terms for TO output channels: the taps in blocks of at most <see cref="TB"/>, as equal as they come.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WeightTaps<T, TO>(T* padded, int* offsets, int depth, T* dyFlat, int flat, T* masks, int vectors, T* acc)
        where T : unmanaged
        where TO : struct, ICount
    {
        int blocks = (depth + TB - 1) / TB, w = Vector512<T>.Count;
        for (int b = 0; b < blocks; b++)
        {
            int k0 = depth * b / blocks, k1 = depth * (b + 1) / blocks;
            T* a = acc + (long)k0 * w;
            switch (k1 - k0)
            {
                case 1: WeightTile<T, TO, V1>(padded, offsets + k0, dyFlat, flat, masks, vectors, a, depth); break;
                case 2: WeightTile<T, TO, V2>(padded, offsets + k0, dyFlat, flat, masks, vectors, a, depth); break;
                case 3: WeightTile<T, TO, V3>(padded, offsets + k0, dyFlat, flat, masks, vectors, a, depth); break;
                default: WeightTile<T, TO, V4>(padded, offsets + k0, dyFlat, flat, masks, vectors, a, depth); break;
            }
        }
    }

    /// <summary>
    /// acc[(r·depth + t)·lanes + lane] += Σ dyFlat[r·flat + P]·padded[offsets[t] + P] for r &lt; TO, t &lt; TK, over the
    /// lane's flat positions P (P mod lanes = lane) in ascending order: FMA chains continuing the accumulators; x's loads
    /// are masked to the output positions, so the columns past OW add exact zeros.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WeightTile<T, TO, TK>(T* padded, int* offsets, T* dyFlat, long flat, T* masks, int vectors, T* acc, int depth)
        where T : unmanaged
        where TO : struct, ICount
        where TK : struct, ICount
    {
        int w = Vector512<T>.Count, outs = TO.Value, taps = TK.Value;
        long ld = (long)depth * w;
        Vector512<T> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default;
        Vector512<T> a20 = default, a21 = default, a22 = default, a23 = default, a30 = default, a31 = default, a32 = default, a33 = default;
        Load4(acc, w, taps, ref a00, ref a01, ref a02, ref a03);
        if (outs > 1)
        {
            Load4(acc + ld, w, taps, ref a10, ref a11, ref a12, ref a13);
        }
        if (outs > 2)
        {
            Load4(acc + 2 * ld, w, taps, ref a20, ref a21, ref a22, ref a23);
        }
        if (outs > 3)
        {
            Load4(acc + 3 * ld, w, taps, ref a30, ref a31, ref a32, ref a33);
        }
        T* s0 = padded + offsets[0];
        T* s1 = taps > 1 ? padded + offsets[1] : s0;
        T* s2 = taps > 2 ? padded + offsets[2] : s0;
        T* s3 = taps > 3 ? padded + offsets[3] : s0;
        T* d = dyFlat;
        long end = (long)vectors * w;
        for (long p = 0; p < end; p += w, d += w)
        {
            var mask = Vector512.Load(masks + p);
            var x0 = MaskedLoad(s0 + p, mask);
            var x1 = taps > 1 ? MaskedLoad(s1 + p, mask) : default;
            var x2 = taps > 2 ? MaskedLoad(s2 + p, mask) : default;
            var x3 = taps > 3 ? MaskedLoad(s3 + p, mask) : default;
            var d0 = Vector512.Load(d);
            a00 = Fma512(d0, x0, a00);
            if (taps > 1)
            {
                a01 = Fma512(d0, x1, a01);
            }
            if (taps > 2)
            {
                a02 = Fma512(d0, x2, a02);
            }
            if (taps > 3)
            {
                a03 = Fma512(d0, x3, a03);
            }
            if (outs > 1)
            {
                var d1 = Vector512.Load(d + flat);
                a10 = Fma512(d1, x0, a10);
                if (taps > 1)
                {
                    a11 = Fma512(d1, x1, a11);
                }
                if (taps > 2)
                {
                    a12 = Fma512(d1, x2, a12);
                }
                if (taps > 3)
                {
                    a13 = Fma512(d1, x3, a13);
                }
            }
            if (outs > 2)
            {
                var d2 = Vector512.Load(d + 2 * flat);
                a20 = Fma512(d2, x0, a20);
                if (taps > 1)
                {
                    a21 = Fma512(d2, x1, a21);
                }
                if (taps > 2)
                {
                    a22 = Fma512(d2, x2, a22);
                }
                if (taps > 3)
                {
                    a23 = Fma512(d2, x3, a23);
                }
            }
            if (outs > 3)
            {
                var d3 = Vector512.Load(d + 3 * flat);
                a30 = Fma512(d3, x0, a30);
                if (taps > 1)
                {
                    a31 = Fma512(d3, x1, a31);
                }
                if (taps > 2)
                {
                    a32 = Fma512(d3, x2, a32);
                }
                if (taps > 3)
                {
                    a33 = Fma512(d3, x3, a33);
                }
            }
        }
        Store4(acc, w, taps, a00, a01, a02, a03);
        if (outs > 1)
        {
            Store4(acc + ld, w, taps, a10, a11, a12, a13);
        }
        if (outs > 2)
        {
            Store4(acc + 2 * ld, w, taps, a20, a21, a22, a23);
        }
        if (outs > 3)
        {
            Store4(acc + 3 * ld, w, taps, a30, a31, a32, a33);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Load4<T>(T* acc, int w, int taps, ref Vector512<T> v0, ref Vector512<T> v1, ref Vector512<T> v2, ref Vector512<T> v3)
        where T : unmanaged
    {
        v0 = Vector512.Load(acc);
        if (taps > 1)
        {
            v1 = Vector512.Load(acc + w);
        }
        if (taps > 2)
        {
            v2 = Vector512.Load(acc + 2 * w);
        }
        if (taps > 3)
        {
            v3 = Vector512.Load(acc + 3 * w);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store4<T>(T* acc, int w, int taps, Vector512<T> v0, Vector512<T> v1, Vector512<T> v2, Vector512<T> v3)
        where T : unmanaged
    {
        v0.Store(acc);
        if (taps > 1)
        {
            v1.Store(acc + w);
        }
        if (taps > 2)
        {
            v2.Store(acc + 2 * w);
        }
        if (taps > 3)
        {
            v3.Store(acc + 3 * w);
        }
    }
}
