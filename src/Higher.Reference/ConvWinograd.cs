using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Higher.Reference;

/// <summary>
/// Float32 3×3 convolutions with stride 1 (one group, no dilation) by Winograd's minimal filtering F(2×2, 3×3)
/// (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016), AVX-512 only. Each 2×2 block of
/// outputs ("tile") is Aᵀ[Σ_c (G g_c Gᵀ) ⊙ (Bᵀ d_c B)]A, with d_c the tile's 4×4 window of channel c and g_c the
/// kernel: 16 multiplies per channel and tile where the direct sum has 36, so the conv net's 64-channel 11×11 layer
/// does 2.25/1.19 = 1.9× fewer multiply-adds (the 1.19 is the 12×12 of tiles covering 11×11). The sum over channels
/// is, for each of the 16 positions ξ of the transformed tile, a GEMM [tiles × C]·[C × K], run by a 6 tiles × 64
/// channels register tile as in <see cref="ConvBroadcast"/>.
/// <list type="bullet">
/// <item>forward: y = conv(x, W) (+ bias), the source x, g_c for output channel k is W[k, c];</item>
/// <item>input gradient: gradX is the same correlation of dy zero-padded by 2 − pad, g for source channel o and
/// destination channel c being W[o, c] rotated by 180° (<see cref="SupportsInputGrad"/>);</item>
/// <item>weight gradient: the adjoint of the forward's tiles, gradW[k, c] = Gᵀ[Σ_n Σ_t (A dy_t Aᵀ)_k ⊙ (Bᵀ d_t B)_c]G, for
/// each ξ a GEMM over the tiles (<see cref="WeightGrad"/>).</item>
/// </list>
/// A work unit is one image's band of tile rows: its source rows are transposed into a zero-padded channels-last
/// slab, transformed a tile and 16 channels at a time into V[ξ][tile][c], multiplied into M[ξ][tile][k], transformed
/// back into a channels-last block of y and transposed into [k, pixel]; the bias, where there is one, is added to the
/// stored output (the bits of the separate add). U = G g Gᵀ is computed once per call.
/// <para>
/// Rounding: every output is the same fixed sequence of operations whatever the unit, the band or the thread count
/// (the chain over channels is one FMA chain in ascending c), so results are the same bits for any degree of
/// parallelism. They are not the bits of the direct sum: with u = 2⁻²⁴ the error is at most about (C + 10)·u·W, W
/// being the same computation in absolute values, Σ_c |Aᵀ|(|G||g_c||G|ᵀ ⊙ |Bᵀ||d_c||B|)|A| (4 roundings for U,
/// 2 for V, C for the chain, 4 for the output transform); the conformance tests check that bound against a float64
/// oracle; the weight gradient's chain runs over the tiles of a chunk of images, its bound (N·tiles + 16)·u·W with W
/// the absolute-value sum of its own computation. Float64 never takes this path: it stays the direct sum, the
/// backend's oracle.
/// </para>
/// <para>
/// Non-finite inputs: the forward and input gradient confine an infinity to the outputs whose sums contain it (a tile
/// position reaches only the outputs it belongs to), but the weight gradient's transforms mix a tile's taps, so an
/// infinite x or dy makes every tap of the channel pairs it touches non-finite, not only those whose sums contain it.
/// Nothing reaches another input channel's weights.
/// </para>
/// </summary>
internal static unsafe class ConvWinograd
{
    private const int Lanes = 16;

    /// <summary>Tiles of the register tile (6 × 4 accumulators, 4 operands and a broadcast in 29 of 32 zmm, as in <see cref="ConvBroadcast"/>).</summary>
    private const int Rows = 6;

    /// <summary>Transformed tile elements of V, and of M, a unit aims to hold at most (256 KiB of float each).</summary>
    private const int UnitElements = 1 << 16;

    /// <summary>AVX-512 (the micro-kernel's and the transforms' vectors) and AVX2 (the 8-lane gathers that build U).</summary>
    public static bool Available => Vector512.IsHardwareAccelerated && Avx512F.IsSupported && Avx2.IsSupported;

    private static int Pad16(int n) => (n + Lanes - 1) / Lanes * Lanes;

    private static bool Shape(in ConvGeometry g) =>
        Available && g.KernelHeight == 3 && g.KernelWidth == 3 && g.StrideHeight == 1 && g.StrideWidth == 1
        && g.DilationHeight == 1 && g.DilationWidth == 1 && g.Groups == 1
        && g.Batch > 0 && g.InChannels > 0 && g.OutChannels > 0 && g.InHeight > 0 && g.InWidth > 0 && g.OutHeight > 0 && g.OutWidth > 0
        && g.InputLength < int.MaxValue / 4 && g.OutputLength < int.MaxValue / 4 && g.WeightLength < int.MaxValue / 4
        && (long)(g.InHeight + 4) * (g.InWidth + 4) * Pad16(Math.Max(g.InChannels, g.OutChannels)) < int.MaxValue / 4
        && TransformedKernel(Math.Max(g.InChannels, g.OutChannels)) <= MaxTransformedKernel;

