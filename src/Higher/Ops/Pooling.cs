using Higher.Tape;

namespace Higher;

public sealed partial class Tensor
{
    /// <summary>
    /// 2-D max pooling (torch.nn.functional.max_pool2d) over windows of <paramref name="kernelSize"/>
    /// of each channel of x [N, C, H, W] (or [C, H, W]); padding never wins. The gradient goes to
    /// the first maximal element of each window in row-major order, as PyTorch routes it.
    /// </summary>
    /// <param name="input">x: [N, C, H, W] or [C, H, W].</param>
    /// <param name="kernelSize">Window size.</param>
    /// <param name="stride">Step between windows (default: the kernel size).</param>
    /// <param name="padding">Implicit -∞ padding on both sides, at most half the kernel (default 0).</param>
    /// <param name="dilation">Spacing between window taps (default 1).</param>
    /// <param name="ceilMode">Round the output size up, so partial windows at the end count (a window must still start inside the input or the left padding).</param>
    public static Tensor MaxPool2d(Tensor input, Size2d kernelSize, Size2d? stride = null, Size2d? padding = null, Size2d? dilation = null, bool ceilMode = false)
    {
        var (values, indices) = MaxPool2dWithIndices(input, kernelSize, stride, padding, dilation, ceilMode);
        // Not handed out: only the tape node (when one saved them) can read the indices now.
        indices.FreeIntermediate("MaxPool2d (its indices, which it does not return)");
        return values;
    }

    /// <summary>
    /// <see cref="MaxPool2d"/> that also returns the indices (torch's return_indices = True): Int64,
    /// the output's shape, each the flat position h·W + w within its plane of the window's first
    /// maximum. The backward scatters the output gradient to those positions (a differentiable
    /// <see cref="ScatterAdd"/> over the [N·C, H·W] view, whose own gradient gathers), so
    /// derivatives of every order exist.
    /// </summary>
    /// <param name="input">x: [N, C, H, W] or [C, H, W].</param>
    /// <param name="kernelSize">Window size.</param>
    /// <param name="stride">Step between windows (default: the kernel size).</param>
    /// <param name="padding">Implicit -∞ padding on both sides, at most half the kernel (default 0).</param>
    /// <param name="dilation">Spacing between window taps (default 1).</param>
    /// <param name="ceilMode">Round the output size up.</param>
    public static (Tensor Values, Tensor Indices) MaxPool2dWithIndices(Tensor input, Size2d kernelSize, Size2d? stride = null, Size2d? padding = null,
        Size2d? dilation = null, bool ceilMode = false)
    {
        ArgumentNullException.ThrowIfNull(input);
        var x = PoolInput("MaxPool2d", input, out bool unbatched);
        var geometry = PoolGeometryOf("MaxPool2d", x, kernelSize, stride ?? kernelSize, padding ?? 0, dilation ?? 1, ceilMode);
        int n = x.Shape.Dims[0], c = x.Shape.Dims[1];
        var outShape = new Shape(n, c, geometry.OutHeight, geometry.OutWidth);
        var y = Empty(x.Backend, x.DType, outShape);
        var indices = Empty(x.Backend, DType.Int64, outShape);
        x.Backend.MaxPool2d(geometry, x.Storage, y.Storage, indices.Storage);
        if (Autograd.ShouldRecord(x))
        {
            Derivatives.MaxPool2d.Record(y, geometry, [x], [indices]);
        }
        return unbatched ? (y.Squeeze(0), indices.Squeeze(0)) : (y, indices);
    }

