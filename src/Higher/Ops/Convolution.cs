using Higher.Tape;

namespace Higher;

/// <summary>
/// A (height, width) pair of integers: a kernel size, stride, padding or dilation. An int n
/// converts to (n, n) and a tuple (h, w) to (h, w), as PyTorch's <c>_pair</c> does.
/// </summary>
/// <param name="Height">The value along the height (rows, axis -2).</param>
/// <param name="Width">The value along the width (columns, axis -1).</param>
public readonly record struct Size2d(int Height, int Width)
{
    /// <summary>(n, n).</summary>
    public static implicit operator Size2d(int value) => new(value, value);

    /// <summary>(h, w).</summary>
    public static implicit operator Size2d((int Height, int Width) value) => new(value.Height, value.Width);

    /// <summary>"(h, w)", or "n" when both are equal.</summary>
    public override string ToString() => Height == Width ? $"{Height}" : $"({Height}, {Width})";
}

/// <summary>
/// The padding of a convolution, as PyTorch's <c>padding</c> argument: explicit zeros on both sides
/// of each spatial axis (an int, a (h, w) pair or a <see cref="Size2d"/>), or "same" (the output
/// has the input's size; stride 1 only; an even total d·(k - 1) puts the extra row and column at
/// the bottom and right, as torch does), or "valid" (no padding).
/// </summary>
/// <param name="Size">The explicit padding (ignored when <paramref name="IsSame"/>).</param>
/// <param name="IsSame">Pad so that the output keeps the input's spatial size.</param>
public readonly record struct ConvPadding(Size2d Size, bool IsSame)
{
    /// <summary>Pad so that the output has the input's size (stride 1).</summary>
    public static ConvPadding Same => new(0, true);

    /// <summary>No padding.</summary>
    public static ConvPadding Valid => new(0, false);

    /// <summary>(n, n) zeros.</summary>
    public static implicit operator ConvPadding(int value) => new(value, false);

    /// <summary>(h, w) zeros.</summary>
    public static implicit operator ConvPadding((int Height, int Width) value) => new(value, false);

    /// <summary>Explicit zeros.</summary>
    public static implicit operator ConvPadding(Size2d value) => new(value, false);

    /// <summary>"same" or "valid" (PyTorch's strings); anything else throws.</summary>
    public static implicit operator ConvPadding(string mode) => Parse(mode);

    /// <summary>"same" → <see cref="Same"/>, "valid" → <see cref="Valid"/>.</summary>
    public static ConvPadding Parse(string mode) => mode switch
    {
        "same" => Same,
        "valid" => Valid,
        _ => throw new ArgumentException($"Convolution padding must be an int, a (height, width) pair, \"same\" or \"valid\"; got \"{mode}\".", nameof(mode)),
    };

    /// <summary>"same", or the explicit size as <see cref="Size2d.ToString"/> writes it.</summary>
    public override string ToString() => IsSame ? "same" : Size.ToString();
}

