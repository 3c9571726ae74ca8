using System.Buffers;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Higher.Reference;

/// <summary>
/// Convolution kernels. With AVX-512, a shallow reduction (one group, stride 1, Cin·kh·kw at most
/// <see cref="ConvDirect.MaxDepth"/>: the first layer of a conv net) runs its forward and weight gradient as a direct
/// convolution (<see cref="ConvDirect"/>): each image copied into a zero-padded scratch, the kernels vectorized along
/// the output width, the forward's tiles of output channels × vectors accumulating over the taps in ascending order,
/// the weight gradient's per-lane partial sums adding up over images and positions in ascending order, lanes then
/// chunks of images added in a fixed order; the automatic choice takes it where it was measured faster than the
/// implicit GEMM (<see cref="ConvDirect.PrefersForward"/>, <see cref="ConvDirect.PrefersWeightGrad"/>). Its input
/// gradient (at most <see cref="ConvDirect.MaxInputGradChannels"/> input channels: the forward kernels over dy) is
/// taken only where it beat im2col + col2im (<see cref="ConvDirect.PrefersInputGrad"/>: few output channels).
/// Float32 3×3 convolutions with stride 1, one group and no dilation, at least 16 channels on both sides and maps that
/// 2×2 tiles cover with little waste (the conv net's 64-channel 11×11 forward and 13×13 input gradient) run their
/// forward, input gradient and weight gradient by Winograd's F(2×2, 3×3) (<see cref="ConvWinograd"/>; its own error
/// bound, the same bits for any thread count); float64 never does.
/// Otherwise, with AVX-512, the forward, the weight gradient and the input gradient run with the image (or dy) as
/// the broadcast operand where the channels of the tile's columns (output channels; input channels for the input
/// gradient) fill its 4·Vector512 with at most a quarter of padding (<see cref="ConvBroadcast"/>: 6 pixels or 6
/// reduction columns × 64 float channels, the source read through offset tables, nothing gathered or transposed; the
/// input gradient summed over taps, only the terms that exist).
/// Otherwise, with AVX-512 the forward and the stride-1 input gradient run as an implicit GEMM
/// (<see cref="ConvGemm"/>): the column matrix of the whole batch is never built, each micro-panel of it is packed
/// straight from the image and the result tiles are stored straight into place; the input gradient is the
/// convolution of dy with the transposed, flipped weight where that costs at most 3× the multiply-adds of
/// im2col + col2im (<see cref="Convolution.InputGradAsConvolution"/>). Every output element there sums its terms in a
/// fixed order (FMA chains over blocks of the reduction fixed by the geometry), and the panels are shared out between
/// threads, so results do not depend on the thread count. The weight gradient is an implicit GEMM too
/// (<see cref="ConvGemm.WeightGrad"/>: dy transposed once, the column matrix gathered and transposed per panel and
/// block of 512 output pixels, each weight summing its block chains in ascending order, threads sharing out weight
/// columns, or fixed chunks of the reduction summed in order where there are few columns). Otherwise (no AVX-512,
/// strided input gradients, very deep windows, 1×1 convolutions)
/// the kernels are im2col + the packed <see cref="Gemm"/>. Images are processed in blocks
/// whose column matrices sit side by side ([Cg·kh·kw, images·OH·OW]), so a layer with few output
/// pixels (3×3 maps in a deep layer) still gives the GEMM a wide right-hand side. The block size
/// depends on the geometry only, never on the thread count: the forward and input gradient compute
/// every output element by one GEMM column (its k terms in the GEMM's fixed order), and the weight
/// gradient sums one partial per block in ascending block order, so results are the same bits for
/// any degree of parallelism. Blocks run in parallel when there are several; a lone block lets the
/// GEMM split itself instead. Scratch comes from <see cref="ArrayPool{T}.Shared"/>.
/// </summary>
/// <summary>
/// Which convolution code runs: the automatic choice, or one path always (the path tests compare them). A forced path
/// that cannot run a geometry falls back to the automatic choice among the others (<see cref="Implicit"/>: where
/// <see cref="ConvGemm"/> does not support it; <see cref="Direct"/>: where <see cref="ConvDirect.Supports"/>, or for
/// the input gradient <see cref="ConvDirect.SupportsInputGrad"/>, says no; <see cref="Broadcast"/>: where
/// <see cref="ConvBroadcast.Supports{T}"/>, <see cref="ConvBroadcast.SupportsWeightGrad{T}"/> or
/// <see cref="ConvBroadcast.SupportsInputGrad{T}"/> says no).
/// </summary>
internal enum ConvPath
{
    Auto,
    Im2Col,
    Implicit,
    Direct,
    Broadcast,
    Winograd,
}

