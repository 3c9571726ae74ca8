using Higher.Reference;

namespace Higher.Conformance.Kernels;

/// <summary>
/// The Reference backend's float32 Winograd F(2×2, 3×3) convolution (<see cref="ConvWinograd"/>): forward (with and
/// without bias), input gradient and weight gradient against the float64 oracle within the error bound of the algorithm, not of the
/// direct sum: (C + 16)·u·W with W the same computation in absolute values, computed here from the published
/// matrices; bit for bit across thread counts; and where the automatic choice takes it.
/// </summary>
public sealed partial class ReferenceKernelConformance
{
    /// <summary>
    /// Channel counts 1 to 100 (whole, partial and several 64-channel chunks of the register tile), outputs from 1×1 to
    /// 13×15 (odd and even, one tile row or many, bands of tile rows where the batch is small), padding 0, 1, 2,
    /// asymmetric and cropping, batches 1 to 25: everything <see cref="ConvWinograd.Supports"/> takes.
    /// </summary>
    private static readonly ConvGeometry[] WinogradCases =
    [
        ConvCase(1, 1, 3, 3, 1, 3, 3),
        ConvCase(2, 3, 4, 4, 5, 3, 3),
        ConvCase(1, 16, 5, 5, 16, 3, 3, padTop: 1, padLeft: 1),
        ConvCase(3, 17, 6, 7, 20, 3, 3, padTop: 1, padLeft: 0, padBottom: 0, padRight: 2),
        ConvCase(2, 64, 13, 13, 64, 3, 3),
        ConvCase(1, 64, 13, 13, 64, 3, 3),
        ConvCase(2, 64, 5, 5, 64, 3, 3),
        ConvCase(2, 32, 9, 12, 80, 3, 3, padTop: 2, padLeft: 2),
        ConvCase(1, 100, 8, 6, 130, 3, 3, padTop: 1, padLeft: 1),
        ConvCase(2, 20, 15, 17, 48, 3, 3, padTop: -1, padLeft: 1, padBottom: 0, padRight: -1),
        ConvCase(4, 48, 3, 9, 64, 3, 3, padTop: 0, padLeft: 1),
        ConvCase(25, 64, 13, 13, 64, 3, 3),
    ];

    public static TheoryData<int> WinogradCaseIndices => [.. Enumerable.Range(0, WinogradCases.Length)];

