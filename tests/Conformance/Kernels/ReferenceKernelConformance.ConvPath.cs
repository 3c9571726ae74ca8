using System.Numerics;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Higher.Reference;

namespace Higher.Conformance.Kernels;

/// <summary>
/// The Reference convolution's four paths (im2col + GEMM; the implicit GEMM that packs its panels straight from
/// the image, with a stride-1 input gradient as a convolution of dy; the direct convolution of shallow reductions; the
/// broadcast path that reads the image through offset tables)
/// each forced on every case, against the float64 oracle with the suite's tolerances, and bit for bit across thread
/// counts. The extra cases aim at the implicit path's edges: panels that straddle images and rows, partial row panels, rows longer than a vector or a panel,
/// padding that crops dy, dilation, groups, strides on the forward, reductions over several depth blocks (stored
/// straight and through the tile) up to the deepest it packs, and weight
/// gradients over several blocks of output pixels (partial weight-column panels, padding, strides) and, with few
/// weight columns, over several chunks of them; and then at the direct path's (see the comment in the list).
/// </summary>
public sealed partial class ReferenceKernelConformance
{
    /// <summary>The deepest reduction the direct path takes (3 channels × 4×4 = <see cref="ConvDirect.MaxDepth"/>), with asymmetric padding.</summary>
    private static readonly ConvGeometry DirectAtBound = ConvCase(3, 3, 11, 12, 5, 4, 4, padTop: 1, padLeft: 2, padBottom: 2, padRight: 1);

    /// <summary>One term deeper (7×7 over one channel): forced Direct falls back to the implicit GEMM.</summary>
    private static readonly ConvGeometry DirectPastBound = ConvCase(2, 1, 12, 13, 6, 7, 7, padTop: 3, padLeft: 2);

    /// <summary>The deepest reduction the direct input gradient takes (256 output channels × 4×4 = <see cref="ConvDirect.MaxInputGradDepth"/>).</summary>
    private static readonly ConvGeometry InputGradAtBound = ConvCase(1, 1, 6, 6, 256, 4, 4, padTop: 1, padLeft: 0);

    /// <summary>One output channel more: forced Direct falls back to im2col for the input gradient (and still runs the other two).</summary>
    private static readonly ConvGeometry InputGradPastBound = ConvCase(1, 1, 6, 6, 257, 4, 4, padTop: 1, padLeft: 0);