    /// <summary>
    /// 2-D average pooling (torch.nn.functional.avg_pool2d): the sum of each window (zero padding)
    /// divided by <paramref name="divisorOverride"/> if given, else by the window's size clipped to
    /// the padded input (<paramref name="countIncludePad"/>) or by its number of input elements.
    /// Linear; its gradient is the adjoint primitive (AvgPool2dGrad), whose gradient is this op again.
    /// </summary>
    /// <param name="input">x: [N, C, H, W] or [C, H, W].</param>
    /// <param name="kernelSize">Window size.</param>
    /// <param name="stride">Step between windows (default: the kernel size).</param>
    /// <param name="padding">Implicit zero padding on both sides, at most half the kernel (default 0).</param>
    /// <param name="ceilMode">Round the output size up (see <see cref="MaxPool2d"/>).</param>
    /// <param name="countIncludePad">Whether padding positions count in the divisor.</param>
    /// <param name="divisorOverride">A fixed divisor for every window.</param>
    public static Tensor AvgPool2d(Tensor input, Size2d kernelSize, Size2d? stride = null, Size2d? padding = null, bool ceilMode = false,
        bool countIncludePad = true, int? divisorOverride = null)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (divisorOverride is <= 0)
        {
            throw new ArgumentException($"AvgPool2d: divisorOverride must be positive; got {divisorOverride}.", nameof(divisorOverride));
        }
        var x = PoolInput("AvgPool2d", input, out bool unbatched);
        var geometry = PoolGeometryOf("AvgPool2d", x, kernelSize, stride ?? kernelSize, padding ?? 0, 1, ceilMode);
        var y = AvgPoolPrimitive(x, new AvgPoolSpec(geometry, countIncludePad, divisorOverride ?? 0));
        return unbatched ? y.Squeeze(0) : y;
    }

    /// <summary>
    /// Adaptive average pooling (torch.nn.functional.adaptive_avg_pool2d) of x [N, C, H, W] (or
    /// [C, H, W]) to [N, C, OH, OW]: output row i averages input rows ⌊i·H/OH⌋ to ⌈(i+1)·H/OH⌉ - 1,
    /// likewise for columns. Linear; its gradient is the adjoint primitive, whose gradient is this op.
    /// </summary>
    /// <param name="input">x: [N, C, H, W] or [C, H, W].</param>
    /// <param name="outputSize">(OH, OW), or one size for both.</param>
    public static Tensor AdaptiveAvgPool2d(Tensor input, Size2d outputSize)
    {
        ArgumentNullException.ThrowIfNull(input);
        var x = PoolInput("AdaptiveAvgPool2d", input, out bool unbatched);
        if (outputSize.Height <= 0 || outputSize.Width <= 0)
        {
            throw new ArgumentException($"AdaptiveAvgPool2d: output size must be positive; got {outputSize} for input {input.Describe()} (x).", nameof(outputSize));
        }
        if (x.Shape.Dims[2] == 0 || x.Shape.Dims[3] == 0)
        {
            throw new ArgumentException($"AdaptiveAvgPool2d: input {input.Describe()} (x) has an empty plane.", nameof(input));
        }
        var spec = new AdaptiveSpec(x.Shape.Dims[0] * x.Shape.Dims[1], x.Shape.Dims[2], x.Shape.Dims[3], outputSize.Height, outputSize.Width);
        var y = AdaptivePoolPrimitive(x, spec);
        return unbatched ? y.Squeeze(0) : y;
    }

    /// <summary>Average pooling of x [N, C, H, W]; gradient: <see cref="AvgPoolGradPrimitive"/>.</summary>
    internal static Tensor AvgPoolPrimitive(Tensor x, AvgPoolSpec spec)
    {
        var g = spec.Geometry;
        var y = Empty(x.Backend, x.DType, new Shape(x.Shape.Dims[0], x.Shape.Dims[1], g.OutHeight, g.OutWidth));
        x.Backend.AvgPool2d(g, spec.CountIncludePad, spec.DivisorOverride, x.Storage, y.Storage);
        if (Autograd.ShouldRecord(x))
        {
            Derivatives.AvgPool2d.Record(y, spec, [x]);
        }
        return y;
    }

    /// <summary>The adjoint of average pooling, dy [N, C, OH, OW] → [N, C, H, W]; gradient: <see cref="AvgPoolPrimitive"/>.</summary>
    internal static Tensor AvgPoolGradPrimitive(Tensor gradY, AvgPoolSpec spec)
    {
        var g = spec.Geometry;
        var gx = Empty(gradY.Backend, gradY.DType, new Shape(gradY.Shape.Dims[0], gradY.Shape.Dims[1], g.InHeight, g.InWidth));
        gradY.Backend.AvgPool2dGrad(g, spec.CountIncludePad, spec.DivisorOverride, gradY.Storage, gx.Storage);
        if (Autograd.ShouldRecord(gradY))
        {
            Derivatives.AvgPool2dGrad.Record(gx, spec, [gradY]);
        }
        return gx;
    }

    /// <summary>Adaptive average pooling of x [N, C, H, W]; gradient: <see cref="AdaptivePoolGradPrimitive"/>.</summary>
    internal static Tensor AdaptivePoolPrimitive(Tensor x, AdaptiveSpec spec)
    {
        var y = Empty(x.Backend, x.DType, new Shape(x.Shape.Dims[0], x.Shape.Dims[1], spec.OutHeight, spec.OutWidth));
        x.Backend.AdaptiveAvgPool2d(spec.Planes, spec.InHeight, spec.InWidth, spec.OutHeight, spec.OutWidth, x.Storage, y.Storage);
        if (Autograd.ShouldRecord(x))
        {
            Derivatives.AdaptiveAvgPool2d.Record(y, spec, [x]);
        }
        return y;
    }

    /// <summary>The adjoint of adaptive average pooling; gradient: <see cref="AdaptivePoolPrimitive"/>.</summary>
    internal static Tensor AdaptivePoolGradPrimitive(Tensor gradY, AdaptiveSpec spec)
    {
        var gx = Empty(gradY.Backend, gradY.DType, new Shape(gradY.Shape.Dims[0], gradY.Shape.Dims[1], spec.InHeight, spec.InWidth));
        gradY.Backend.AdaptiveAvgPool2dGrad(spec.Planes, spec.InHeight, spec.InWidth, spec.OutHeight, spec.OutWidth, gradY.Storage, gx.Storage);
        if (Autograd.ShouldRecord(gradY))
        {
            Derivatives.AdaptiveAvgPool2dGrad.Record(gx, spec, [gradY]);
        }
        return gx;
    }

    private static Tensor PoolInput(string op, Tensor input, out bool unbatched)
    {
        input.RequireFloat(op);
        if (input.Rank is not (3 or 4))
        {
            throw new ArgumentException($"{op}: input {input.Describe()} (x) must be [N, C, H, W] or unbatched [C, H, W].");
        }
        unbatched = input.Rank == 3;
        return unbatched ? input.Unsqueeze(0) : input;
    }

    private static PoolGeometry PoolGeometryOf(string op, Tensor x, Size2d kernel, Size2d stride, Size2d padding, Size2d dilation, bool ceilMode)
    {
        if (kernel.Height <= 0 || kernel.Width <= 0)
        {
            throw new ArgumentException($"{op}: kernel size must be positive; got {kernel}.", nameof(kernel));
        }
        CheckWindowParameters(op, stride, padding, dilation);
        if (padding.Height > kernel.Height / 2 || padding.Width > kernel.Width / 2)
        {
            throw new ArgumentException($"{op}: padding {padding} must be at most half of the kernel size {kernel}.", nameof(padding));
        }
        int h = x.Shape.Dims[2], w = x.Shape.Dims[3];
        int effH = (dilation.Height * (kernel.Height - 1)) + 1, effW = (dilation.Width * (kernel.Width - 1)) + 1;
        int paddedH = h + (2 * padding.Height), paddedW = w + (2 * padding.Width);
        if (effH > paddedH || effW > paddedW)
        {
            throw new ArgumentException(
                $"{op}: the window ({kernel.Height}×{kernel.Width}, dilation {dilation}: {effH}×{effW} effective) does not fit the padded input " +
                $"{paddedH}×{paddedW} (input {x.Describe()} (x) with padding {padding}).");
        }
        int oh = PoolOutputSize(h, kernel.Height, stride.Height, padding.Height, dilation.Height, ceilMode);
        int ow = PoolOutputSize(w, kernel.Width, stride.Width, padding.Width, dilation.Width, ceilMode);
        return new PoolGeometry(x.Shape.Dims[0] * x.Shape.Dims[1], h, w, oh, ow, kernel.Height, kernel.Width, stride.Height, stride.Width,
            padding.Height, padding.Width, dilation.Height, dilation.Width);
    }

    /// <summary>
    /// PyTorch's pooling_output_shape: ⌊(n + 2p - d(k - 1) - 1 (+ s - 1 in ceil mode))/s⌋ + 1, less
    /// one in ceil mode when the last window would start beyond the input and its left padding.
    /// </summary>
    private static int PoolOutputSize(int input, int kernel, int stride, int padding, int dilation, bool ceilMode)
    {
        int span = input + (2 * padding) - (dilation * (kernel - 1)) - 1;
        int size = ((ceilMode ? span + stride - 1 : span) / stride) + 1;
        if (ceilMode && (size - 1) * stride >= input + padding)
        {
            size--;
        }
        return size;
    }
}

/// <summary>An average pooling: its geometry and divisor rule (divisor override 0 means none).</summary>
internal readonly record struct AvgPoolSpec(PoolGeometry Geometry, bool CountIncludePad, int DivisorOverride);

/// <summary>An adaptive average pooling of <paramref name="Planes"/> planes from H×W to OH×OW.</summary>
internal readonly record struct AdaptiveSpec(int Planes, int InHeight, int InWidth, int OutHeight, int OutWidth);
