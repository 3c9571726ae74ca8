using Higher.Reference;

namespace Higher.Conformance.Kernels;

/// <summary>
/// The Reference backend's float32 Winograd F(2×2, 3×3) convolution (<see cref="ConvWinograd"/>): forward (with and
/// without bias) and input gradient against the float64 oracle within the error bound of the algorithm, not of the
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
    public unsafe void ConvWinograd_ForwardAndInputGrad_MatchTheOracleWithinTheirBound_AndAreBitwiseIndependentOfTheThreadCount(int index)
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
        var (y, gx, _, _, _, _) = ConvOracle(g, x, w, dy);
        long pixels = (long)g.OutHeight * g.OutWidth;
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
            fixed (float* px = X, pw = W, pdy = DY, pb = B, py = yw, pyb = yb, pgx = gxw)
            {
                ConvWinograd.Forward(threads, g, px, pw, py, null);
                ConvWinograd.Forward(threads, g, px, pw, pyb, pb);
                ConvWinograd.InputGrad(threads, g, pdy, pw, pgx);
            }
            double[][] got = [Array.ConvertAll(yw, v => (double)v), Array.ConvertAll(yb, v => (double)v), Array.ConvertAll(gxw, v => (double)v)];
            string what = $"{degree} threads {g}";
            if (first is null)
            {
                AssertClose(y, got[0], 0, yBound, $"winograd conv2d {what}");
                // The bias is one rounded add after the convolution: half an ulp of the result more.
                AssertClose(yBiased, got[1], 0, yBound.Select((t, i) => t + Ulps(DType.Float32, 1) * Math.Abs(yBiased[i])).ToArray(), $"winograd conv2d + bias {what}");
                AssertClose(gx, got[2], 0, gxBound, $"winograd input grad {what}");
                for (long i = 0; i < yb.Length; i++)
                {
                    float want = yw[i] + B[i / pixels % g.OutChannels];
                    Assert.True(BitConverter.SingleToInt32Bits(want) == BitConverter.SingleToInt32Bits(yb[i]),
                        $"{what}: y[{i}] = {yb[i]:R} with the bias, {want:R} from the convolution and an add");
                }
                first = got;
                continue;
            }
            for (int k = 0; k < 3; k++)
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
        Assert.NotEqual(broadcast32[0], auto32[0]);
        var auto64 = RunConv<double>(new Parallelism(2), middle, ConvPath.Auto, x, w, dy);
        var broadcast64 = RunConv<double>(new Parallelism(2), middle, ConvPath.Broadcast, x, w, dy);
        var wino64 = RunConv<double>(new Parallelism(2), middle, ConvPath.Winograd, x, w, dy);
        AssertBitwise(broadcast64[0], auto64[0], "float64 auto forward");
        AssertBitwise(broadcast64[1], auto64[1], "float64 auto input grad");
        AssertBitwise(broadcast64[0], wino64[0], "float64 forced Winograd forward");
    }

    /// <summary>Whether <paramref name="path"/> runs Winograd for this direction and dtype (forced where supported, or the automatic choice).</summary>
    private static bool RunsWinograd(ConvPath path, ConvGeometry g, DType dtype, bool inputGrad) =>
        dtype == DType.Float32 && (inputGrad
            ? (path == ConvPath.Winograd && ConvWinograd.SupportsInputGrad(g)) || (path == ConvPath.Auto && ConvWinograd.PrefersInputGrad(g))
            : (path == ConvPath.Winograd && ConvWinograd.Supports(g)) || (path == ConvPath.Auto && ConvWinograd.Prefers(g)));

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
}