public sealed partial class Tensor
{
    /// <summary>
    /// 2-D cross-correlation (torch.nn.functional.conv2d): for input x [N, C, H, W] (or unbatched
    /// [C, H, W]) and weight W [O, C/groups, kh, kw],
    /// y[n, o, i, j] = b[o] + Σ_{c ∈ group(o), p, q} W[o, c, p, q] · x̃[n, c, i·sh + p·dh, j·sw + q·dw],
    /// where x̃ is x zero-padded by <paramref name="padding"/> (explicit, or "same"). Output size per
    /// axis: ⌊(H + pad_before + pad_after - d(k - 1) - 1)/s⌋ + 1.
    /// <para>
    /// One backend primitive; the tape saves x and W only. With T(x, W, dy) the trilinear form of
    /// <see cref="ConvGeometry"/>: dx = ConvInputGrad(dy, W) and dW = ConvWeightGrad(x, dy), each a
    /// differentiable op whose own gradients are again these three, so derivatives of every order exist.
    /// db = Σ_{n, i, j} dy.
    /// </para>
    /// </summary>
    /// <param name="input">x: [N, C, H, W] or [C, H, W].</param>
    /// <param name="weight">W: [O, C/groups, kh, kw].</param>
    /// <param name="bias">b: [O], or null.</param>
    /// <param name="stride">Step between output positions (default 1).</param>
    /// <param name="padding">Zeros added on both sides of each spatial axis, or "same" / "valid" (default 0).</param>
    /// <param name="dilation">Spacing between kernel taps (default 1).</param>
    /// <param name="groups">Channel groups: input and output channels split into this many independent convolutions.</param>
    public static Tensor Conv2d(Tensor input, Tensor weight, Tensor? bias = null, Size2d? stride = null, ConvPadding? padding = null,
        Size2d? dilation = null, int groups = 1)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(weight);
        var s = stride ?? 1;
        var p = padding ?? 0;
        var d = dilation ?? 1;
        CheckConvOperands("Conv2d", input, weight, bias, s, p, d, groups);
        bool unbatched = input.Rank == 3;
        var x = unbatched ? input.Unsqueeze(0) : input;
        var geometry = ConvForwardGeometry(x.Shape, weight.Shape, s, p, d, groups);
        var y = bias is null ? ConvPrimitive(x, weight, geometry) : ConvBiasPrimitive(x, weight, bias, geometry);
        return unbatched ? y.Squeeze(0) : y;
    }

    /// <summary>
    /// 1-D cross-correlation (torch.nn.functional.conv1d) of x [N, C, L] (or [C, L]) with W [O, C/groups, k]:
    /// <see cref="Conv2d"/> with height 1.
    /// </summary>
    /// <param name="input">x: [N, C, L] or [C, L].</param>
    /// <param name="weight">W: [O, C/groups, k].</param>
    /// <param name="bias">b: [O], or null.</param>
    /// <param name="stride">Step between output positions.</param>
    /// <param name="padding">Zeros added on both ends (or "same" / "valid" through <paramref name="paddingMode"/>).</param>
    /// <param name="dilation">Spacing between kernel taps.</param>
    /// <param name="groups">Channel groups.</param>
    /// <param name="paddingMode">"same" or "valid" instead of <paramref name="padding"/>, or null.</param>
    public static Tensor Conv1d(Tensor input, Tensor weight, Tensor? bias = null, int stride = 1, int padding = 0, int dilation = 1, int groups = 1,
        string? paddingMode = null)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(weight);
        Check1dOperands("Conv1d", input, weight);
        var p = paddingMode is null ? new ConvPadding((0, padding), false) : ConvPadding.Parse(paddingMode);
        var y = Conv2d(input.Unsqueeze(-2), weight.Unsqueeze(-2), bias, (1, stride), p, (1, dilation), groups);
        return y.Squeeze(-2);
    }

    /// <summary>
    /// 2-D transposed convolution (torch.nn.functional.conv_transpose2d) of x [N, C_in, H, W] (or
    /// [C_in, H, W]) with weight W [C_in, C_out/groups, kh, kw]: the adjoint (input gradient) of the
    /// convolution from [N, C_out, OH, OW] to x's shape whose weight is W, where
    /// OH = (H - 1)·sh - 2·ph + dh·(kh - 1) + output_padding_h + 1 (likewise OW). So it is the
    /// ConvInputGrad primitive: d x = Conv(g, W), dW = ConvWeightGrad(g, x), db = Σ g.
    /// </summary>
    /// <param name="input">x: [N, C_in, H, W] or [C_in, H, W].</param>
    /// <param name="weight">W: [C_in, C_out/groups, kh, kw].</param>
    /// <param name="bias">b: [C_out], or null.</param>
    /// <param name="stride">Stride of the adjoint convolution (default 1).</param>
    /// <param name="padding">Padding of the adjoint convolution, removed from both sides of the output (default 0).</param>
    /// <param name="outputPadding">Rows and columns added at the bottom and right of the output; smaller than the stride or the dilation (default 0).</param>
    /// <param name="groups">Channel groups.</param>
    /// <param name="dilation">Spacing between kernel taps (default 1).</param>
    public static Tensor ConvTranspose2d(Tensor input, Tensor weight, Tensor? bias = null, Size2d? stride = null, Size2d? padding = null,
        Size2d? outputPadding = null, int groups = 1, Size2d? dilation = null)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(weight);
        var s = stride ?? 1;
        var p = padding ?? 0;
        var op = outputPadding ?? 0;
        var d = dilation ?? 1;
        CheckConvTransposeOperands(input, weight, bias, s, p, op, d, groups);
        bool unbatched = input.Rank == 3;
        var x = unbatched ? input.Unsqueeze(0) : input;
        int n = x.Shape.Dims[0], cin = x.Shape.Dims[1], h = x.Shape.Dims[2], w = x.Shape.Dims[3];
        int coutg = weight.Shape.Dims[1], kh = weight.Shape.Dims[2], kw = weight.Shape.Dims[3];
        int oh = ((h - 1) * s.Height) - (2 * p.Height) + (d.Height * (kh - 1)) + op.Height + 1;
        int ow = ((w - 1) * s.Width) - (2 * p.Width) + (d.Width * (kw - 1)) + op.Width + 1;
        if (oh <= 0 || ow <= 0)
        {
            throw new ArgumentException(
                $"ConvTranspose2d: input {input.Describe()} (x) with weight {weight.Describe()} (W), stride {s}, padding {p}, output padding {op} and dilation {d} gives an empty output {oh}×{ow}.");
        }
        // The adjoint convolution maps [N, C_out, OH, OW] to x's [N, C_in, H, W] with W as its weight.
        var geometry = new ConvGeometry(n, coutg * groups, oh, ow, cin, kh, kw, h, w, s.Height, s.Width, p.Height, p.Width, d.Height, d.Width, groups);
        var y = ConvInputGradPrimitive(x, weight, geometry);
        if (bias is not null)
        {
            // The sum saves neither operand, so the product before the bias is dead once added.
            var unbiased = y;
            y = unbiased + bias.Reshape(1, geometry.InChannels, 1, 1);
            unbiased.FreeIntermediate("ConvTranspose2d (its output before the bias)");
        }
        return unbatched ? y.Squeeze(0) : y;
    }

    /// <summary>
    /// 1-D transposed convolution (torch.nn.functional.conv_transpose1d) of x [N, C_in, L] (or [C_in, L])
    /// with W [C_in, C_out/groups, k]: <see cref="ConvTranspose2d"/> with height 1.
    /// </summary>
    /// <param name="input">x: [N, C_in, L] or [C_in, L].</param>
    /// <param name="weight">W: [C_in, C_out/groups, k].</param>
    /// <param name="bias">b: [C_out], or null.</param>
    /// <param name="stride">Stride of the adjoint convolution.</param>
    /// <param name="padding">Padding of the adjoint convolution.</param>
    /// <param name="outputPadding">Elements added at the end of the output.</param>
    /// <param name="groups">Channel groups.</param>
    /// <param name="dilation">Spacing between kernel taps.</param>
    public static Tensor ConvTranspose1d(Tensor input, Tensor weight, Tensor? bias = null, int stride = 1, int padding = 0, int outputPadding = 0,
        int groups = 1, int dilation = 1)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(weight);
        Check1dOperands("ConvTranspose1d", input, weight);
        var y = ConvTranspose2d(input.Unsqueeze(-2), weight.Unsqueeze(-2), bias, (1, stride), (0, padding), (0, outputPadding), groups, (1, dilation));
        return y.Squeeze(-2);
    }

    private static void Check1dOperands(string op, Tensor input, Tensor weight)
    {
        if (input.Rank is not (2 or 3))
        {
            throw new ArgumentException($"{op}: input {input.Describe()} (x) must be [N, C, L] or unbatched [C, L].");
        }
        if (weight.Rank != 3)
        {
            throw new ArgumentException($"{op}: weight {weight.Describe()} (W) must be 3-D [channels, channels / groups, k].");
        }
    }

    /// <summary>The geometry of y = conv(x, W) for batched x [N, C, H, W]; "same" pads d·(k - 1) in total, the odd one at the bottom/right.</summary>
    private static ConvGeometry ConvForwardGeometry(Shape x, Shape weight, Size2d stride, ConvPadding padding, Size2d dilation, int groups)
    {
        int n = x.Dims[0], c = x.Dims[1], h = x.Dims[2], w = x.Dims[3];
        int o = weight.Dims[0], kh = weight.Dims[2], kw = weight.Dims[3];
        int top, left, heightPad, widthPad;
        if (padding.IsSame)
        {
            heightPad = dilation.Height * (kh - 1);
            widthPad = dilation.Width * (kw - 1);
            top = heightPad / 2;
            left = widthPad / 2;
        }
        else
        {
            top = padding.Size.Height;
            left = padding.Size.Width;
            heightPad = 2 * top;
            widthPad = 2 * left;
        }
        int oh = ((h + heightPad - (dilation.Height * (kh - 1)) - 1) / stride.Height) + 1;
        int ow = ((w + widthPad - (dilation.Width * (kw - 1)) - 1) / stride.Width) + 1;
        return new ConvGeometry(n, c, h, w, o, kh, kw, oh, ow, stride.Height, stride.Width, top, left, dilation.Height, dilation.Width, groups);
    }

    /// <summary>
    /// y = ∂T/∂dy + b[o] in one kernel (<see cref="IBackend.Conv2dBias"/>, the bits of the convolution followed by the
    /// bias's broadcast add): one node whose bias gradient is Σ g over every axis but 1. Saves x and W.
    /// </summary>
    internal static Tensor ConvBiasPrimitive(Tensor x, Tensor weight, Tensor bias, in ConvGeometry geometry)
    {
        var y = Empty(x.Backend, x.DType, new Shape(geometry.Batch, geometry.OutChannels, geometry.OutHeight, geometry.OutWidth));
        x.Backend.Conv2dBias(geometry, x.Storage, weight.Storage, bias.Storage, y.Storage);
        if (Autograd.ShouldRecord([x, weight, bias]))
        {
            Derivatives.Conv2dBias.Record(y, geometry, [x, weight, bias]);
        }
        return y;
    }

    /// <summary>y = ∂T/∂dy: [N, O, OH, OW] from x [N, C, H, W] and W [O, C/G, kh, kw]. Saves x and W.</summary>
    internal static Tensor ConvPrimitive(Tensor x, Tensor weight, in ConvGeometry geometry)
    {
        var y = Empty(x.Backend, x.DType, new Shape(geometry.Batch, geometry.OutChannels, geometry.OutHeight, geometry.OutWidth));
        x.Backend.Conv2d(geometry, x.Storage, weight.Storage, y.Storage);
        if (Autograd.ShouldRecord(x, weight))
        {
            Derivatives.Conv2d.Record(y, geometry, [x, weight]);
        }
        return y;
    }

    /// <summary>dx = ∂T/∂x: [N, C, H, W] from dy [N, O, OH, OW] and W. Saves dy and W.</summary>
    internal static Tensor ConvInputGradPrimitive(Tensor gradY, Tensor weight, in ConvGeometry geometry)
    {
        var gx = Empty(gradY.Backend, gradY.DType, new Shape(geometry.Batch, geometry.InChannels, geometry.InHeight, geometry.InWidth));
        gradY.Backend.Conv2dInputGrad(geometry, gradY.Storage, weight.Storage, gx.Storage);
        if (Autograd.ShouldRecord(gradY, weight))
        {
            Derivatives.Conv2dInputGrad.Record(gx, geometry, [gradY, weight]);
        }
        return gx;
    }

    /// <summary>dW = ∂T/∂W: [O, C/G, kh, kw] from x and dy. Saves x and dy.</summary>
    internal static Tensor ConvWeightGradPrimitive(Tensor x, Tensor gradY, in ConvGeometry geometry)
    {
        var gw = Empty(x.Backend, x.DType, new Shape(geometry.OutChannels, geometry.InChannels / geometry.Groups, geometry.KernelHeight, geometry.KernelWidth));
        x.Backend.Conv2dWeightGrad(geometry, x.Storage, gradY.Storage, gw.Storage);
        if (Autograd.ShouldRecord(x, gradY))
        {
            Derivatives.Conv2dWeightGrad.Record(gw, geometry, [x, gradY]);
        }
        return gw;
    }

    private static void CheckConvOperands(string op, Tensor input, Tensor weight, Tensor? bias, Size2d stride, ConvPadding padding, Size2d dilation, int groups)
    {
        CheckConvCommon(op, input, weight, bias, groups, weight.Shape.Dims.Length == 4 ? weight.Shape.Dims[0] : 0);
        if (padding.IsSame && (stride.Height != 1 || stride.Width != 1))
        {
            throw new ArgumentException($"{op}: padding \"same\" needs stride 1 (as in PyTorch); got stride {stride} for input {input.Describe()} (x).", nameof(padding));
        }
        CheckWindowParameters(op, stride, padding.Size, dilation);
        int c = input.Shape[-3];
        int o = weight.Shape.Dims[0], cg = weight.Shape.Dims[1];
        if (c % groups != 0)
        {
            throw new ArgumentException($"{op}: groups = {groups} does not divide the {c} input channels of input {input.Describe()} (x).");
        }
        if (o % groups != 0)
        {
            throw new ArgumentException($"{op}: groups = {groups} does not divide the {o} output channels of weight {weight.Describe()} (W).");
        }
        if (cg * groups != c)
        {
            throw new ArgumentException(
                $"{op}: input {input.Describe()} (x) has {c} channels, but weight {weight.Describe()} (W) expects {cg} per group × {groups} group{(groups == 1 ? "" : "s")} = {cg * groups}.");
        }
        int h = input.Shape[-2], w = input.Shape[-1];
        int kh = weight.Shape.Dims[2], kw = weight.Shape.Dims[3];
        int effH = (dilation.Height * (kh - 1)) + 1, effW = (dilation.Width * (kw - 1)) + 1;
        int paddedH = padding.IsSame ? h + effH - 1 : h + (2 * padding.Size.Height);
        int paddedW = padding.IsSame ? w + effW - 1 : w + (2 * padding.Size.Width);
        if (kh == 0 || kw == 0 || effH > paddedH || effW > paddedW)
        {
            throw new ArgumentException(
                $"{op}: the kernel of weight {weight.Describe()} (W) ({kh}×{kw}, dilation {dilation}: {effH}×{effW} effective) does not fit the padded input " +
                $"{paddedH}×{paddedW} (input {input.Describe()} (x) with padding {padding}).");
        }
    }

    private static void CheckConvTransposeOperands(Tensor input, Tensor weight, Tensor? bias, Size2d stride, Size2d padding, Size2d outputPadding, Size2d dilation,
        int groups)
    {
        const string Op = "ConvTranspose2d";
        int outChannels = weight.Rank == 4 ? weight.Shape.Dims[1] * Math.Max(groups, 1) : 0;
        CheckConvCommon(Op, input, weight, bias, groups, outChannels);
        CheckWindowParameters(Op, stride, padding, dilation);
        int c = input.Shape[-3], cin = weight.Shape.Dims[0];
        if (cin != c)
        {
            throw new ArgumentException($"{Op}: input {input.Describe()} (x) has {c} channels, but weight {weight.Describe()} (W) [in channels, out channels / groups, kh, kw] expects {cin}.");
        }
        if (cin % groups != 0)
        {
            throw new ArgumentException($"{Op}: groups = {groups} does not divide the {cin} input channels of weight {weight.Describe()} (W).");
        }
        if (weight.Shape.Dims[2] == 0 || weight.Shape.Dims[3] == 0)
        {
            throw new ArgumentException($"{Op}: weight {weight.Describe()} (W) has an empty kernel.");
        }
        if (outputPadding.Height < 0 || outputPadding.Width < 0
            || (outputPadding.Height >= stride.Height && outputPadding.Height >= dilation.Height)
            || (outputPadding.Width >= stride.Width && outputPadding.Width >= dilation.Width))
        {
            throw new ArgumentException(
                $"{Op}: output padding {outputPadding} must be non-negative and smaller than either the stride {stride} or the dilation {dilation} (as in PyTorch).",
                nameof(outputPadding));
        }
    }

    /// <summary>Dtypes, devices, ranks, groups and bias: what convolution and its transpose check alike.</summary>
    private static void CheckConvCommon(string op, Tensor input, Tensor weight, Tensor? bias, int groups, int outChannels)
    {
        if (input.DType != weight.DType || input.Device != weight.Device)
        {
            throw new ArgumentException(
                $"{op}: input {input.Describe()} on {input.Device} (x) and weight {weight.Describe()} on {weight.Device} (W) must have the same dtype and device.");
        }
        input.RequireFloat(op);
        if (input.Rank is not (3 or 4))
        {
            throw new ArgumentException($"{op}: input {input.Describe()} (x) must be [N, C, H, W] or unbatched [C, H, W].");
        }
        if (weight.Rank != 4)
        {
            throw new ArgumentException(op == "Conv2d"
                ? $"{op}: weight {weight.Describe()} (W) must be [out channels, in channels / groups, kh, kw]."
                : $"{op}: weight {weight.Describe()} (W) must be [in channels, out channels / groups, kh, kw].");
        }
        if (groups <= 0)
        {
            throw new ArgumentException($"{op}: groups must be positive; got {groups}.", nameof(groups));
        }
        if (bias is not null)
        {
            if (bias.DType != weight.DType || bias.Device != weight.Device)
            {
                throw new ArgumentException($"{op}: bias {bias.Describe()} on {bias.Device} (b) must have the dtype and device of weight {weight.Describe()} on {weight.Device} (W).");
            }
            if (bias.Rank != 1 || bias.Shape.Dims[0] != outChannels)
            {
                throw new ArgumentException($"{op}: bias {bias.Describe()} (b) must be 1-D with {outChannels} elements, one per output channel of weight {weight.Describe()} (W).");
            }
        }
    }

    private static void CheckWindowParameters(string op, Size2d stride, Size2d padding, Size2d dilation)
    {
        if (stride.Height <= 0 || stride.Width <= 0)
        {
            throw new ArgumentException($"{op}: stride must be positive; got {stride}.", nameof(stride));
        }
        if (padding.Height < 0 || padding.Width < 0)
        {
            throw new ArgumentException($"{op}: padding must be non-negative; got {padding}.", nameof(padding));
        }
        if (dilation.Height <= 0 || dilation.Width <= 0)
        {
            throw new ArgumentException($"{op}: dilation must be positive; got {dilation}.", nameof(dilation));
        }
    }
}