    [Theory]
    [MemberData(nameof(WinogradCaseIndices))]
    public unsafe void ConvWinograd_ForwardAndBothGradients_MatchTheOracleWithinTheirBound_AndAreBitwiseIndependentOfTheThreadCount(int index)
    {
        var g = WinogradCases[index];
        if (!ConvWinograd.Supports(g))
        {
            Assert.Skip("ConvWinograd needs AVX-512 (and AVX2 for its gathers); this machine lacks them.");
        }
        var x = Round(RandomValues(2100 + index, g.InputLength), DType.Float32);
        var w = Round(RandomValues(2200 + index, g.WeightLength), DType.Float32);
        var dy = Round(RandomValues(2300 + index, g.OutputLength), DType.Float32);
        var b = Round(RandomValues(2400 + index, g.OutChannels), DType.Float32);
        var (y, gx, gw, _, _, _) = ConvOracle(g, x, w, dy);
        long pixels = (long)g.OutHeight * g.OutWidth;
        var gwBound = WinogradWeightTolerance(g, x, dy);
        var yBiased = y.Select((v, i) => v + b[i / pixels % g.OutChannels]).ToArray();
        var yBound = WinogradTolerance(g, x, w, inputGrad: false, dy);
        var gxBound = WinogradTolerance(g, x, w, inputGrad: true, dy);
        float[] X = Array.ConvertAll(x, v => (float)v), W = Array.ConvertAll(w, v => (float)v), DY = Array.ConvertAll(dy, v => (float)v);
        float[] B = Array.ConvertAll(b, v => (float)v);
        double[][]? first = null;
        foreach (int degree in new[] { 1, 2, 3 })
        {
            var threads = new Parallelism(degree);
            float[] yw = Enumerable.Repeat(float.NaN, (int)g.OutputLength).ToArray();
            float[] yb = Enumerable.Repeat(float.NaN, (int)g.OutputLength).ToArray();
            float[] gxw = Enumerable.Repeat(float.NaN, (int)g.InputLength).ToArray();
            float[] gww = Enumerable.Repeat(float.NaN, (int)g.WeightLength).ToArray();
            fixed (float* px = X, pw = W, pdy = DY, pb = B, py = yw, pyb = yb, pgx = gxw, pgw = gww)
            {
                ConvWinograd.Forward(threads, g, px, pw, py, null);
                ConvWinograd.Forward(threads, g, px, pw, pyb, pb);
                ConvWinograd.InputGrad(threads, g, pdy, pw, pgx);
                ConvWinograd.WeightGrad(threads, g, px, pdy, pgw);
            }
            double[][] got = [Array.ConvertAll(yw, v => (double)v), Array.ConvertAll(yb, v => (double)v), Array.ConvertAll(gxw, v => (double)v),
                Array.ConvertAll(gww, v => (double)v)];
            string what = $"{degree} threads {g}";
            if (first is null)
            {
                AssertClose(y, got[0], 0, yBound, $"winograd conv2d {what}");
                // The bias is one rounded add after the convolution: half an ulp of the result more.
                AssertClose(yBiased, got[1], 0, yBound.Select((t, i) => t + Ulps(DType.Float32, 1) * Math.Abs(yBiased[i])).ToArray(), $"winograd conv2d + bias {what}");
                AssertClose(gx, got[2], 0, gxBound, $"winograd input grad {what}");
                AssertClose(gw, got[3], 0, gwBound, $"winograd weight grad {what}");
                for (long i = 0; i < yb.Length; i++)
                {
                    float want = yw[i] + B[i / pixels % g.OutChannels];
                    Assert.True(BitConverter.SingleToInt32Bits(want) == BitConverter.SingleToInt32Bits(yb[i]),
                        $"{what}: y[{i}] = {yb[i]:R} with the bias, {want:R} from the convolution and an add");
                }
                first = got;
                continue;
            }
            for (int k = 0; k < got.Length; k++)
            {
                AssertBitwise(first[k], got[k], $"winograd output {k} {what}");
            }
        }
    }

    [Fact]
    public void ConvWinograd_IsTheAutomaticFloat32ChoiceForTheConvNetsMiddleLayer_AndNeverForFloat64()
    {
        var middle = ConvCase(25, 64, 13, 13, 64, 3, 3);
        var last = ConvCase(25, 64, 5, 5, 64, 3, 3);
        var first = ConvCase(25, 1, 28, 28, 64, 3, 3);
        bool available = ConvWinograd.Available;
        Assert.Equal(available, ConvWinograd.Prefers(middle));
        Assert.Equal(available, ConvWinograd.PrefersInputGrad(middle));
        Assert.Equal(available, ConvWinograd.PrefersWeightGrad(middle));
        Assert.False(ConvWinograd.PrefersWeightGrad(last));
        // The last layer's maps: 2×2 tiles cover 16 pixels for its forward's 3×3 and 36 for its input gradient's 5×5.
        Assert.False(ConvWinograd.Prefers(last));
        Assert.False(ConvWinograd.PrefersInputGrad(last));
        Assert.False(ConvWinograd.Prefers(first));
        Assert.False(ConvWinograd.PrefersInputGrad(first));
        Assert.False(ConvWinograd.Prefers(ConvCase(2, 64, 13, 13, 64, 3, 3, sh: 2, sw: 2)));
        Assert.False(ConvWinograd.Prefers(ConvCase(2, 64, 13, 13, 64, 3, 3, groups: 2)));
        Assert.False(ConvWinograd.Prefers(ConvCase(2, 64, 13, 13, 64, 3, 3, dh: 2, dw: 2)));
        // 20 channels pad to 32 (60 % waste); 70 to 80 (14 %) is taken.
        Assert.False(ConvWinograd.Prefers(ConvCase(2, 20, 13, 13, 64, 3, 3)));
        Assert.Equal(available, ConvWinograd.Prefers(ConvCase(2, 70, 13, 13, 64, 3, 3)));
        // Wider than measured: forced only. Past 1,020 channels U would pass 64 MiB: not at all.
        Assert.False(ConvWinograd.Prefers(ConvCase(2, 256, 13, 13, 256, 3, 3)));
        Assert.Equal(available, ConvWinograd.Supports(ConvCase(1, 1020, 4, 4, 1020, 3, 3)));
        Assert.False(ConvWinograd.Supports(ConvCase(1, 1024, 4, 4, 1024, 3, 3)));
        Assert.False(ConvWinograd.Supports(ConvCase(1, 16, 4, 4, 1024, 3, 3)));
        if (!available)
        {
            return;
        }
        // The automatic float32 forward has the Winograd bits; float64 the broadcast path's.
        var x = Round(RandomValues(2600, middle.InputLength), DType.Float32);
        var w = Round(RandomValues(2601, middle.WeightLength), DType.Float32);
        var dy = Round(RandomValues(2602, middle.OutputLength), DType.Float32);
        var auto32 = RunConv<float>(new Parallelism(2), middle, ConvPath.Auto, x, w, dy);
        var wino32 = RunConv<float>(new Parallelism(2), middle, ConvPath.Winograd, x, w, dy);
        var broadcast32 = RunConv<float>(new Parallelism(2), middle, ConvPath.Broadcast, x, w, dy);
        AssertBitwise(wino32[0], auto32[0], "auto forward");
        AssertBitwise(wino32[1], auto32[1], "auto input grad");
        AssertBitwise(wino32[2], auto32[2], "auto weight grad");
        Assert.NotEqual(broadcast32[2], auto32[2]);
        Assert.NotEqual(broadcast32[0], auto32[0]);
        var auto64 = RunConv<double>(new Parallelism(2), middle, ConvPath.Auto, x, w, dy);
        var broadcast64 = RunConv<double>(new Parallelism(2), middle, ConvPath.Broadcast, x, w, dy);
        var wino64 = RunConv<double>(new Parallelism(2), middle, ConvPath.Winograd, x, w, dy);
        AssertBitwise(broadcast64[0], auto64[0], "float64 auto forward");
        AssertBitwise(broadcast64[1], auto64[1], "float64 auto input grad");
        AssertBitwise(broadcast64[2], auto64[2], "float64 auto weight grad");
        AssertBitwise(broadcast64[0], wino64[0], "float64 forced Winograd forward");
    }