    private static readonly ConvGeometry[] ConvPathCases =
    [
        .. ConvCases,
        ConvCase(5, 16, 9, 9, 12, 3, 3),
        ConvCase(3, 9, 8, 7, 10, 3, 3, padTop: 2, padLeft: 1, dh: 2, dw: 2),
        ConvCase(2, 8, 6, 9, 5, 2, 4, padTop: 0, padLeft: 3, padBottom: 1, padRight: 0),
        ConvCase(2, 8, 5, 5, 8, 3, 3, padTop: 3, padLeft: 4, padBottom: 1, padRight: 5),
        ConvCase(3, 8, 6, 6, 8, 3, 3, padTop: 1, padLeft: 1, groups: 8),
        ConvCase(1, 3, 5, 70, 7, 3, 3, padLeft: 1),
        ConvCase(2, 4, 1, 37, 6, 1, 5, padLeft: 2),
        ConvCase(2, 12, 9, 11, 6, 3, 3, sh: 2, sw: 2, padTop: 1, padLeft: 1),
        ConvCase(2, 12, 9, 11, 6, 3, 5, sh: 1, sw: 3, padTop: 1, padLeft: 2, dh: 2),
        ConvCase(2, 10, 8, 8, 9, 5, 5, padTop: 2, padLeft: 2, dh: 1, dw: 2, groups: 1),
        ConvCase(1, 227, 4, 4, 9, 3, 3, padTop: 1, padLeft: 1),
        ConvCase(1, 230, 4, 4, 9, 3, 3, padTop: 1, padLeft: 1),
        ConvCase(4, 64, 5, 5, 64, 3, 3),
        ConvCase(6, 4, 14, 13, 10, 3, 3, padTop: 1, padLeft: 2, dh: 2),
        ConvCase(10, 8, 15, 17, 9, 3, 3, sh: 2, sw: 2, padTop: 1, padLeft: 1),
        ConvCase(2, 32, 10, 10, 16, 3, 3),
        ConvCase(3, 40, 8, 8, 12, 3, 3, padTop: 1, padLeft: 1),
        ConvCase(9, 1, 28, 28, 5, 3, 3),
        ConvCase(12, 2, 30, 31, 4, 3, 3, padTop: 1, padLeft: 1),
        ConvCase(10, 4, 26, 26, 6, 3, 3, groups: 2),
        // The direct path's edges: 1-3 input channels; output rows of 5 (one masked vector), 16 (one full), 17 (a full
        // vector and one lane), 26 (the first layer of the conv net) and 70 (two pairs of vectors and a masked one);
        // output channels past the last block of 4; padding symmetric, asymmetric and cropping (negative, on one side or
        // both); dilation; 1×5, 5×5 and 3×3 kernels; batch 1 and batches larger than the thread count (several chunks
        // of images in the weight gradient where there are few output channels); and the deepest reduction the path
        // takes beside one deeper, which takes the implicit GEMM instead.
        ConvCase(3, 1, 7, 7, 5, 3, 3),
        ConvCase(2, 1, 18, 18, 6, 3, 3),
        ConvCase(2, 2, 19, 19, 7, 3, 3),
        ConvCase(7, 1, 28, 28, 16, 3, 3),
        ConvCase(1, 1, 30, 30, 9, 3, 3, padTop: 1, padLeft: 1),
        ConvCase(2, 3, 9, 74, 6, 3, 3, dh: 2, dw: 2),
        ConvCase(3, 3, 10, 21, 5, 3, 3, padTop: 2, padLeft: 0, padBottom: 0, padRight: 3),
        ConvCase(2, 2, 12, 22, 6, 3, 3, padTop: -1, padLeft: -2),
        new ConvGeometry(2, 1, 10, 30, 5, 3, 3, 9, 25, 1, 1, -2, 1, 1, 1, 1),
        ConvCase(3, 2, 14, 21, 6, 3, 3, padTop: 2, padLeft: 1, dh: 2, dw: 2),
        ConvCase(2, 3, 4, 40, 5, 1, 5, padLeft: 2),
        ConvCase(2, 1, 20, 20, 6, 5, 5, padTop: 2, padLeft: 2),
        DirectAtBound,
        DirectPastBound,
        // The direct input gradient's: padding wider than the kernel (its window over dy crops), and its deepest
        // reduction over output channels beside one deeper.
        ConvCase(2, 2, 6, 7, 5, 3, 3, padTop: 3, padLeft: 4),
        InputGradAtBound,
        InputGradPastBound,
        // The broadcast path's: output channels padded within one tile (70 of 128 floats; 3 tiles of 32 doubles),
        // reductions over two blocks of 128 with a partial tile of columns (19 channels × 9 = 171), pixel counts off the
        // 6-row tile and over several units and passes (3·9·8 = 216; 2·17·15 = 510), strides, dilation with groups of
        // 64 channels, padding on one side and cropping, and the conv net's 11×11 and 3×3 layers.
        ConvCase(3, 19, 9, 8, 70, 3, 3, padTop: 1, padLeft: 2),
        ConvCase(2, 64, 7, 7, 64, 3, 3, sh: 2, sw: 2, padTop: 1, padLeft: 1),
        ConvCase(2, 16, 9, 9, 128, 3, 3, padTop: 1, padLeft: 1, dh: 2, dw: 2, groups: 2),
        ConvCase(2, 24, 19, 17, 64, 3, 3, padTop: 0, padLeft: 1, padBottom: 1, padRight: 0),
        ConvCase(3, 17, 8, 10, 48, 2, 3, padTop: -1, padLeft: -1),
        ConvCase(2, 64, 13, 13, 64, 3, 3),
        ConvCase(3, 64, 5, 5, 64, 3, 3),
    ];

    public static TheoryData<int> ConvPathCaseIndices => [.. Enumerable.Range(0, ConvPathCases.Length)];