    /// <summary>Elements of U (or of one weight-gradient partial) for this many channels on both sides: 16 · (C to 6) · (K to 16).</summary>
    private static long TransformedKernel(int channels) => 16L * ((channels + Rows - 1) / Rows * Rows) * Pad16(channels);

    /// <summary>The largest U or partial a call builds (64 MiB of float: up to 1,020 channels on both sides).</summary>
    private const long MaxTransformedKernel = 1L << 24;

    /// <summary>Weight-gradient partials a call keeps at most, in elements (16 MiB of float; at least one partial).</summary>
    private const long PartialBudget = 1L << 22;

    /// <summary>Whether the forward can run here: float32 (the caller's), AVX-512, a 3×3 kernel, stride 1, no dilation, one group.</summary>
    public static bool Supports(in ConvGeometry g) => Shape(g);

    /// <summary>Whether the input gradient can run: the forward's conditions (it is the correlation of dy with the rotated kernel).</summary>
    public static bool SupportsInputGrad(in ConvGeometry g) => Shape(g);

    /// <summary>
    /// Where the automatic choice takes it: source and destination channels 16 to 128 (it was measured at 64; wider
    /// layers keep the direct paths until measured) and padded to 16 with at most a quarter of waste, and tiles covering the output with at most 35 % of waste (11×11 and 13×13 maps: 19 % and 16 %;
    /// a 3×3 map's 2×2 tiles cover 16 pixels for 9, 5×5's 36 for 25, and they stay on the direct paths).
    /// </summary>
    private static bool Worthwhile(int sourceChannels, int channels, int height, int width) =>
        sourceChannels >= 16 && channels >= 16 && sourceChannels <= 128 && channels <= 128
        && 4L * Pad16(sourceChannels) <= 5L * sourceChannels && 4L * Pad16(channels) <= 5L * channels
        && 100L * 4 * ((height + 1) / 2) * ((width + 1) / 2) <= 135L * height * width;

    /// <summary>The automatic choice for the forward (see <see cref="Worthwhile"/>).</summary>
    public static bool Prefers(in ConvGeometry g) => Supports(g) && Worthwhile(g.InChannels, g.OutChannels, g.OutHeight, g.OutWidth);

    /// <summary>The automatic choice for the input gradient: dy's channels are the source, x's the destination.</summary>
    public static bool PrefersInputGrad(in ConvGeometry g) => SupportsInputGrad(g) && Worthwhile(g.OutChannels, g.InChannels, g.InHeight, g.InWidth);

    /// <summary>y = conv(x, W) (+ bias per channel); see <see cref="Supports"/>.</summary>
    public static void Forward(Parallelism threads, in ConvGeometry g, float* x, float* w, float* y, float* bias)
    {
        var c = new Correlation(g.Batch, g.InChannels, g.InHeight, g.InWidth, g.OutChannels, g.OutHeight, g.OutWidth, g.PadTop, g.PadLeft);
        Run(threads, c, x, w, rotated: false, y, bias);
    }

    /// <summary>gradX = the correlation of dy, zero-padded by 2 − pad, with W[o, c] rotated by 180°; see <see cref="SupportsInputGrad"/>.</summary>
    public static void InputGrad(Parallelism threads, in ConvGeometry g, float* dy, float* w, float* dx)
    {
        var c = new Correlation(g.Batch, g.OutChannels, g.OutHeight, g.OutWidth, g.InChannels, g.InHeight, g.InWidth, 2 - g.PadTop, 2 - g.PadLeft);
        Run(threads, c, dy, w, rotated: true, dx, null);
    }

    /// <summary>Whether the weight gradient can run: the forward's conditions.</summary>
    public static bool SupportsWeightGrad(in ConvGeometry g) => Shape(g);

    /// <summary>The automatic choice for the weight gradient: the forward's (its tiles are the forward's).</summary>
    public static bool PrefersWeightGrad(in ConvGeometry g) => SupportsWeightGrad(g) && Worthwhile(g.InChannels, g.OutChannels, g.OutHeight, g.OutWidth);

    /// <summary>Tiles a weight-gradient chunk of images aims for (V and D of 128 tiles are 1 MiB at 64 + 64 channels).</summary>
    private const int ChunkTiles = 100;

    /// <summary>At most this many chunks (partial sums of the weight gradient); more images per chunk beyond that.</summary>
    private const int MaxPartials = 16;