    /// <summary>
    /// One infinite element, against the same call with it finite: in the forward (x) and the input gradient (dy) it
    /// reaches exactly the outputs whose sums contain it, every other output keeping its bits; in the weight gradient (x)
    /// it reaches every sum that contains it, and nothing outside its own input channel keeps other than its bits (taps
    /// of its channel whose sums do not contain it may turn non-finite: the transforms mix a tile's taps).
    /// </summary>
    [Fact]
    public unsafe void ConvWinograd_AnInfiniteInput_ReachesOnlyItsTilesOutputsAndItsChannelsWeightGradient()
    {
        var g = ConvCase(2, 3, 9, 10, 16, 3, 3, padTop: 1, padLeft: 0);
        if (!ConvWinograd.Supports(g))
        {
            Assert.Skip("ConvWinograd needs AVX-512 (and AVX2 for its gathers); this machine lacks them.");
        }
        var x = Round(RandomValues(2700, g.InputLength), DType.Float32);
        var w = Round(RandomValues(2701, g.WeightLength), DType.Float32);
        var dy = Round(RandomValues(2702, g.OutputLength), DType.Float32);
        // Between them at every position of a tile's 4×4 window: x[0, 1, 4, 5] is at window row 1 and column 1 of one
        // tile and row 3, column 3 of another (slab row 5 with the top pad of 1, column 5); dy[1, 7, 3, 4] at row 0 or 2
        // and column 0 or 2 of the input gradient's tiles (its slab pads by 2 − pad: 1 row, 2 columns).
        long xAt = ((0 * 3 + 1) * 9 + 4) * 10 + 5, dyAt = ((1 * 16 + 7) * (long)g.OutHeight + 3) * g.OutWidth + 4;
        var xInf = (double[])x.Clone();
        xInf[xAt] = double.PositiveInfinity;
        var dyInf = (double[])dy.Clone();
        dyInf[dyAt] = double.NegativeInfinity;
        var (yExact, _, gwExact, _, _, _) = ConvOracle(g, xInf, w, dy);
        var (_, gxExact, _, _, _, _) = ConvOracle(g, x, w, dyInf);
        var clean = RunWinograd(g, x, w, dy);
        var withX = RunWinograd(g, xInf, w, dy);
        var withDy = RunWinograd(g, x, w, dyInf);
        Assert.True(yExact.Any(v => !double.IsFinite(v)) && gxExact.Any(v => !double.IsFinite(v)) && gwExact.Any(v => !double.IsFinite(v)));
        for (int i = 0; i < yExact.Length; i++)
        {
            bool reached = !double.IsFinite(yExact[i]);
            Assert.True(reached ? !double.IsFinite(withX[0][i]) : BitConverter.DoubleToInt64Bits(withX[0][i]) == BitConverter.DoubleToInt64Bits(clean[0][i]),
                $"y[{i}] = {withX[0][i]}, oracle {yExact[i]}, finite run {clean[0][i]}");
        }
        for (int i = 0; i < gxExact.Length; i++)
        {
            bool reached = !double.IsFinite(gxExact[i]);
            Assert.True(reached ? !double.IsFinite(withDy[1][i]) : BitConverter.DoubleToInt64Bits(withDy[1][i]) == BitConverter.DoubleToInt64Bits(clean[1][i]),
                $"gradX[{i}] = {withDy[1][i]}, oracle {gxExact[i]}, finite run {clean[1][i]}");
        }
        int sameChannel = 0;
        for (int i = 0; i < gwExact.Length; i++)
        {
            int channel = i / 9 % g.InChannels;
            if (!double.IsFinite(gwExact[i]))
            {
                Assert.True(!double.IsFinite(withX[2][i]), $"gradW[{i}] = {withX[2][i]}, oracle {gwExact[i]}");
            }
            else if (channel != 1)
            {
                Assert.True(BitConverter.DoubleToInt64Bits(withX[2][i]) == BitConverter.DoubleToInt64Bits(clean[2][i]),
                    $"gradW[{i}] (input channel {channel}) = {withX[2][i]}, finite run {clean[2][i]}");
            }
            sameChannel += channel == 1 ? 1 : 0;
        }
        Assert.Equal(16 * 9, sameChannel);
    }