    [Theory]
    [MemberData(nameof(ConvPathCaseIndices))]
    public void Conv2d_EachPath_MatchesOracle_AndIsBitwiseIndependentOfTheThreadCount(int index)
    {
        var g = ConvPathCases[index];
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            var x = Round(RandomValues(800 + index, g.InputLength), dtype);
            var w = Round(RandomValues(900 + index, g.WeightLength), dtype);
            var dy = Round(RandomValues(1000 + index, g.OutputLength), dtype);
            var (y, gx, gw, ya, gxa, gwa) = ConvOracle(g, x, w, dy);
            int cg = g.InChannels / g.Groups, og = g.OutChannels / g.Groups;
            long taps = (long)g.KernelHeight * g.KernelWidth;
            foreach (var path in new[] { ConvPath.Im2Col, ConvPath.Implicit, ConvPath.Direct, ConvPath.Broadcast, ConvPath.Winograd, ConvPath.Auto })
            {
                double[][]? first = null;
                foreach (int degree in new[] { 1, 2, 3 })
                {
                    var threads = new Parallelism(degree);
                    double[][] got = dtype == DType.Float32
                        ? RunConv<float>(threads, g, path, x, w, dy)
                        : RunConv<double>(threads, g, path, x, w, dy);
                    string what = $"{path} {degree} threads {dtype.Name()} {g}";
                    if (first is null)
                    {
                        // Winograd's error is bounded relative to its own absolute-value computation, not to the direct sum's.
                        AssertClose(y, got[0], 0, RunsWinograd(path, g, dtype, 0)
                            ? WinogradTolerance(g, x, w, inputGrad: false, dy) : Tolerance(ya, cg * taps, dtype), $"conv2d {what}");
                        AssertClose(gx, got[1], 0, RunsWinograd(path, g, dtype, 1)
                            ? WinogradTolerance(g, x, w, inputGrad: true, dy) : Tolerance(gxa, og * taps, dtype), $"conv2d input grad {what}");
                        AssertClose(gw, got[2], 0, RunsWinograd(path, g, dtype, 2)
                            ? WinogradWeightTolerance(g, x, dy) : Tolerance(gwa, (long)g.Batch * g.OutHeight * g.OutWidth, dtype), $"conv2d weight grad {what}");
                        first = got;
                        continue;
                    }
                    for (int k = 0; k < 3; k++)
                    {
                        AssertBitwise(first[k], got[k], $"conv output {k} {what}");
                    }
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(ConvPathCaseIndices))]
    public unsafe void Conv2dBias_OnEachPath_IsThatPathsConvolutionFollowedByTheBiasAdd(int index)
    {
        // Each path adds the bias where it stores its output (the direct kernel per block of channels, the implicit GEMM
        // per finished tile, straight or through its scratch tile, im2col per block of images): the same bits as the
        // path's own convolution and then a separate add, on every case and thread count.
        var g = ConvPathCases[index];
        long pixels = (long)g.OutHeight * g.OutWidth;
        foreach (var path in new[] { ConvPath.Im2Col, ConvPath.Implicit, ConvPath.Direct, ConvPath.Broadcast, ConvPath.Winograd, ConvPath.Auto })
        {
            foreach (int degree in new[] { 1, 3 })
            {
                var threads = new Parallelism(degree);
                float[] x = Array.ConvertAll(RandomValues(1400 + index, g.InputLength), v => (float)v);
                float[] w = Array.ConvertAll(RandomValues(1410 + index, g.WeightLength), v => (float)v);
                float[] b = Array.ConvertAll(RandomValues(1420 + index, g.OutChannels), v => (float)v);
                float[] expected = Enumerable.Repeat(float.NaN, (int)g.OutputLength).ToArray();
                float[] fused = Enumerable.Repeat(float.NaN, (int)g.OutputLength).ToArray();
                fixed (float* px = x, pw = w, pb = b, pe = expected, pf = fused)
                {
                    Convolution.Forward(threads, g, px, pw, pe, path);
                    Convolution.Forward(threads, g, px, pw, pf, path, pb);
                }
                for (long i = 0; i < expected.Length; i++)
                {
                    float want = expected[i] + b[i / pixels % g.OutChannels];
                    if (BitConverter.SingleToInt32Bits(want) != BitConverter.SingleToInt32Bits(fused[i]))
                    {
                        Assert.Fail($"{path} {degree} threads {g}: y[{i}] = {fused[i]:R} with the bias, {want:R} from the convolution and an add.");
                    }
                }
            }
        }
    }

    [Fact]
    public void ConvBroadcast_IsTheAutomaticChoiceWhereItsTilesAreAtMostAQuarterPadding()
    {
        bool wide = Avx512F.IsSupported && Vector512.IsHardwareAccelerated;
        bool available = wide || (Vector256.IsHardwareAccelerated && Avx2.IsSupported && Fma.IsSupported);
        // The conv net's 64-channel layers, in float and double: whole tiles with AVX-512 (64 and 32 channels) and AVX2 (16 and 8).
        foreach (var g in new[] { ConvCase(25, 64, 13, 13, 64, 3, 3), ConvCase(25, 64, 5, 5, 64, 3, 3) })
        {
            Assert.Equal(available, ConvBroadcast.Prefers<float>(ConvWindow.Forward(g), 64));
            Assert.Equal(available, ConvBroadcast.Prefers<double>(ConvWindow.Forward(g), 64));
            Assert.Equal(available, ConvBroadcast.PrefersWeightGrad<float>(g));
        }
        // Padding to the float tile: 100 channels to 128 with AVX-512 (28 %, the implicit GEMM keeps them) and to 112
        // with AVX2 (12 %); 112 to 128 (14 %) and 112; 70 to 128 (83 %) and 80 (14 %); 12 to 64 and 16 (33 %).
        Assert.Equal(available && !wide, ConvBroadcast.PrefersWeightGrad<float>(ConvCase(2, 8, 9, 9, 100, 3, 3)));
        Assert.Equal(available, ConvBroadcast.PrefersWeightGrad<float>(ConvCase(2, 8, 9, 9, 112, 3, 3)));
        Assert.Equal(available && !wide, ConvBroadcast.Prefers<float>(ConvWindow.Forward(ConvCase(2, 8, 9, 9, 70, 3, 3)), 70));
        Assert.False(ConvBroadcast.Prefers<float>(ConvWindow.Forward(ConvCase(2, 8, 9, 9, 12, 3, 3)), 12));
        // A forced run takes any channel count.
        Assert.Equal(available, ConvBroadcast.Supports<float>(ConvWindow.Forward(ConvCase(2, 8, 9, 9, 70, 3, 3)), 70));
        Assert.Equal(available, ConvBroadcast.Supports<float>(ConvWindow.Forward(ConvCase(2, 8, 9, 9, 12, 3, 3)), 12));
    }

    [Fact]
    public void ConvDirect_TakesOneGroupStrideOneAndReductionsUpToItsBounds()
    {
        bool avx512 = Avx512F.IsSupported && Vector512.IsHardwareAccelerated;
        Assert.Equal(ConvDirect.MaxDepth, DirectAtBound.InChannels * DirectAtBound.KernelHeight * DirectAtBound.KernelWidth);
        Assert.Equal(avx512, ConvDirect.Supports<float>(DirectAtBound));
        Assert.Equal(avx512, ConvDirect.Supports<double>(DirectAtBound));
        Assert.False(ConvDirect.Supports<float>(DirectPastBound));
        Assert.False(ConvDirect.Supports<float>(ConvCase(2, 2, 9, 9, 4, 3, 3, groups: 2)));
        Assert.False(ConvDirect.Supports<float>(ConvCase(2, 2, 9, 9, 4, 3, 3, sh: 1, sw: 2)));
        // The conv net's first layer takes it in both directions; its 64-channel layers do not.
        var first = ConvCase(25, 1, 28, 28, 64, 3, 3);
        Assert.Equal(avx512, ConvDirect.PrefersForward<float>(first));
        Assert.Equal(avx512, ConvDirect.PrefersWeightGrad<float>(first));
        Assert.False(ConvDirect.Supports<float>(ConvCase(25, 64, 13, 13, 64, 3, 3)));
        Assert.Equal(ConvDirect.MaxInputGradDepth, InputGradAtBound.OutChannels * InputGradAtBound.KernelHeight * InputGradAtBound.KernelWidth);
        Assert.Equal(avx512, ConvDirect.SupportsInputGrad<float>(InputGradAtBound));
        Assert.False(ConvDirect.SupportsInputGrad<float>(InputGradPastBound));
        Assert.Equal(avx512, ConvDirect.SupportsInputGrad<double>(ConvCase(2, ConvDirect.MaxInputGradChannels, 9, 9, 4, 3, 3)));
        Assert.False(ConvDirect.SupportsInputGrad<double>(ConvCase(2, ConvDirect.MaxInputGradChannels + 1, 9, 9, 4, 3, 3)));
        // The first layer's input gradient (64 output channels) stays on im2col, where it was faster.
        Assert.False(ConvDirect.PrefersInputGrad<float>(first));
    }

    /// <summary>
    /// An infinite input reaches only the outputs and weight-gradient elements whose sums contain it, on every path:
    /// the direct weight gradient walks each plane at the padded stride, and the columns past OW (where dy is zero)
    /// must not form 0·∞ with the inputs there. Here x[1, 1, 4, 10] is read by taps q = 1, 2 only and x[0, 0, 2, 11] by
    /// q = 2 only, while both lie where tap q = 0 reads the columns past OW.
    /// </summary>
    [Fact]
    public void Conv2d_InfiniteInput_ReachesOnlyTheSumsThatContainIt()
    {
        var g = ConvCase(2, 2, 9, 12, 5, 3, 3, padTop: 1, padLeft: 0);
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            var x = Round(RandomValues(1100, g.InputLength), dtype);
            var w = Round(RandomValues(1200, g.WeightLength), dtype);
            var dy = Round(RandomValues(1300, g.OutputLength), dtype);
            x[((1 * 2 + 1) * 9 + 4) * 12 + 10] = double.PositiveInfinity;
            x[((0 * 2 + 0) * 9 + 2) * 12 + 11] = double.PositiveInfinity;
            var (y, _, gw, _, _, _) = ConvOracle(g, x, w, dy);
            foreach (var path in new[] { ConvPath.Im2Col, ConvPath.Implicit, ConvPath.Direct, ConvPath.Broadcast, ConvPath.Winograd, ConvPath.Auto })
            {
                double[][] got = dtype == DType.Float32
                    ? RunConv<float>(new Parallelism(2), g, path, x, w, dy)
                    : RunConv<double>(new Parallelism(2), g, path, x, w, dy);
                for (int k = 0; k < y.Length; k++)
                {
                    Assert.True(double.IsFinite(y[k]) == double.IsFinite(got[0][k]), $"conv2d {path} {dtype.Name()}: y[{k}] = {got[0][k]}, oracle {y[k]}");
                }
                // Winograd's weight gradient mixes a tile's taps (V = Bᵀ d B, then Gᵀ dU G), so an infinite input reaches
                // every tap of its (output, input) channel pairs: here it must reach each sum that contains it, and
                // ConvWinograd_AnInfiniteInput_ReachesOnlyItsTilesOutputsAndItsChannelsWeightGradient shows it goes no further.
                bool spreadsOverTaps = RunsWinograd(path, g, dtype, 2);
                for (int k = 0; k < gw.Length; k++)
                {
                    Assert.True(spreadsOverTaps ? double.IsFinite(gw[k]) || !double.IsFinite(got[2][k]) : double.IsFinite(gw[k]) == double.IsFinite(got[2][k]),
                        $"conv2d weight grad {path} {dtype.Name()}: gradW[{k}] = {got[2][k]}, oracle {gw[k]}");
                }
            }
        }
    }

    /// <summary>y, gradX and gradW on one path, each output starting as NaN so that every element must be written.</summary>
    private static unsafe double[][] RunConv<T>(Parallelism threads, ConvGeometry g, ConvPath path, double[] x, double[] w, double[] dy)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        T[] X = Array.ConvertAll(x, T.CreateChecked), W = Array.ConvertAll(w, T.CreateChecked), DY = Array.ConvertAll(dy, T.CreateChecked);
        T[] y = Enumerable.Repeat(T.NaN, (int)g.OutputLength).ToArray();
        T[] gx = Enumerable.Repeat(T.NaN, (int)g.InputLength).ToArray();
        T[] gw = Enumerable.Repeat(T.NaN, (int)g.WeightLength).ToArray();
        fixed (T* px = X, pw = W, pdy = DY, py = y, pgx = gx, pgw = gw)
        {
            Convolution.Forward(threads, g, px, pw, py, path);
            Convolution.InputGrad(threads, g, pdy, pw, pgx, path);
            Convolution.WeightGrad(threads, g, px, pdy, pgw, path);
        }
        return [Array.ConvertAll(y, double.CreateChecked), Array.ConvertAll(gx, double.CreateChecked), Array.ConvertAll(gw, double.CreateChecked)];
    }
}