internal static unsafe class Convolution
{
    /// <summary>Columns of a block's GEMM the block size aims for (a few micro-panels wide, and deep enough k for the weight gradient).</summary>
    private const int TargetColumns = 512;

    /// <summary>Largest column matrix a block builds, in elements (4 MiB of float).</summary>
    private const long MaxScratch = 1 << 20;

    /// <summary>At most this many weight-gradient partials; more images per block beyond that.</summary>
    private const int MaxPartials = 16;

    private static readonly Parallelism Serial = new(1);

    /// <summary>1×1, stride 1, no padding, output the size of the input: x itself is the column matrix.</summary>
    private static bool IsPointwise(in ConvGeometry g) =>
        g.KernelHeight == 1 && g.KernelWidth == 1 && g.StrideHeight == 1 && g.StrideWidth == 1 && g.PadTop == 0 && g.PadLeft == 0
        && g.OutHeight == g.InHeight && g.OutWidth == g.InWidth;

    private static int ImagesPerBlock(in ConvGeometry g, int kg, int pixels, bool weightGrad)
    {
        if (IsPointwise(g))
        {
            return 1;
        }
        long wanted = Math.Max(1, (TargetColumns + pixels - 1) / Math.Max(1, pixels));
        if (weightGrad)
        {
            wanted = Math.Max(wanted, (g.Batch + MaxPartials - 1) / MaxPartials);
        }
        long byScratch = Math.Max(1, MaxScratch / Math.Max(1, (long)kg * pixels));
        return (int)Math.Max(1, Math.Min(Math.Min(wanted, byScratch), g.Batch));
    }

    /// <summary>
    /// Whether a stride-1 input gradient runs as a convolution of dy: its GEMM has Cg rows (padded to the micro-kernel's
    /// 8) and H·W columns per image where im2col's has Cg·kh·kw rows and OH·OW columns, so it does more multiply-adds;
    /// it is taken while the padding of rows and columns costs at most 3× (64 channels, 13×13 from 11×11 is 1.4×;
    /// 5×5 from 3×3 is 2.8× and still measured faster than im2col + col2im; one input channel is 8× and slower).
    /// </summary>
    private static bool InputGradAsConvolution(in ConvGeometry g)
    {
        long cg = g.InChannels / g.Groups, padded = (cg + 7) / 8 * 8;
        return padded * g.InHeight * g.InWidth <= 3 * cg * g.OutHeight * g.OutWidth;
    }

    /// <summary>y = conv(x, w), see <see cref="IBackend.Conv2d"/>.</summary>
    public static void Forward<T>(Parallelism threads, ConvGeometry g, T* x, T* w, T* y)
        where T : unmanaged, IFloatingPointIeee754<T> => Forward(threads, g, x, w, y, ConvPath.Auto);