    /// <summary>y, gradX and gradW by ConvWinograd on two threads, each output starting as NaN.</summary>
    private static unsafe double[][] RunWinograd(ConvGeometry g, double[] x, double[] w, double[] dy)
    {
        float[] X = Array.ConvertAll(x, v => (float)v), W = Array.ConvertAll(w, v => (float)v), DY = Array.ConvertAll(dy, v => (float)v);
        float[] y = Enumerable.Repeat(float.NaN, (int)g.OutputLength).ToArray();
        float[] gx = Enumerable.Repeat(float.NaN, (int)g.InputLength).ToArray();
        float[] gw = Enumerable.Repeat(float.NaN, (int)g.WeightLength).ToArray();
        var threads = new Parallelism(2);
        fixed (float* px = X, pw = W, pdy = DY, py = y, pgx = gx, pgw = gw)
        {
            ConvWinograd.Forward(threads, g, px, pw, py, null);
            ConvWinograd.InputGrad(threads, g, pdy, pw, pgx);
            ConvWinograd.WeightGrad(threads, g, px, pdy, pgw);
        }
        return [Array.ConvertAll(y, v => (double)v), Array.ConvertAll(gx, v => (double)v), Array.ConvertAll(gw, v => (double)v)];
    }

    /// <summary>Whether <paramref name="path"/> runs Winograd for this output (0 forward, 1 input gradient, 2 weight gradient) and dtype (forced where supported, or the automatic choice).</summary>
    private static bool RunsWinograd(ConvPath path, ConvGeometry g, DType dtype, int output) =>
        dtype == DType.Float32 && output switch
        {
            0 => (path == ConvPath.Winograd && ConvWinograd.Supports(g)) || (path == ConvPath.Auto && ConvWinograd.Prefers(g)),
            1 => (path == ConvPath.Winograd && ConvWinograd.SupportsInputGrad(g)) || (path == ConvPath.Auto && ConvWinograd.PrefersInputGrad(g)),
            _ => (path == ConvPath.Winograd && ConvWinograd.SupportsWeightGrad(g)) || (path == ConvPath.Auto && ConvWinograd.PrefersWeightGrad(g)),
        };

