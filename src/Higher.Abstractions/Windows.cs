namespace Higher;

/// <summary>
/// Geometry of one 2-D convolution, shared by <see cref="IBackend.Conv2d"/>, its input gradient
/// <see cref="IBackend.Conv2dInputGrad"/> (the transposed convolution) and its weight gradient
/// <see cref="IBackend.Conv2dWeightGrad"/>: the three are the partial derivatives of one trilinear form
/// T(x, W, dy) = Σ dy[n, o, i, j] · W[o, c', p, q] · x[n, g·Cg + c', i·sh + p·dh - padTop, j·sw + q·dw - padLeft],
/// where o lies in group g = o / (O / Groups), c' &lt; Cg = C / Groups, and positions outside x read 0.
/// x is [N, C, H, W], W is [O, C / Groups, kh, kw], y and dy are [N, O, OH, OW], all contiguous row-major.
/// Bottom and right padding are implied by OH and OW, so asymmetric padding ("same" with even
/// kernels) needs no extra parameter. A 1-D convolution is the case H = kh = OH = 1.
/// </summary>
/// <param name="Batch">N.</param>
/// <param name="InChannels">C (a multiple of <paramref name="Groups"/>).</param>
/// <param name="InHeight">H.</param>
/// <param name="InWidth">W.</param>
/// <param name="OutChannels">O (a multiple of <paramref name="Groups"/>).</param>
/// <param name="KernelHeight">kh.</param>
/// <param name="KernelWidth">kw.</param>
/// <param name="OutHeight">OH.</param>
/// <param name="OutWidth">OW.</param>
/// <param name="StrideHeight">sh.</param>
/// <param name="StrideWidth">sw.</param>
/// <param name="PadTop">Rows of zeros before the first input row.</param>
/// <param name="PadLeft">Columns of zeros before the first input column.</param>
/// <param name="DilationHeight">dh.</param>
/// <param name="DilationWidth">dw.</param>
/// <param name="Groups">Independent channel groups.</param>
public readonly record struct ConvGeometry(
    int Batch, int InChannels, int InHeight, int InWidth,
    int OutChannels, int KernelHeight, int KernelWidth,
    int OutHeight, int OutWidth,
    int StrideHeight, int StrideWidth, int PadTop, int PadLeft,
    int DilationHeight, int DilationWidth, int Groups)
{
    /// <summary>Elements of x: N·C·H·W.</summary>
    public long InputLength => (long)Batch * InChannels * InHeight * InWidth;

    /// <summary>Elements of W: O·(C / Groups)·kh·kw.</summary>
    public long WeightLength => (long)OutChannels * (InChannels / Groups) * KernelHeight * KernelWidth;

    /// <summary>Elements of y: N·O·OH·OW.</summary>
    public long OutputLength => (long)Batch * OutChannels * OutHeight * OutWidth;
}

/// <summary>
/// Geometry of a 2-D pooling over <paramref name="Planes"/> independent planes (N·C) of
/// [H, W] each, row-major: output (i, j) covers input rows i·sh + p·dh - padTop (p &lt; kh) and
/// columns j·sw + q·dw - padLeft (q &lt; kw); positions outside the input are padding. The caller
/// chooses OH and OW (ceil mode included) so that every window starts inside the input or its
/// top/left padding, as PyTorch does.
/// </summary>
/// <param name="Planes">N·C.</param>
/// <param name="InHeight">H.</param>
/// <param name="InWidth">W.</param>
/// <param name="OutHeight">OH.</param>
/// <param name="OutWidth">OW.</param>
/// <param name="KernelHeight">kh.</param>
/// <param name="KernelWidth">kw.</param>
/// <param name="StrideHeight">sh.</param>
/// <param name="StrideWidth">sw.</param>
/// <param name="PadTop">Padding rows before the first input row (and, implicitly, after the last).</param>
/// <param name="PadLeft">Padding columns before the first input column (and after the last).</param>
/// <param name="DilationHeight">dh (1 for average pooling).</param>
/// <param name="DilationWidth">dw (1 for average pooling).</param>
public readonly record struct PoolGeometry(
    int Planes, int InHeight, int InWidth, int OutHeight, int OutWidth,
    int KernelHeight, int KernelWidth, int StrideHeight, int StrideWidth,
    int PadTop, int PadLeft, int DilationHeight, int DilationWidth)
{
    /// <summary>Elements of the input: Planes·H·W.</summary>
    public long InputLength => (long)Planes * InHeight * InWidth;

    /// <summary>Elements of the output: Planes·OH·OW.</summary>
    public long OutputLength => (long)Planes * OutHeight * OutWidth;
}

/// <summary>
/// Batch normalization's view of its input, [N, C, S] with S the product of the axes after the
/// channel axis (1 for [N, C]): channel c's N·S values are the blocks of S elements at offsets
/// (n·C + c)·S.
/// </summary>
/// <param name="Batch">N.</param>
/// <param name="Channels">C.</param>
/// <param name="Spatial">S.</param>
/// <param name="Eps">Added to the variance before the inverse square root.</param>
public readonly record struct NormGeometry(int Batch, int Channels, int Spatial, double Eps)
{
    /// <summary>Elements of the input (and output): N·C·S.</summary>
    public long Length => (long)Batch * Channels * Spatial;

    /// <summary>Values per channel: N·S.</summary>
    public long PerChannel => (long)Batch * Spatial;

    /// <summary>Why this geometry is invalid (a size below 1, so a channel has no values for its statistics; eps negative or not finite), or null.</summary>
    public string? Problem() =>
        Batch < 1 || Channels < 1 || Spatial < 1 ? $"[N, C, S] = [{Batch}, {Channels}, {Spatial}] must have every size at least 1"
        : !double.IsFinite(Eps) || Eps < 0 ? $"eps must be finite and non-negative, got {Eps}"
        : null;

    /// <summary>Throws, naming <paramref name="op"/>, when <see cref="Problem"/> finds one.</summary>
    public void Validate(string op)
    {
        if (Problem() is { } problem)
        {
            throw new ArgumentException($"{op}: {problem}.");
        }
    }
}

/// <summary>
/// Which full-size outputs of a fused batch-norm backward (<see cref="IBackend.BatchNormBackward"/>,
/// <see cref="IBackend.BatchNormDoubleBackward"/>) are added into their destination (destination + value, the bits
/// of a separate <see cref="BinaryOp.Add"/>) instead of written: the engine's gradient slots take them this way.
/// </summary>
[Flags]
public enum NormAccumulate
{
    /// <summary>Every output is written.</summary>
    None = 0,

    /// <summary>gradX is added into.</summary>
    GradX = 1,

    /// <summary>The second full-size output (scaledNormalized, or gradGradY) is added into.</summary>
    Second = 2,
}