    /// <summary>The forward on a chosen path (the path tests compare them); <see cref="ConvPath.Implicit"/> falls back where <see cref="ConvGemm.Supports"/> says no.</summary>
    public static void Forward<T>(Parallelism threads, ConvGeometry g, T* x, T* w, T* y, ConvPath path, T* bias = null)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (path == ConvPath.Winograd && (typeof(T) != typeof(float) || !ConvWinograd.Supports(g)))
        {
            path = ConvPath.Auto;
        }
        int kg = g.InChannels / g.Groups * g.KernelHeight * g.KernelWidth, pixels = g.OutHeight * g.OutWidth;
        if (g.OutputLength == 0)
        {
            return;
        }
        if (kg == 0)
        {
            new Span<T>(y, checked((int)g.OutputLength)).Clear();
            for (int n = 0; bias != null && n < g.Batch; n++)
            {
                // 0 + b, as the separate add gives it.
                AddBias(y + (long)n * g.OutChannels * pixels, pixels, pixels, bias, g.OutChannels);
            }
            return;
        }
        if ((path == ConvPath.Direct && ConvDirect.Supports<T>(g)) || (path == ConvPath.Auto && ConvDirect.PrefersForward<T>(g)))
        {
            ConvDirect.Forward(threads, g, x, w, y, bias);
            return;
        }
        if (typeof(T) == typeof(float) && (path == ConvPath.Winograd || (path == ConvPath.Auto && ConvWinograd.Prefers(g))))
        {
            ConvWinograd.Forward(threads, g, (float*)x, (float*)w, (float*)y, (float*)bias);
            return;
        }
        int og = g.OutChannels / g.Groups;
        if ((path == ConvPath.Broadcast && ConvBroadcast.Supports<T>(ConvWindow.Forward(g), og))
            || (path == ConvPath.Auto && !IsPointwise(g) && ConvBroadcast.Prefers<T>(ConvWindow.Forward(g), og)))
        {
            ConvBroadcast.Forward(threads, g, x, w, y, bias);
            return;
        }
        if (path != ConvPath.Im2Col && !IsPointwise(g) && ConvGemm.Supports(ConvWindow.Forward(g)))
        {
            ConvGemm.Forward(threads, g, x, w, y, bias);
            return;
        }
        int per = ImagesPerBlock(g, kg, pixels, weightGrad: false);
        int blocks = (g.Batch + per - 1) / per;
        if (blocks > 1 && threads.Enabled)
        {
            nint px = (nint)x, pw = (nint)w, py = (nint)y, pb = (nint)bias;
            threads.For(0, blocks, b => ForwardBlock<T>(Serial, g, b * per, Math.Min(per, g.Batch - b * per), (T*)px, (T*)pw, (T*)py, (T*)pb));
            return;
        }
        for (int b = 0; b < blocks; b++)
        {
            ForwardBlock<T>(threads, g, b * per, Math.Min(per, g.Batch - b * per), x, w, y, bias);
        }
    }

    /// <summary>
    /// rows[c·stride + i] += bias[c] for c &lt; count and i &lt; length: a convolution's bias added to its freshly written
    /// (cache-hot) output, planes of an image or rows of a tile, with the bits of the separate broadcast add (each
    /// element one rounded add).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void AddBias<T>(T* rows, long stride, long length, T* bias, int count)
        where T : unmanaged
    {
        int w = Vector512<T>.Count;
        for (int c = 0; c < count; c++)
        {
            T* p = rows + c * stride;
            var b = Vector512.Create(bias[c]);
            long i = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                for (; i + w <= length; i += w)
                {
                    Vector512.Store(Vector512.Load(p + i) + b, p + i);
                }
            }
            for (; i < length; i++)
            {
                p[i] = Gemm.Add(p[i], bias[c]);
            }
        }
    }

    private static void ForwardBlock<T>(Parallelism inner, in ConvGeometry g, int n0, int count, T* x, T* w, T* y, T* bias)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        ForwardBlockUnbiased(inner, g, n0, count, x, w, y);
        if (bias == null)
        {
            return;
        }
        long pixels = (long)g.OutHeight * g.OutWidth;
        for (int t = 0; t < count; t++)
        {
            AddBias(y + (n0 + t) * g.OutChannels * pixels, pixels, pixels, bias, g.OutChannels);
        }
    }

    private static void ForwardBlockUnbiased<T>(Parallelism inner, in ConvGeometry g, int n0, int count, T* x, T* w, T* y)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int groups = g.Groups, cg = g.InChannels / groups, og = g.OutChannels / groups;
        int kg = cg * g.KernelHeight * g.KernelWidth, pixels = g.OutHeight * g.OutWidth;
        long plane = (long)g.InHeight * g.InWidth;
        long inImage = g.InChannels * plane, outImage = (long)g.OutChannels * pixels;
        int width = count * pixels;
        if (IsPointwise(g))
        {
            for (int gi = 0; gi < groups; gi++)
            {
                Gemm.Run(inner, false, false, 1, og, pixels, kg, 1, w + (long)gi * og * kg, 0,
                    x + n0 * inImage + gi * cg * plane, 0, 0, y + n0 * outImage + (long)gi * og * pixels, 0);
            }
            return;
        }
        T[] colsArray = ArrayPool<T>.Shared.Rent(checked(kg * width));
        T[]? outArray = count > 1 ? ArrayPool<T>.Shared.Rent(checked(og * width)) : null;
        try
        {
            fixed (T* cols = colsArray)
            fixed (T* scratch = outArray)
            {
                for (int gi = 0; gi < groups; gi++)
                {
                    for (int t = 0; t < count; t++)
                    {
                        Im2Col(g, x + (n0 + t) * inImage + gi * cg * plane, cg, cols + (long)t * pixels, width);
                    }
                    T* wg = w + (long)gi * og * kg;
                    if (count == 1)
                    {
                        Gemm.Run(inner, false, false, 1, og, pixels, kg, 1, wg, 0, cols, 0, 0, y + n0 * outImage + (long)gi * og * pixels, 0);
                        continue;
                    }
                    Gemm.Run(inner, false, false, 1, og, width, kg, 1, wg, 0, cols, 0, 0, scratch, 0);
                    for (int t = 0; t < count; t++)
                    {
                        T* dst = y + (n0 + t) * outImage + (long)gi * og * pixels;
                        for (int o = 0; o < og; o++)
                        {
                            new ReadOnlySpan<T>(scratch + (long)o * width + (long)t * pixels, pixels).CopyTo(new Span<T>(dst + (long)o * pixels, pixels));
                        }
                    }
                }
            }
        }
        finally
        {
            ArrayPool<T>.Shared.Return(colsArray);
            if (outArray is not null)
            {
                ArrayPool<T>.Shared.Return(outArray);
            }
        }
    }

    /// <summary>gradX = the transposed convolution of gradY, see <see cref="IBackend.Conv2dInputGrad"/>.</summary>
    public static void InputGrad<T>(Parallelism threads, ConvGeometry g, T* dy, T* w, T* dx)
        where T : unmanaged, IFloatingPointIeee754<T> => InputGrad(threads, g, dy, w, dx, ConvPath.Auto);

    /// <summary>The input gradient on a chosen path; <see cref="ConvPath.Implicit"/> needs stride 1 and falls back otherwise.</summary>
    public static void InputGrad<T>(Parallelism threads, ConvGeometry g, T* dy, T* w, T* dx, ConvPath path)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (path == ConvPath.Winograd && (typeof(T) != typeof(float) || !ConvWinograd.SupportsInputGrad(g)))
        {
            path = ConvPath.Auto;
        }
        int cg = g.InChannels / g.Groups;
        int kg = cg * g.KernelHeight * g.KernelWidth, pixels = g.OutHeight * g.OutWidth;
        if (g.InputLength == 0)
        {
            return;
        }
        if (kg == 0 || pixels == 0 || g.OutChannels == 0)
        {
            new Span<T>(dx, checked((int)g.InputLength)).Clear();
            return;
        }
        if ((path == ConvPath.Direct && ConvDirect.SupportsInputGrad<T>(g)) || (path == ConvPath.Auto && ConvDirect.PrefersInputGrad<T>(g)))
        {
            ConvDirect.InputGrad(threads, g, dy, w, dx);
            return;
        }
        if (typeof(T) == typeof(float) && (path == ConvPath.Winograd || (path == ConvPath.Auto && ConvWinograd.PrefersInputGrad(g))))
        {
            ConvWinograd.InputGrad(threads, g, (float*)dy, (float*)w, (float*)dx);
            return;
        }
        bool strideOne = g.StrideHeight == 1 && g.StrideWidth == 1;
        if ((path == ConvPath.Broadcast && ConvBroadcast.SupportsInputGrad<T>(g))
            || (path == ConvPath.Auto && !IsPointwise(g) && ConvBroadcast.PrefersInputGrad<T>(g)))
        {
            ConvBroadcast.InputGrad(threads, g, dy, w, dx);
            return;
        }
        if (path != ConvPath.Im2Col && strideOne && !IsPointwise(g)
            && ConvGemm.Supports(ConvWindow.InputGrad(g)) && (path == ConvPath.Implicit || InputGradAsConvolution(g)))
        {
            ConvGemm.InputGrad(threads, g, dy, w, dx);
            return;
        }
        int per = ImagesPerBlock(g, kg, pixels, weightGrad: false);
        int blocks = (g.Batch + per - 1) / per;
        if (blocks > 1 && threads.Enabled)
        {
            nint pdy = (nint)dy, pw = (nint)w, pdx = (nint)dx;
            threads.For(0, blocks, b => InputGradBlock<T>(Serial, g, b * per, Math.Min(per, g.Batch - b * per), (T*)pdy, (T*)pw, (T*)pdx));
            return;
        }
        for (int b = 0; b < blocks; b++)
        {
            InputGradBlock<T>(threads, g, b * per, Math.Min(per, g.Batch - b * per), dy, w, dx);
        }
    }

    private static void InputGradBlock<T>(Parallelism inner, in ConvGeometry g, int n0, int count, T* dy, T* w, T* dx)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int groups = g.Groups, cg = g.InChannels / groups, og = g.OutChannels / groups;
        int kg = cg * g.KernelHeight * g.KernelWidth, pixels = g.OutHeight * g.OutWidth;
        long plane = (long)g.InHeight * g.InWidth;
        long inImage = g.InChannels * plane, outImage = (long)g.OutChannels * pixels;
        int width = count * pixels;
        if (IsPointwise(g))
        {
            for (int gi = 0; gi < groups; gi++)
            {
                Gemm.Run(inner, true, false, 1, kg, pixels, og, 1, w + (long)gi * og * kg, 0,
                    dy + n0 * outImage + (long)gi * og * pixels, 0, 0, dx + n0 * inImage + gi * cg * plane, 0);
            }
            return;
        }
        T[] colsArray = ArrayPool<T>.Shared.Rent(checked(kg * width));
        T[]? dyArray = count > 1 ? ArrayPool<T>.Shared.Rent(checked(og * width)) : null;
        try
        {
            fixed (T* cols = colsArray)
            fixed (T* dyBlock = dyArray)
            {
                for (int gi = 0; gi < groups; gi++)
                {
                    T* rhs = count == 1 ? dy + n0 * outImage + (long)gi * og * pixels : GatherRows(dy, n0, count, outImage, gi * og, og, pixels, dyBlock);
                    Gemm.Run(inner, true, false, 1, kg, width, og, 1, w + (long)gi * og * kg, 0, rhs, 0, 0, cols, 0);
                    for (int t = 0; t < count; t++)
                    {
                        T* image = dx + (n0 + t) * inImage + gi * cg * plane;
                        new Span<T>(image, checked((int)(cg * plane))).Clear();
                        Col2Im(g, cols + (long)t * pixels, width, cg, image);
                    }
                }
            }
        }
        finally
        {
            ArrayPool<T>.Shared.Return(colsArray);
            if (dyArray is not null)
            {
                ArrayPool<T>.Shared.Return(dyArray);
            }
        }
    }

    /// <summary>gradW = Σ over images of gradY·colsᵀ, see <see cref="IBackend.Conv2dWeightGrad"/>.</summary>
    public static void WeightGrad<T>(Parallelism threads, ConvGeometry g, T* x, T* dy, T* dw)
        where T : unmanaged, IFloatingPointIeee754<T> => WeightGrad(threads, g, x, dy, dw, ConvPath.Auto);

    /// <summary>The weight gradient on a chosen path.</summary>
    public static void WeightGrad<T>(Parallelism threads, ConvGeometry g, T* x, T* dy, T* dw, ConvPath path)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int cg = g.InChannels / g.Groups;
        int kg = cg * g.KernelHeight * g.KernelWidth, pixels = g.OutHeight * g.OutWidth;
        long weights = g.WeightLength;
        if (weights == 0)
        {
            return;
        }
        if (g.Batch == 0 || pixels == 0)
        {
            new Span<T>(dw, checked((int)weights)).Clear();
            return;
        }
        if (path == ConvPath.Winograd && (typeof(T) != typeof(float) || !ConvWinograd.SupportsWeightGrad(g)))
        {
            path = ConvPath.Auto;
        }
        if ((path == ConvPath.Direct && ConvDirect.Supports<T>(g)) || (path == ConvPath.Auto && ConvDirect.PrefersWeightGrad<T>(g)))
        {
            ConvDirect.WeightGrad(threads, g, x, dy, dw);
            return;
        }
        if (typeof(T) == typeof(float) && (path == ConvPath.Winograd || (path == ConvPath.Auto && ConvWinograd.PrefersWeightGrad(g))))
        {
            ConvWinograd.WeightGrad(threads, g, (float*)x, (float*)dy, (float*)dw);
            return;
        }
        if ((path == ConvPath.Broadcast && ConvBroadcast.SupportsWeightGrad<T>(g))
            || (path == ConvPath.Auto && !IsPointwise(g) && ConvBroadcast.PrefersWeightGrad<T>(g)))
        {
            ConvBroadcast.WeightGrad(threads, g, x, dy, dw);
            return;
        }
        if (path != ConvPath.Im2Col && !IsPointwise(g) && ConvGemm.SupportsWeightGrad(g))
        {
            ConvGemm.WeightGrad(threads, g, x, dy, dw);
            return;
        }
        int per = ImagesPerBlock(g, kg, pixels, weightGrad: true);
        int blocks = (g.Batch + per - 1) / per;
        if (blocks == 1)
        {
            WeightGradBlock<T>(threads, g, 0, g.Batch, x, dy, dw);
            return;
        }
        // Block 0 writes gradW itself, block b > 0 its own partial; the partials are then added in
        // ascending block order, whichever thread computed them.
        T[] partialArray = ArrayPool<T>.Shared.Rent(checked((int)((blocks - 1) * weights)));
        try
        {
            fixed (T* partials = partialArray)
            {
                bool parallelBlocks = threads.Enabled;
                var inner = parallelBlocks ? Serial : threads;
                nint px = (nint)x, pdy = (nint)dy, pdw = (nint)dw, pp = (nint)partials;
                threads.For(0, blocks, b => WeightGradBlock<T>(inner, g, b * per, Math.Min(per, g.Batch - b * per), (T*)px, (T*)pdy,
                    b == 0 ? (T*)pdw : (T*)pp + (b - 1) * weights));
                for (int b = 1; b < blocks; b++)
                {
                    AddInPlace(dw, partials + (b - 1) * weights, (int)weights);
                }
            }
        }
        finally
        {
            ArrayPool<T>.Shared.Return(partialArray);
        }
    }

    private static void WeightGradBlock<T>(Parallelism inner, in ConvGeometry g, int n0, int count, T* x, T* dy, T* dw)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int groups = g.Groups, cg = g.InChannels / groups, og = g.OutChannels / groups;
        int kg = cg * g.KernelHeight * g.KernelWidth, pixels = g.OutHeight * g.OutWidth;
        long plane = (long)g.InHeight * g.InWidth;
        long inImage = g.InChannels * plane, outImage = (long)g.OutChannels * pixels;
        int width = count * pixels;
        if (IsPointwise(g))
        {
            // One image per block: x's channels are the column matrix as they lie.
            for (int gi = 0; gi < groups; gi++)
            {
                Gemm.Run(inner, false, true, 1, og, kg, pixels, 1, dy + n0 * outImage + (long)gi * og * pixels, 0,
                    x + n0 * inImage + gi * cg * plane, 0, 0, dw + (long)gi * og * kg, 0);
            }
            return;
        }
        T[] colsArray = ArrayPool<T>.Shared.Rent(checked(kg * width));
        T[]? dyArray = count > 1 ? ArrayPool<T>.Shared.Rent(checked(og * width)) : null;
        try
        {
            fixed (T* cols = colsArray)
            fixed (T* dyBlock = dyArray)
            {
                for (int gi = 0; gi < groups; gi++)
                {
                    for (int t = 0; t < count; t++)
                    {
                        Im2Col(g, x + (n0 + t) * inImage + gi * cg * plane, cg, cols + (long)t * pixels, width);
                    }
                    T* lhs = count == 1 ? dy + n0 * outImage + (long)gi * og * pixels : GatherRows(dy, n0, count, outImage, gi * og, og, pixels, dyBlock);
                    Gemm.Run(inner, false, true, 1, og, kg, width, 1, lhs, 0, cols, 0, 0, dw + (long)gi * og * kg, 0);
                }
            }
        }
        finally
        {
            ArrayPool<T>.Shared.Return(colsArray);
            if (dyArray is not null)
            {
                ArrayPool<T>.Shared.Return(dyArray);
            }
        }
    }

    /// <summary>dst[i] += src[i] for i &lt; n; each element is one rounding, so vector width does not change bits.</summary>
    private static void AddInPlace<T>(T* dst, T* src, int n)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            for (; i <= n - Vector<T>.Count; i += Vector<T>.Count)
            {
                Vector.Store(Vector.Load(dst + i) + Vector.Load(src + i), dst + i);
            }
        }
        for (; i < n; i++)
        {
            dst[i] += src[i];
        }
    }

    /// <summary>Copies channels [o0, o0 + og) of images [n0, n0 + count) of y side by side into [og, count·pixels].</summary>
    private static T* GatherRows<T>(T* y, int n0, int count, long outImage, int o0, int og, int pixels, T* dst)
        where T : unmanaged
    {
        long width = (long)count * pixels;
        for (int t = 0; t < count; t++)
        {
            T* src = y + (n0 + t) * outImage + (long)o0 * pixels;
            for (int o = 0; o < og; o++)
            {
                new ReadOnlySpan<T>(src + (long)o * pixels, pixels).CopyTo(new Span<T>(dst + o * width + (long)t * pixels, pixels));
            }
        }
        return dst;
    }

    /// <summary>
    /// Writes the column matrix of one image's <paramref name="cg"/> channels (starting at <paramref name="x"/>):
    /// row (c·kh + p)·kw + q, column i·OW + j holds x[c, i·sh + p·dh - padTop, j·sw + q·dw - padLeft] or 0 outside.
    /// Rows are <paramref name="ld"/> apart.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Im2Col<T>(in ConvGeometry g, T* x, int cg, T* cols, long ld)
        where T : unmanaged
    {
        int h = g.InHeight, wIn = g.InWidth, oh = g.OutHeight, ow = g.OutWidth, kh = g.KernelHeight, kw = g.KernelWidth;
        int sh = g.StrideHeight, sw = g.StrideWidth, dh = g.DilationHeight, dw = g.DilationWidth;
        long plane = (long)h * wIn;
        for (int c = 0; c < cg; c++)
        {
            T* xc = x + c * plane;
            for (int p = 0; p < kh; p++)
            {
                for (int q = 0; q < kw; q++)
                {
                    T* row = cols + ((long)(c * kh + p) * kw + q) * ld;
                    int w0 = q * dw - g.PadLeft;
                    // Output columns j whose input column j·sw + w0 lies in [0, W).
                    int jLo = w0 >= 0 ? 0 : Math.Min(ow, (-w0 + sw - 1) / sw);
                    int jHi = wIn - w0 <= 0 ? 0 : Math.Min(ow, (wIn - w0 + sw - 1) / sw);
                    jHi = Math.Max(jHi, jLo);
                    for (int i = 0; i < oh; i++)
                    {
                        T* dst = row + (long)i * ow;
                        int hi = i * sh + p * dh - g.PadTop;
                        if ((uint)hi >= (uint)h)
                        {
                            new Span<T>(dst, ow).Clear();
                            continue;
                        }
                        T* src = xc + (long)hi * wIn + w0;
                        for (int j = 0; j < jLo; j++)
                        {
                            dst[j] = default;
                        }
                        if (sw == 1)
                        {
                            CopyShort(src + jLo, dst + jLo, jHi - jLo);
                        }
                        else
                        {
                            for (int j = jLo; j < jHi; j++)
                            {
                                dst[j] = src[(long)j * sw];
                            }
                        }
                        for (int j = jHi; j < ow; j++)
                        {
                            dst[j] = default;
                        }
                    }
                }
            }
        }
    }

    /// <summary>
    /// Copies n elements: rows here are short (OW is 26, 11 or 3 in a small conv net), so 32-byte
    /// vectors with an overlapping last one instead of a memmove call per row. Reads and writes stay
    /// inside the n elements.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyShort<T>(T* src, T* dst, int n)
        where T : unmanaged
    {
        nuint bytes = (nuint)n * (nuint)sizeof(T);
        byte* s = (byte*)src, d = (byte*)dst;
        if (bytes >= 32)
        {
            nuint i = 0;
            for (; i + 32 <= bytes; i += 32)
            {
                System.Runtime.Intrinsics.Vector256.Store(System.Runtime.Intrinsics.Vector256.Load(s + i), d + i);
            }
            if (i < bytes)
            {
                System.Runtime.Intrinsics.Vector256.Store(System.Runtime.Intrinsics.Vector256.Load(s + bytes - 32), d + bytes - 32);
            }
            return;
        }
        if (bytes >= 16)
        {
            System.Runtime.Intrinsics.Vector128.Store(System.Runtime.Intrinsics.Vector128.Load(s), d);
            System.Runtime.Intrinsics.Vector128.Store(System.Runtime.Intrinsics.Vector128.Load(s + bytes - 16), d + bytes - 16);
            return;
        }
        for (int j = 0; j < n; j++)
        {
            dst[j] = src[j];
        }
    }

    /// <summary>
    /// Adds a column matrix back onto one image's channels (which the caller zeroed): the adjoint of
    /// <see cref="Im2Col"/>. Each input element receives its terms in ascending (p, q) order.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Col2Im<T>(in ConvGeometry g, T* cols, long ld, int cg, T* x)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int h = g.InHeight, wIn = g.InWidth, oh = g.OutHeight, ow = g.OutWidth, kh = g.KernelHeight, kw = g.KernelWidth;
        int sh = g.StrideHeight, sw = g.StrideWidth, dh = g.DilationHeight, dw = g.DilationWidth;
        long plane = (long)h * wIn;
        for (int c = 0; c < cg; c++)
        {
            T* xc = x + c * plane;
            for (int p = 0; p < kh; p++)
            {
                for (int q = 0; q < kw; q++)
                {
                    T* row = cols + ((long)(c * kh + p) * kw + q) * ld;
                    int w0 = q * dw - g.PadLeft;
                    int jLo = w0 >= 0 ? 0 : Math.Min(ow, (-w0 + sw - 1) / sw);
                    int jHi = wIn - w0 <= 0 ? 0 : Math.Min(ow, (wIn - w0 + sw - 1) / sw);
                    for (int i = 0; i < oh; i++)
                    {
                        int hi = i * sh + p * dh - g.PadTop;
                        if ((uint)hi >= (uint)h)
                        {
                            continue;
                        }
                        T* src = row + (long)i * ow;
                        T* dst = xc + (long)hi * wIn + w0;
                        if (sw == 1)
                        {
                            AddInPlace(dst + jLo, src + jLo, jHi - jLo);
                        }
                        else
                        {
                            for (int j = jLo; j < jHi; j++)
                            {
                                dst[(long)j * sw] += src[j];
                            }
                        }
                    }
                }
            }
        }
    }
}