    // |Bᵀ|, |G| and |Aᵀ| of F(2×2, 3×3) (Lavin and Gray 2016): Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1],
    // G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1], Aᵀ = [1 1 1 0; 0 1 −1 −1].
    private static readonly double[,] AbsBt = { { 1, 0, 1, 0 }, { 0, 1, 1, 0 }, { 0, 1, 1, 0 }, { 0, 1, 0, 1 } };
    private static readonly double[,] AbsG = { { 1, 0, 0 }, { 0.5, 0.5, 0.5 }, { 0.5, 0.5, 0.5 }, { 0, 0, 1 } };
    private static readonly double[,] AbsAt = { { 1, 1, 1, 0 }, { 0, 1, 1, 1 } };

    /// <summary>
    /// (C + 16)·u·W per output of the Winograd forward (or of the input gradient, the correlation of dy zero-padded by
    /// 2 − pad with W[o, c] rotated), W = Σ_c |Aᵀ|(|G||g_c||G|ᵀ ⊙ |Bᵀ||d_c||B|)|A|: first order in u, 4 roundings for
    /// U = G g Gᵀ, 2 for V = Bᵀ d B, one per channel in the FMA chain, 4 in the output transform, and slack.
    /// </summary>
    private static double[] WinogradTolerance(ConvGeometry g, double[] x, double[] w, bool inputGrad, double[] dy)
    {
        int batch = g.Batch;
        int cs = inputGrad ? g.OutChannels : g.InChannels, sh = inputGrad ? g.OutHeight : g.InHeight, sw = inputGrad ? g.OutWidth : g.InWidth;
        int k = inputGrad ? g.InChannels : g.OutChannels, h = inputGrad ? g.InHeight : g.OutHeight, wd = inputGrad ? g.InWidth : g.OutWidth;
        int pt = inputGrad ? 2 - g.PadTop : g.PadTop, pl = inputGrad ? 2 - g.PadLeft : g.PadLeft;
        double[] src = inputGrad ? dy : x;
        // |G||g||G|ᵀ per (source channel, destination channel).
        var gu = new double[cs * k * 16];
        for (int c = 0; c < cs; c++)
        {
            for (int kk = 0; kk < k; kk++)
            {
                var kern = new double[3, 3];
                for (int p = 0; p < 3; p++)
                {
                    for (int q = 0; q < 3; q++)
                    {
                        kern[p, q] = Math.Abs(inputGrad ? w[((c * g.InChannels + kk) * 3 + 2 - p) * 3 + 2 - q] : w[((kk * g.InChannels + c) * 3 + p) * 3 + q]);
                    }
                }
                for (int i = 0; i < 4; i++)
                {
                    for (int j = 0; j < 4; j++)
                    {
                        double s = 0;
                        for (int p = 0; p < 3; p++)
                        {
                            for (int q = 0; q < 3; q++)
                            {
                                s += AbsG[i, p] * kern[p, q] * AbsG[j, q];
                            }
                        }
                        gu[(c * k + kk) * 16 + i * 4 + j] = s;
                    }
                }
            }
        }
        var bound = new double[(long)batch * k * h * wd];
        var bd = new double[cs * 16];
        for (int n = 0; n < batch; n++)
        {
            for (int ti = 0; ti < (h + 1) / 2; ti++)
            {
                for (int tj = 0; tj < (wd + 1) / 2; tj++)
                {
                    // |Bᵀ||d_c||B| per source channel.
                    for (int c = 0; c < cs; c++)
                    {
                        for (int i = 0; i < 4; i++)
                        {
                            for (int j = 0; j < 4; j++)
                            {
                                double s = 0;
                                for (int r = 0; r < 4; r++)
                                {
                                    for (int q = 0; q < 4; q++)
                                    {
                                        int row = 2 * ti - pt + r, col = 2 * tj - pl + q;
                                        if (row < 0 || row >= sh || col < 0 || col >= sw || AbsBt[i, r] == 0 || AbsBt[j, q] == 0)
                                        {
                                            continue;
                                        }
                                        s += Math.Abs(src[((long)(n * cs + c) * sh + row) * sw + col]);
                                    }
                                }
                                bd[c * 16 + i * 4 + j] = s;
                            }
                        }
                    }
                    for (int kk = 0; kk < k; kk++)
                    {
                        var m = new double[16];
                        for (int c = 0; c < cs; c++)
                        {
                            for (int e = 0; e < 16; e++)
                            {
                                m[e] += gu[(c * k + kk) * 16 + e] * bd[c * 16 + e];
                            }
                        }
                        for (int a = 0; a < 2; a++)
                        {
                            for (int b2 = 0; b2 < 2; b2++)
                            {
                                int i = 2 * ti + a, j = 2 * tj + b2;
                                if (i >= h || j >= wd)
                                {
                                    continue;
                                }
                                double s = 0;
                                for (int r = 0; r < 4; r++)
                                {
                                    for (int q = 0; q < 4; q++)
                                    {
                                        s += AbsAt[a, r] * m[r * 4 + q] * AbsAt[b2, q];
                                    }
                                }
                                bound[((long)(n * k + kk) * h + i) * wd + j] = (cs + 16) * Ulps(DType.Float32, 1) * s;
                            }
                        }
                    }
                }
            }
        }
        return bound;
    }