    /// <summary>
    /// gradW, the adjoint of the forward's tiles: per chunk of images (fixed by the geometry), for each ξ the GEMM
    /// dU_chunk[ξ][c][k] = Σ over the chunk's tiles t (ascending) of V_t[ξ][c]·D_t[ξ][k], V the forward's input transform
    /// of x and D_t = A dy_t Aᵀ (dy_t the tile's 2×2 block, zero past the output); the chunks' partials then added in
    /// ascending chunk order and gradW[k, c] = Gᵀ dU[c][k] G. Chunks are shared out between threads, and then the
    /// input channels, so the bits do not depend on the thread count.
    /// </summary>
    public static void WeightGrad(Parallelism threads, in ConvGeometry g, float* x, float* dy, float* dw)
    {
        var c = new Correlation(g.Batch, g.InChannels, g.InHeight, g.InWidth, g.OutChannels, g.OutHeight, g.OutWidth, g.PadTop, g.PadLeft);
        int tiles = c.TilesHigh * c.TilesWide, cs = c.SourceChannels, kp = c.Padded, crow = (cs + Rows - 1) / Rows * Rows;
        int batch = g.Batch;
        long partials = Math.Clamp(PartialBudget / (16L * crow * kp), 1, MaxPartials);
        int perChunk = (int)Math.Min(batch, Math.Max((ChunkTiles + tiles - 1) / tiles, (batch + partials - 1) / partials));
        int chunks = (batch + perChunk - 1) / perChunk;
        long partLength = 16L * crow * kp;
        float[] partArray = ArrayPool<float>.Shared.Rent(checked((int)(chunks * partLength + Lanes)));
        try
        {
            fixed (float* partBase = partArray)
            {
                float* parts = Align(partBase);
                nint px = (nint)x, pdy = (nint)dy, pp = (nint)parts, pw = (nint)dw;
                void Chunk(int i) => WeightChunk(c, (float*)px, (float*)pdy, i * perChunk, Math.Min(perChunk, batch - i * perChunk), (float*)pp + i * partLength, crow);
                int channelBlocks = (cs + 7) / 8;
                void Channels(int b) => WeightStore(c, (float*)pp, chunks, partLength, crow, 8 * b, Math.Min(cs, 8 * b + 8), (float*)pw);
                long work = (long)c.Batch * c.Height * c.Width * c.Channels * cs * 9;
                ConvBroadcast.ForUnits(threads, work, chunks, Chunk);
                ConvBroadcast.ForUnits(threads, work, channelBlocks, Channels);
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(partArray);
        }
    }

    /// <summary>Images [n0, n0 + count): V and D of their tiles, then part[ξ][c][k] (c &lt; crow) = Σ_t V·D in ascending t.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WeightChunk(in Correlation c, float* x, float* dy, int n0, int count, float* part, int crow)
    {
        int th = c.TilesHigh, tw = c.TilesWide, tiles = th * tw, total = count * tiles;
        int csp = c.SourcePadded, k = c.Channels, kp = c.Padded, sw = c.SlabWidth, yw = 2 * tw;
        int slabLength = (2 * th + 2) * sw * csp, dytLength = 2 * th * yw * kp;
        long vLength = 16L * total * csp + 2 * Lanes, dLength = 16L * total * kp;
        float[] array = ArrayPool<float>.Shared.Rent(checked((int)(slabLength + dytLength + vLength + dLength + 4 * Lanes)));
        try
        {
            fixed (float* basePtr = array)
            {
                float* slab = Align(basePtr);
                float* dyt = Align(slab + slabLength);
                float* v = Align(dyt + dytLength);
                float* d = Align(v + vLength);
                long plane = (long)c.Height * c.Width;
                for (int img = 0; img < count; img++)
                {
                    int n = n0 + img;
                    Slab(c, x, n, 0, th, slab);
                    // dyt[(i·yw + j)·Kp + k] = dy[n, k, i, j], zero past the output and for k ≥ K.
                    new Span<float>(dyt, dytLength).Clear();
                    float* image = dy + (long)n * k * plane;
                    for (int i = 0; i < c.Height; i++)
                    {
                        Copying.Transpose(image + (long)i * c.Width, plane, dyt + (long)i * yw * kp, kp, k, c.Width);
                    }
                    for (int t = 0; t < tiles; t++)
                    {
                        int i = t / tw, j = t % tw;
                        long at = (long)img * tiles + t;
                        float* window = slab + ((long)(2 * i) * sw + 2 * j) * csp;
                        for (int c0 = 0; c0 < csp; c0 += Lanes)
                        {
                            InputTransform(window + c0, sw * csp, csp, v + at * csp + c0, (long)total * csp);
                        }
                        float* block = dyt + ((long)(2 * i) * yw + 2 * j) * kp;
                        for (int k0 = 0; k0 < kp; k0 += Lanes)
                        {
                            GradientTransform(block + k0, (long)yw * kp, kp, d + at * kp + k0, (long)total * kp);
                        }
                    }
                }
                // The spare lanes past the last tile's channels that the last rows of a 6-row block read.
                new Span<float>(v + 16L * total * csp, 2 * Lanes).Clear();
                for (int xi = 0; xi < 16; xi++)
                {
                    float* vx = v + (long)xi * total * csp, dx = d + (long)xi * total * kp, px = part + (long)xi * crow * kp;
                    for (int c0 = 0; c0 < crow; c0 += Rows)
                    {
                        int k0 = 0;
                        for (; k0 + 4 * Lanes <= kp; k0 += 4 * Lanes)
                        {
                            Kernel4(vx + c0, 1, csp, dx + k0, kp, total, px + (long)c0 * kp + k0, kp);
                        }
                        for (; k0 < kp; k0 += Lanes)
                        {
                            Kernel1(vx + c0, 1, csp, dx + k0, kp, total, px + (long)c0 * kp + k0, kp);
                        }
                    }
                }
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(array);
        }
    }

    /// <summary>
    /// A dy Aᵀ for 16 channels of one tile: dy[a][b] at b + a·rowStride + b·colStride (A = [1 0; 1 1; 1 −1; 0 −1]),
    /// D[ξ] stored at d + ξ·dStride.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void GradientTransform(float* b, long rowStride, long colStride, float* d, long dStride)
    {
        var y00 = Vector512.Load(b);
        var y01 = Vector512.Load(b + colStride);
        var y10 = Vector512.Load(b + rowStride);
        var y11 = Vector512.Load(b + rowStride + colStride);
        // Rows: e[i][b] = (A dy)[i][b].
        var e00 = y00; var e01 = y01;
        var e10 = y00 + y10; var e11 = y01 + y11;
        var e20 = y00 - y10; var e21 = y01 - y11;
        var e30 = -y10; var e31 = -y11;
        // Columns: D[i][j] = (e Aᵀ)[i][j].
        e00.Store(d); (e00 + e01).Store(d + dStride); (e00 - e01).Store(d + 2 * dStride); (-e01).Store(d + 3 * dStride);
        e10.Store(d + 4 * dStride); (e10 + e11).Store(d + 5 * dStride); (e10 - e11).Store(d + 6 * dStride); (-e11).Store(d + 7 * dStride);
        e20.Store(d + 8 * dStride); (e20 + e21).Store(d + 9 * dStride); (e20 - e21).Store(d + 10 * dStride); (-e21).Store(d + 11 * dStride);
        e30.Store(d + 12 * dStride); (e30 + e31).Store(d + 13 * dStride); (e30 - e31).Store(d + 14 * dStride); (-e31).Store(d + 15 * dStride);
    }

    /// <summary>
    /// Input channels [c0, c1): dU = the chunks' partials added in ascending chunk order, then gradW[k, c] = Gᵀ dU G
    /// (Gᵀ = [1 ½ ½ 0; 0 ½ −½ 0; 0 ½ ½ 1]; (a + b)·½ + c and a + (b + c)·½ in the order written), 16 output channels at a time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WeightStore(in Correlation c, float* parts, int chunks, long partLength, int crow, int c0, int c1, float* dw)
    {
        int cs = c.SourceChannels, k = c.Channels, kp = c.Padded;
        long step = (long)crow * kp;
        var half = Vector512.Create(0.5f);
        var u = stackalloc Vector512<float>[16];
        var h = stackalloc Vector512<float>[12];
        float* outp = stackalloc float[9 * Lanes];
        for (int ci = c0; ci < c1; ci++)
        {
            for (int k0 = 0; k0 < kp; k0 += Lanes)
            {
                float* at = parts + (long)ci * kp + k0;
                for (int xi = 0; xi < 16; xi++)
                {
                    var sum = Vector512.Load(at + xi * step);
                    for (int ch = 1; ch < chunks; ch++)
                    {
                        sum += Vector512.Load(at + ch * partLength + xi * step);
                    }
                    u[xi] = sum;
                }
                // h[p][j] = Σ_i G[i][p]·dU[i][j].
                for (int j = 0; j < 4; j++)
                {
                    var mid = (u[4 + j] + u[8 + j]) * half;
                    h[j] = u[j] + mid;
                    h[4 + j] = (u[4 + j] - u[8 + j]) * half;
                    h[8 + j] = mid + u[12 + j];
                }
                // gradW[p][q] = Σ_j h[p][j]·G[j][q].
                for (int p = 0; p < 3; p++)
                {
                    var mid = (h[4 * p + 1] + h[4 * p + 2]) * half;
                    (h[4 * p] + mid).Store(outp + (3 * p) * Lanes);
                    ((h[4 * p + 1] - h[4 * p + 2]) * half).Store(outp + (3 * p + 1) * Lanes);
                    (mid + h[4 * p + 3]).Store(outp + (3 * p + 2) * Lanes);
                }
                int live = Math.Min(Lanes, k - k0);
                for (int l = 0; l < live; l++)
                {
                    float* dst = dw + ((long)(k0 + l) * cs + ci) * 9;
                    for (int tap = 0; tap < 9; tap++)
                    {
                        dst[tap] = outp[tap * Lanes + l];
                    }
                }
            }
        }
    }

    /// <summary>
    /// dst[n, k, i, j] = Σ_c Σ_{p,q} src[n, c, i − PadTop + p, j − PadLeft + q]·g(c, k)[p, q], src zero outside its
    /// planes; the tiles (TH × TW of them per image) and their 4×4 windows in a slab of SlabWidth columns.
    /// </summary>
    private readonly record struct Correlation(int Batch, int SourceChannels, int SourceHeight, int SourceWidth,
        int Channels, int Height, int Width, int PadTop, int PadLeft)
    {
        public int TilesHigh => (Height + 1) / 2;
        public int TilesWide => (Width + 1) / 2;
        public int SlabWidth => 2 * TilesWide + 2;
        public int SourcePadded => Pad16(SourceChannels);
        public int Padded => Pad16(Channels);
    }

    private static void Run(Parallelism threads, Correlation c, float* src, float* w, bool rotated, float* dst, float* bias)
    {
        int cs = c.SourceChannels, kp = c.Padded, th = c.TilesHigh, tw = c.TilesWide;
        // Tile rows per band: V and M within UnitElements, and at least four units per thread where the batch is small.
        int bandRows = Math.Clamp(UnitElements / (16 * Math.Max(c.SourcePadded, kp) * tw), 1, th);
        long wantedUnits = 4L * threads.MaxDegree;
        if ((long)c.Batch * ((th + bandRows - 1) / bandRows) < wantedUnits)
        {
            long bandsPerImage = Math.Min(th, (wantedUnits + c.Batch - 1) / c.Batch);
            bandRows = Math.Max(1, (int)((th + bandsPerImage - 1) / bandsPerImage));
        }
        int bands = (th + bandRows - 1) / bandRows, units = c.Batch * bands;
        float[] uArray = ArrayPool<float>.Shared.Rent(16 * cs * kp + Lanes);
        try
        {
            fixed (float* uBase = uArray)
            {
                float* u = Align(uBase);
                BuildU(c, w, rotated, u);
                nint ps = (nint)src, pu = (nint)u, pd = (nint)dst, pb = (nint)bias;
                void Unit(int index) => RunUnit(c, (float*)ps, (float*)pu, (float*)pd, (float*)pb, index / bands, index % bands * bandRows, bandRows);
                long work = (long)c.Batch * c.Height * c.Width * c.Channels * cs * 9;
                ConvBroadcast.ForUnits(threads, work, units, Unit);
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(uArray);
        }
    }

    private static float* Align(float* p) => (float*)(((nint)p + 63) & ~(nint)63);

    /// <summary>
    /// U[(ξ·C + c)·Kp + k] = (G g Gᵀ)[ξ] for g = g(c, k), zero for k ≥ K: per source channel and 16 destination
    /// channels, the 9 taps gathered (W[k, c] for the forward, W[c, k] rotated for the input gradient), then G applied
    /// to the rows and to the columns, (a + b + c)/2 as ((a + c) + b)·0.5 and (a − b + c)/2 as ((a + c) − b)·0.5.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BuildU(in Correlation c, float* w, bool rotated, float* u)
    {
        int cs = c.SourceChannels, k = c.Channels, kp = c.Padded;
        int laneStride = rotated ? 9 : cs * 9;
        var half = Vector512.Create(0.5f);
        var g = stackalloc Vector512<float>[9];
        var t = stackalloc Vector512<float>[12];
        for (int ci = 0; ci < cs; ci++)
        {
            float* wc = w + (rotated ? (long)ci * k * 9 : (long)ci * 9);
            for (int k0 = 0; k0 < kp; k0 += Lanes)
            {
                int live = Math.Min(Lanes, k - k0);
                var keep = Vector512.LessThan(Vector512<int>.Indices, Vector512.Create(live));
                var index = Vector512.ConditionalSelect(keep, (Vector512<int>.Indices + Vector512.Create(k0)) * laneStride, Vector512<int>.Zero);
                for (int tap = 0; tap < 9; tap++)
                {
                    float* at = wc + (rotated ? 8 - tap : tap);
                    var lo = Avx2.GatherVector256(at, index.GetLower(), 4);
                    var hi = Avx2.GatherVector256(at, index.GetUpper(), 4);
                    g[tap] = Vector512.ConditionalSelect(keep.AsSingle(), Vector512.Create(lo, hi), Vector512<float>.Zero);
                }
                // t = G g (4 × 3): rows 0, (0 + 1 + 2)/2, (0 − 1 + 2)/2, 2 of each column q.
                for (int q = 0; q < 3; q++)
                {
                    var s = g[q] + g[6 + q];
                    t[q] = g[q];
                    t[3 + q] = (s + g[3 + q]) * half;
                    t[6 + q] = (s - g[3 + q]) * half;
                    t[9 + q] = g[6 + q];
                }
                // U = t Gᵀ (4 × 4), ξ = 4i + j.
                float* dst = u + (long)ci * kp + k0;
                long step = (long)cs * kp;
                for (int i = 0; i < 4; i++)
                {
                    var a = t[3 * i];
                    var b = t[3 * i + 1];
                    var e = t[3 * i + 2];
                    var s = a + e;
                    a.Store(dst + (4 * i) * step);
                    ((s + b) * half).Store(dst + (4 * i + 1) * step);
                    ((s - b) * half).Store(dst + (4 * i + 2) * step);
                    e.Store(dst + (4 * i + 3) * step);
                }
            }
        }
    }

    /// <summary>Image n, tile rows [tr0, tr0 + bandRows): slab, V, M, the channels-last output and its store.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RunUnit(in Correlation c, float* src, float* u, float* dst, float* bias, int n, int tr0, int bandRows)
    {
        int rows = Math.Min(bandRows, c.TilesHigh - tr0), tw = c.TilesWide, tiles = rows * tw, tp = (tiles + Rows - 1) / Rows * Rows;
        int cs = c.SourceChannels, csp = c.SourcePadded, k = c.Channels, kp = c.Padded;
        int sw = c.SlabWidth, sr = 2 * rows + 2, yw = 2 * tw;
        int slabLength = sr * sw * csp, vLength = 16 * tp * csp, mLength = 16 * tp * kp, ytLength = 2 * rows * yw * kp;
        float[] array = ArrayPool<float>.Shared.Rent(slabLength + vLength + mLength + ytLength + 4 * Lanes);
        try
        {
            fixed (float* basePtr = array)
            {
                float* slab = Align(basePtr);
                float* v = Align(slab + slabLength);
                float* m = Align(v + vLength);
                float* yt = Align(m + mLength);
                Slab(c, src, n, tr0, rows, slab);
                // V[ξ][t][c]; the padding tiles (t ≥ tiles) zero.
                for (int xi = 0; xi < 16; xi++)
                {
                    new Span<float>(v + ((long)xi * tp + tiles) * csp, (tp - tiles) * csp).Clear();
                }
                for (int t = 0; t < tiles; t++)
                {
                    int i = t / tw, j = t % tw;
                    float* d = slab + ((long)(2 * i) * sw + 2 * j) * csp;
                    for (int c0 = 0; c0 < csp; c0 += Lanes)
                    {
                        InputTransform(d + c0, sw * csp, csp, v + (long)t * csp + c0, (long)tp * csp);
                    }
                }
                // M[ξ][t][k] = Σ_c V[ξ][t][c]·U[ξ][c][k].
                for (int xi = 0; xi < 16; xi++)
                {
                    float* vx = v + (long)xi * tp * csp, ux = u + (long)xi * cs * kp, mx = m + (long)xi * tp * kp;
                    for (int t0 = 0; t0 < tp; t0 += Rows)
                    {
                        int k0 = 0;
                        for (; k0 + 4 * Lanes <= kp; k0 += 4 * Lanes)
                        {
                            Kernel4(vx + (long)t0 * csp, csp, 1, ux + k0, kp, cs, mx + (long)t0 * kp + k0, kp);
                        }
                        for (; k0 < kp; k0 += Lanes)
                        {
                            Kernel1(vx + (long)t0 * csp, csp, 1, ux + k0, kp, cs, mx + (long)t0 * kp + k0, kp);
                        }
                    }
                }
                // yt[(2i + a)·yw + 2j + b][k] = (Aᵀ M_t A)[a, b].
                for (int t = 0; t < tiles; t++)
                {
                    int i = t / tw, j = t % tw;
                    float* o = yt + ((long)(2 * i) * yw + 2 * j) * kp;
                    for (int k0 = 0; k0 < kp; k0 += Lanes)
                    {
                        OutputTransform(m + (long)t * kp + k0, (long)tp * kp, o + k0, kp, (long)yw * kp);
                    }
                }
                // Into [k, pixel] with the bias, rows and columns past the output dropped.
                int y0 = 2 * tr0, y1 = Math.Min(c.Height, 2 * (tr0 + rows));
                long plane = (long)c.Height * c.Width;
                float* image = dst + (long)n * k * plane;
                for (int yr = y0; yr < y1; yr++)
                {
                    Copying.Transpose(yt + (long)(yr - y0) * yw * kp, kp, image + (long)yr * c.Width, plane, c.Width, k);
                }
                if (bias != null)
                {
                    Convolution.AddBias(image + (long)y0 * c.Width, plane, (long)(y1 - y0) * c.Width, bias, k);
                }
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(array);
        }
    }

    /// <summary>
    /// slab[(r·SlabWidth + s)·Cp + c] = src[n, c, 2·tr0 − PadTop + r, s − PadLeft] for r &lt; 2·rows + 2, zero outside
    /// the source and for c ≥ C: one transpose per source row.
    /// </summary>
    private static void Slab(in Correlation c, float* src, int n, int tr0, int rows, float* slab)
    {
        int sw = c.SlabWidth, sr = 2 * rows + 2, csp = c.SourcePadded;
        new Span<float>(slab, sr * sw * csp).Clear();
        int j0 = Math.Max(0, -c.PadLeft), j1 = Math.Min(c.SourceWidth, sw - c.PadLeft);
        if (j1 <= j0)
        {
            return;
        }
        long plane = (long)c.SourceHeight * c.SourceWidth;
        float* image = src + (long)n * c.SourceChannels * plane;
        for (int r = 0; r < sr; r++)
        {
            int row = 2 * tr0 - c.PadTop + r;
            if ((uint)row >= (uint)c.SourceHeight)
            {
                continue;
            }
            Copying.Transpose(image + (long)row * c.SourceWidth + j0, plane, slab + ((long)r * sw + j0 + c.PadLeft) * csp, csp, c.SourceChannels, j1 - j0);
        }
    }

    /// <summary>
    /// Bᵀ d B for 16 channels of one tile: d[r][s] at d + r·rowStride + s·colStride; V[ξ] stored at v + ξ·vStride.
    /// Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void InputTransform(float* d, long rowStride, long colStride, float* v, long vStride)
    {
        // Rows first: t[i][s] = (Bᵀ d)[i][s].
        Vector512<float> t00, t01, t02, t03, t10, t11, t12, t13, t20, t21, t22, t23, t30, t31, t32, t33;
        {
            float* r0 = d, r1 = d + rowStride, r2 = d + 2 * rowStride, r3 = d + 3 * rowStride;
            var a0 = Vector512.Load(r0); var b0 = Vector512.Load(r1); var c0 = Vector512.Load(r2); var e0 = Vector512.Load(r3);
            t00 = a0 - c0; t10 = b0 + c0; t20 = c0 - b0; t30 = b0 - e0;
            var a1 = Vector512.Load(r0 + colStride); var b1 = Vector512.Load(r1 + colStride); var c1 = Vector512.Load(r2 + colStride); var e1 = Vector512.Load(r3 + colStride);
            t01 = a1 - c1; t11 = b1 + c1; t21 = c1 - b1; t31 = b1 - e1;
            var a2 = Vector512.Load(r0 + 2 * colStride); var b2 = Vector512.Load(r1 + 2 * colStride); var c2 = Vector512.Load(r2 + 2 * colStride); var e2 = Vector512.Load(r3 + 2 * colStride);
            t02 = a2 - c2; t12 = b2 + c2; t22 = c2 - b2; t32 = b2 - e2;
            var a3 = Vector512.Load(r0 + 3 * colStride); var b3 = Vector512.Load(r1 + 3 * colStride); var c3 = Vector512.Load(r2 + 3 * colStride); var e3 = Vector512.Load(r3 + 3 * colStride);
            t03 = a3 - c3; t13 = b3 + c3; t23 = c3 - b3; t33 = b3 - e3;
        }
        // Then columns: V[i][j] = (t B)[i][j].
        (t00 - t02).Store(v); (t01 + t02).Store(v + vStride); (t02 - t01).Store(v + 2 * vStride); (t01 - t03).Store(v + 3 * vStride);
        (t10 - t12).Store(v + 4 * vStride); (t11 + t12).Store(v + 5 * vStride); (t12 - t11).Store(v + 6 * vStride); (t11 - t13).Store(v + 7 * vStride);
        (t20 - t22).Store(v + 8 * vStride); (t21 + t22).Store(v + 9 * vStride); (t22 - t21).Store(v + 10 * vStride); (t21 - t23).Store(v + 11 * vStride);
        (t30 - t32).Store(v + 12 * vStride); (t31 + t32).Store(v + 13 * vStride); (t32 - t31).Store(v + 14 * vStride); (t31 - t33).Store(v + 15 * vStride);
    }

    /// <summary>
    /// Aᵀ M A for 16 channels of one tile: M[ξ] at m + ξ·mStride; out[a][b] at o + a·rowStride + b·colStride.
    /// Aᵀ = [1 1 1 0; 0 1 −1 −1], each sum of three in the order written.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void OutputTransform(float* m, long mStride, float* o, long colStride, long rowStride)
    {
        Vector512<float> a0, a1, a2, a3, b0, b1, b2, b3;
        {
            // Rows: a[j] = M[0][j] + M[1][j] + M[2][j], b[j] = M[1][j] − M[2][j] − M[3][j].
            var m00 = Vector512.Load(m); var m10 = Vector512.Load(m + 4 * mStride); var m20 = Vector512.Load(m + 8 * mStride); var m30 = Vector512.Load(m + 12 * mStride);
            a0 = m00 + m10 + m20; b0 = m10 - m20 - m30;
            var m01 = Vector512.Load(m + mStride); var m11 = Vector512.Load(m + 5 * mStride); var m21 = Vector512.Load(m + 9 * mStride); var m31 = Vector512.Load(m + 13 * mStride);
            a1 = m01 + m11 + m21; b1 = m11 - m21 - m31;
            var m02 = Vector512.Load(m + 2 * mStride); var m12 = Vector512.Load(m + 6 * mStride); var m22 = Vector512.Load(m + 10 * mStride); var m32 = Vector512.Load(m + 14 * mStride);
            a2 = m02 + m12 + m22; b2 = m12 - m22 - m32;
            var m03 = Vector512.Load(m + 3 * mStride); var m13 = Vector512.Load(m + 7 * mStride); var m23 = Vector512.Load(m + 11 * mStride); var m33 = Vector512.Load(m + 15 * mStride);
            a3 = m03 + m13 + m23; b3 = m13 - m23 - m33;
        }
        (a0 + a1 + a2).Store(o);
        (a1 - a2 - a3).Store(o + colStride);
        (b0 + b1 + b2).Store(o + rowStride);
        (b1 - b2 - b3).Store(o + rowStride + colStride);
    }

    /// <summary>
    /// m[r·ldm + lane] = Σ_{s &lt; count} v[r·ldv + s·vStep]·u[s·ldu + lane] for r &lt; 6 and 64 lanes, one FMA chain
    /// from zero in ascending s (channels for the forward, tiles for the weight gradient).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel4(float* v, int ldv, int vStep, float* u, int ldu, int count, float* m, int ldm)
    {
        float* x0 = v, x1 = v + ldv, x2 = v + 2 * ldv, x3 = v + 3 * ldv, x4 = v + 4 * ldv, x5 = v + 5 * ldv;
        Vector512<float> c00 = default, c01 = default, c02 = default, c03 = default, c10 = default, c11 = default, c12 = default, c13 = default;
        Vector512<float> c20 = default, c21 = default, c22 = default, c23 = default, c30 = default, c31 = default, c32 = default, c33 = default;
        Vector512<float> c40 = default, c41 = default, c42 = default, c43 = default, c50 = default, c51 = default, c52 = default, c53 = default;
        for (long s = 0, end = (long)count * vStep; s < end; s += vStep)
        {
            var b0 = Vector512.Load(u);
            var b1 = Vector512.Load(u + 16);
            var b2 = Vector512.Load(u + 32);
            var b3 = Vector512.Load(u + 48);
            var a = Vector512.Create(x0[s]);
            c00 = Avx512F.FusedMultiplyAdd(a, b0, c00); c01 = Avx512F.FusedMultiplyAdd(a, b1, c01); c02 = Avx512F.FusedMultiplyAdd(a, b2, c02); c03 = Avx512F.FusedMultiplyAdd(a, b3, c03);
            a = Vector512.Create(x1[s]);
            c10 = Avx512F.FusedMultiplyAdd(a, b0, c10); c11 = Avx512F.FusedMultiplyAdd(a, b1, c11); c12 = Avx512F.FusedMultiplyAdd(a, b2, c12); c13 = Avx512F.FusedMultiplyAdd(a, b3, c13);
            a = Vector512.Create(x2[s]);
            c20 = Avx512F.FusedMultiplyAdd(a, b0, c20); c21 = Avx512F.FusedMultiplyAdd(a, b1, c21); c22 = Avx512F.FusedMultiplyAdd(a, b2, c22); c23 = Avx512F.FusedMultiplyAdd(a, b3, c23);
            a = Vector512.Create(x3[s]);
            c30 = Avx512F.FusedMultiplyAdd(a, b0, c30); c31 = Avx512F.FusedMultiplyAdd(a, b1, c31); c32 = Avx512F.FusedMultiplyAdd(a, b2, c32); c33 = Avx512F.FusedMultiplyAdd(a, b3, c33);
            a = Vector512.Create(x4[s]);
            c40 = Avx512F.FusedMultiplyAdd(a, b0, c40); c41 = Avx512F.FusedMultiplyAdd(a, b1, c41); c42 = Avx512F.FusedMultiplyAdd(a, b2, c42); c43 = Avx512F.FusedMultiplyAdd(a, b3, c43);
            a = Vector512.Create(x5[s]);
            c50 = Avx512F.FusedMultiplyAdd(a, b0, c50); c51 = Avx512F.FusedMultiplyAdd(a, b1, c51); c52 = Avx512F.FusedMultiplyAdd(a, b2, c52); c53 = Avx512F.FusedMultiplyAdd(a, b3, c53);
            u += ldu;
        }
        c00.Store(m); c01.Store(m + 16); c02.Store(m + 32); c03.Store(m + 48);
        m += ldm;
        c10.Store(m); c11.Store(m + 16); c12.Store(m + 32); c13.Store(m + 48);
        m += ldm;
        c20.Store(m); c21.Store(m + 16); c22.Store(m + 32); c23.Store(m + 48);
        m += ldm;
        c30.Store(m); c31.Store(m + 16); c32.Store(m + 32); c33.Store(m + 48);
        m += ldm;
        c40.Store(m); c41.Store(m + 16); c42.Store(m + 32); c43.Store(m + 48);
        m += ldm;
        c50.Store(m); c51.Store(m + 16); c52.Store(m + 32); c53.Store(m + 48);
    }

    /// <summary><see cref="Kernel4"/> over 16 lanes: the destination channels past the last whole 64.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel1(float* v, int ldv, int vStep, float* u, int ldu, int count, float* m, int ldm)
    {
        float* x0 = v, x1 = v + ldv, x2 = v + 2 * ldv, x3 = v + 3 * ldv, x4 = v + 4 * ldv, x5 = v + 5 * ldv;
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default;
        for (long s = 0, end = (long)count * vStep; s < end; s += vStep)
        {
            var b = Vector512.Load(u);
            c0 = Avx512F.FusedMultiplyAdd(Vector512.Create(x0[s]), b, c0);
            c1 = Avx512F.FusedMultiplyAdd(Vector512.Create(x1[s]), b, c1);
            c2 = Avx512F.FusedMultiplyAdd(Vector512.Create(x2[s]), b, c2);
            c3 = Avx512F.FusedMultiplyAdd(Vector512.Create(x3[s]), b, c3);
            c4 = Avx512F.FusedMultiplyAdd(Vector512.Create(x4[s]), b, c4);
            c5 = Avx512F.FusedMultiplyAdd(Vector512.Create(x5[s]), b, c5);
            u += ldu;
        }
        c0.Store(m); c1.Store(m + ldm); c2.Store(m + 2 * ldm); c3.Store(m + 3 * ldm); c4.Store(m + 4 * ldm); c5.Store(m + 5 * ldm);
    }
}