    /// <summary>
    /// (T + 16)·u·W per weight-gradient element, T = N·tiles the terms of its longest chain plus the chunk additions,
    /// W[k, c, p, q] = Σ_{i,j} |G|[i,p]·|G|[j,q]·Σ_{n,t} (|A||dy_t||A|ᵀ)[i,j]·(|Bᵀ||d_c||B|)[i,j]: 2 roundings for V, 2 for
    /// D, one per term of the chain over tiles, the chunks' additions, 4 in Gᵀ·G, and slack.
    /// </summary>
    private static double[] WinogradWeightTolerance(ConvGeometry g, double[] x, double[] dy)
    {
        int th = (g.OutHeight + 1) / 2, tw = (g.OutWidth + 1) / 2, cs = g.InChannels, k = g.OutChannels;
        var absA = new double[,] { { 1, 0 }, { 1, 1 }, { 1, 1 }, { 0, 1 } };
        var du = new double[k * cs * 16];
        var bd = new double[cs * 16];
        var dd = new double[k * 16];
        for (int n = 0; n < g.Batch; n++)
        {
            for (int ti = 0; ti < th; ti++)
            {
                for (int tj = 0; tj < tw; tj++)
                {
                    for (int c = 0; c < cs; c++)
                    {
                        for (int e = 0; e < 16; e++)
                        {
                            int i = e / 4, j = e % 4;
                            double s = 0;
                            for (int r = 0; r < 4; r++)
                            {
                                for (int q = 0; q < 4; q++)
                                {
                                    int row = 2 * ti - g.PadTop + r, col = 2 * tj - g.PadLeft + q;
                                    if (row >= 0 && row < g.InHeight && col >= 0 && col < g.InWidth)
                                    {
                                        s += AbsBt[i, r] * AbsBt[j, q] * Math.Abs(x[((long)(n * cs + c) * g.InHeight + row) * g.InWidth + col]);
                                    }
                                }
                            }
                            bd[c * 16 + e] = s;
                        }
                    }
                    for (int kk = 0; kk < k; kk++)
                    {
                        for (int e = 0; e < 16; e++)
                        {
                            int i = e / 4, j = e % 4;
                            double s = 0;
                            for (int a = 0; a < 2; a++)
                            {
                                for (int b = 0; b < 2; b++)
                                {
                                    int row = 2 * ti + a, col = 2 * tj + b;
                                    if (row < g.OutHeight && col < g.OutWidth)
                                    {
                                        s += absA[i, a] * absA[j, b] * Math.Abs(dy[((long)(n * k + kk) * g.OutHeight + row) * g.OutWidth + col]);
                                    }
                                }
                            }
                            dd[kk * 16 + e] = s;
                        }
                    }
                    for (int kk = 0; kk < k; kk++)
                    {
                        for (int c = 0; c < cs; c++)
                        {
                            for (int e = 0; e < 16; e++)
                            {
                                du[(kk * cs + c) * 16 + e] += dd[kk * 16 + e] * bd[c * 16 + e];
                            }
                        }
                    }
                }
            }
        }
        long terms = (long)g.Batch * th * tw + 16;
        var bound = new double[g.WeightLength];
        for (int pair = 0; pair < k * cs; pair++)
        {
            for (int p = 0; p < 3; p++)
            {
                for (int q = 0; q < 3; q++)
                {
                    double s = 0;
                    for (int e = 0; e < 16; e++)
                    {
                        s += AbsG[e / 4, p] * AbsG[e % 4, q] * du[pair * 16 + e];
                    }
                    bound[pair * 9 + p * 3 + q] = terms * Ulps(DType.Float32, 1) * s;
                }
            }
        }
        return bound;
    }
}
