using System.Collections.Concurrent;

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

public sealed partial class Tensor
{
    /// <summary>
    /// 2-D cross-correlation (torch.nn.functional.conv2d): for input x [N, C, H, W] (or unbatched
    /// [C, H, W]) and weight W [O, C/groups, kh, kw],
    /// y[n, o, i, j] = b[o] + Σ_{c ∈ group(o), p, q} W[o, c, p, q] · x̃[n, c, i·sh + p·dh, j·sw + q·dw],
    /// where x̃ is x zero-padded by <paramref name="padding"/> on each side. Output size per axis:
    /// ⌊(H + 2p - d(k - 1) - 1)/s⌋ + 1.
    /// <para>
    /// Built as im2col from differentiable primitives: the (channels-last) input is unfolded into
    /// patches with <see cref="IndexSelect"/> by a precomputed index (padding positions read one
    /// appended zero row), then multiplied by the weight in one GEMM (one batched GEMM over groups).
    /// Its gradients are the primitives' (index-add, GEMM), so derivatives of every order exist.
    /// </para>
    /// </summary>
    /// <param name="input">x: [N, C, H, W] or [C, H, W].</param>
    /// <param name="weight">W: [O, C/groups, kh, kw].</param>
    /// <param name="bias">b: [O], or null.</param>
    /// <param name="stride">Step between output positions (default 1).</param>
    /// <param name="padding">Zeros added on both sides of each spatial axis (default 0).</param>
    /// <param name="dilation">Spacing between kernel taps (default 1).</param>
    /// <param name="groups">Channel groups: input and output channels split into this many independent convolutions.</param>
    public static Tensor Conv2d(Tensor input, Tensor weight, Tensor? bias = null, Size2d? stride = null, Size2d? padding = null,
        Size2d? dilation = null, int groups = 1)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(weight);
        var s = stride ?? 1;
        var p = padding ?? 0;
        var d = dilation ?? 1;
        CheckConvOperands(input, weight, bias, s, p, d, groups);
        bool unbatched = input.Rank == 3;
        var x = unbatched ? input.Unsqueeze(0) : input;
        int n = x.Shape.Dims[0], c = x.Shape.Dims[1], h = x.Shape.Dims[2], w = x.Shape.Dims[3];
        int o = weight.Shape.Dims[0], cg = weight.Shape.Dims[1];
        var kernel = new Size2d(weight.Shape.Dims[2], weight.Shape.Dims[3]);
        var geometry = WindowGeometry.Create(x.Device, h, w, kernel, s, p, d, ceilMode: false, PaddingRead.ExtraRow, tapMajor: false);
        int l = geometry.OutputHeight * geometry.OutputWidth;
        int kk = kernel.Height * kernel.Width;

        // Rows of the channels-last input [N, H·W (+1 zero row), C]: one patch tap is one contiguous row.
        var rows = x.PermuteOrView(0, 2, 3, 1).Reshape(n, h * w, c);
        if (geometry.ReadsPadding)
        {
            rows = Cat([rows, ZerosOn(x.Backend, x.DType, new Shape(n, 1, c))], 1);
        }
        var patches = rows.IndexSelect(1, geometry.Index);
        // The weight enters as a [kh·kw·C/groups, O/groups] matrix (a small copy), so that all three
        // GEMMs (y, d patches, d weight) have a long first dimension: N·L, N·L and kh·kw·C/groups.
        Tensor y;
        if (groups == 1)
        {
            var wt = weight.PermuteOrView(2, 3, 1, 0).Reshape(kk * c, o);
            y = MatMulT(patches.Reshape(n * l, kk * c), wt, false, false);
        }
        else
        {
            int og = o / groups;
            var cols = patches.Reshape(n * l, kk, groups, cg).PermuteOrView(2, 0, 1, 3).Reshape(groups, n * l, kk * cg);
            var wt = weight.Reshape(groups, og, cg, kernel.Height, kernel.Width).PermuteOrView(0, 3, 4, 2, 1).Reshape(groups, kk * cg, og);
            y = MatMulT(cols, wt, false, false).PermuteOrView(1, 0, 2).Reshape(n * l, o);
        }
        if (bias is not null)
        {
            y += bias;
        }
        y = y.Reshape(n, l, o).PermuteOrView(0, 2, 1).Reshape(n, o, geometry.OutputHeight, geometry.OutputWidth);
        return unbatched ? y.Squeeze(0) : y;
    }

    private static void CheckConvOperands(Tensor input, Tensor weight, Tensor? bias, Size2d stride, Size2d padding, Size2d dilation, int groups)
    {
        if (input.DType != weight.DType || input.Device != weight.Device)
        {
            throw new ArgumentException(
                $"Conv2d: input {input.Describe()} on {input.Device} (x) and weight {weight.Describe()} on {weight.Device} (W) must have the same dtype and device.");
        }
        input.RequireFloat("Conv2d");
        if (input.Rank is not (3 or 4))
        {
            throw new ArgumentException($"Conv2d: input {input.Describe()} (x) must be [N, C, H, W] or unbatched [C, H, W].");
        }
        if (weight.Rank != 4)
        {
            throw new ArgumentException($"Conv2d: weight {weight.Describe()} (W) must be [out channels, in channels / groups, kh, kw].");
        }
        if (groups <= 0)
        {
            throw new ArgumentException($"Conv2d: groups must be positive; got {groups}.", nameof(groups));
        }
        CheckWindowParameters("Conv2d", stride, padding, dilation);
        int c = input.Shape[-3];
        int o = weight.Shape.Dims[0], cg = weight.Shape.Dims[1];
        if (c % groups != 0)
        {
            throw new ArgumentException($"Conv2d: groups = {groups} does not divide the {c} input channels of input {input.Describe()} (x).");
        }
        if (o % groups != 0)
        {
            throw new ArgumentException($"Conv2d: groups = {groups} does not divide the {o} output channels of weight {weight.Describe()} (W).");
        }
        if (cg * groups != c)
        {
            throw new ArgumentException(
                $"Conv2d: input {input.Describe()} (x) has {c} channels, but weight {weight.Describe()} (W) expects {cg} per group × {groups} group{(groups == 1 ? "" : "s")} = {cg * groups}.");
        }
        if (bias is not null)
        {
            if (bias.DType != weight.DType || bias.Device != weight.Device)
            {
                throw new ArgumentException($"Conv2d: bias {bias.Describe()} on {bias.Device} (b) must have the dtype and device of weight {weight.Describe()} on {weight.Device} (W).");
            }
            if (bias.Rank != 1 || bias.Shape.Dims[0] != o)
            {
                throw new ArgumentException($"Conv2d: bias {bias.Describe()} (b) must be 1-D with {o} elements, one per output channel of weight {weight.Describe()} (W).");
            }
        }
        int h = input.Shape[-2], w = input.Shape[-1];
        int kh = weight.Shape.Dims[2], kw = weight.Shape.Dims[3];
        int effH = (dilation.Height * (kh - 1)) + 1, effW = (dilation.Width * (kw - 1)) + 1;
        int paddedH = h + (2 * padding.Height), paddedW = w + (2 * padding.Width);
        if (kh == 0 || kw == 0 || effH > paddedH || effW > paddedW)
        {
            throw new ArgumentException(
                $"Conv2d: the kernel of weight {weight.Describe()} (W) ({kh}×{kw}, dilation {dilation}: {effH}×{effW} effective) does not fit the padded input " +
                $"{paddedH}×{paddedW} (input {input.Describe()} (x) with padding {padding}).");
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

    /// <summary>
    /// 2-D max pooling (torch.nn.functional.max_pool2d) over windows of <paramref name="kernelSize"/>
    /// of each channel of x [N, C, H, W] (or [C, H, W]); padding counts as -∞. The gradient goes to
    /// the first maximal element of each window in row-major order, as PyTorch routes it: the
    /// windows are unfolded with <see cref="IndexSelect"/> (a padding tap reads the window's first
    /// in-bounds element, which never changes the maximum nor which element is first) and reduced
    /// with <see cref="Max(int, bool)"/>, whose gradient goes to the first maximum.
    /// </summary>
    /// <param name="input">x: [N, C, H, W] or [C, H, W].</param>
    /// <param name="kernelSize">Window size.</param>
    /// <param name="stride">Step between windows (default: the kernel size).</param>
    /// <param name="padding">Implicit -∞ padding on both sides, at most half the kernel (default 0).</param>
    /// <param name="dilation">Spacing between window taps (default 1).</param>
    /// <param name="ceilMode">Round the output size up, so partial windows at the end count (a window must still start inside the input or the left padding).</param>
    public static Tensor MaxPool2d(Tensor input, Size2d kernelSize, Size2d? stride = null, Size2d? padding = null, Size2d? dilation = null, bool ceilMode = false)
    {
        ArgumentNullException.ThrowIfNull(input);
        var x = PoolInput("MaxPool2d", input, out bool unbatched);
        var geometry = PoolGeometry("MaxPool2d", x, kernelSize, stride ?? kernelSize, padding ?? 0, dilation ?? 1, ceilMode, PaddingRead.FirstInWindow);
        int n = x.Shape.Dims[0], c = x.Shape.Dims[1];
        var y = TapMajorWindows(x, geometry).Max(1).Values.Reshape(n, c, geometry.OutputHeight, geometry.OutputWidth);
        return unbatched ? y.Squeeze(0) : y;
    }

    /// <summary>
    /// 2-D average pooling (torch.nn.functional.avg_pool2d): the sum of each window (zero padding)
    /// divided by <paramref name="divisorOverride"/> if given, else by the window's size clipped to
    /// the padded input (<paramref name="countIncludePad"/>) or by its number of input elements.
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
        var geometry = PoolGeometry("AvgPool2d", x, kernelSize, stride ?? kernelSize, padding ?? 0, 1, ceilMode, PaddingRead.ExtraRow);
        int n = x.Shape.Dims[0], c = x.Shape.Dims[1];
        var sums = TapMajorWindows(x, geometry).Sum(1);
        var y = (sums / geometry.AverageDivisors(x.DType, countIncludePad, divisorOverride)).Reshape(n, c, geometry.OutputHeight, geometry.OutputWidth);
        return unbatched ? y.Squeeze(0) : y;
    }

    /// <summary>
    /// The pooling windows of x [N, C, H, W] as [N·C, kh·kw, OH·OW], taps in row-major order. Tiling
    /// windows (stride = kernel, no padding or dilation) are a reshape and a permute; others are
    /// gathered by the geometry's index, padding taps reading an appended zero row (average) or
    /// the window's first element (max).
    /// </summary>
    private static Tensor TapMajorWindows(Tensor x, WindowGeometry geometry)
    {
        int n = x.Shape.Dims[0], c = x.Shape.Dims[1], h = x.Shape.Dims[2], w = x.Shape.Dims[3];
        int oh = geometry.OutputHeight, ow = geometry.OutputWidth;
        var k = geometry.Kernel;
        if (geometry.Tiles)
        {
            var planes = x.Reshape(n * c, h, w).Slice(1, 0, oh * k.Height).Slice(2, 0, ow * k.Width);
            return planes.Reshape(n * c, oh, k.Height, ow, k.Width).PermuteOrView(0, 2, 4, 1, 3).Reshape(n * c, k.Height * k.Width, oh * ow);
        }
        var rows = x.Reshape(n * c, h * w);
        if (geometry.ReadsPadding && geometry.Read == PaddingRead.ExtraRow)
        {
            rows = Cat([rows, ZerosOn(x.Backend, x.DType, new Shape(n * c, 1))], 1);
        }
        return rows.IndexSelect(1, geometry.Index).Reshape(n * c, k.Height * k.Width, oh * ow);
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

    private static WindowGeometry PoolGeometry(string op, Tensor x, Size2d kernel, Size2d stride, Size2d padding, Size2d dilation, bool ceilMode, PaddingRead read)
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
        return WindowGeometry.Create(x.Device, h, w, kernel, stride, padding, dilation, ceilMode, read, tapMajor: true);
    }

    /// <summary>
    /// <see cref="Permute"/>, or a free <see cref="Reshape"/> when the permutation only moves size-1
    /// axes (the element order is then unchanged), as for one channel or a 1×1 kernel.
    /// </summary>
    internal Tensor PermuteOrView(params int[] perm)
    {
        int last = -1;
        bool ordered = true;
        var dims = new int[perm.Length];
        for (int i = 0; i < perm.Length; i++)
        {
            dims[i] = Shape.Dims[perm[i]];
            if (dims[i] != 1)
            {
                ordered &= perm[i] > last;
                last = perm[i];
            }
        }
        return ordered ? Reshape(dims) : Permute(perm);
    }
}

/// <summary>What a window tap outside the input reads.</summary>
internal enum PaddingRead
{
    /// <summary>Index H·W: a row appended to the input (zeros for convolution and average pooling).</summary>
    ExtraRow,

    /// <summary>The window's first in-bounds element (max pooling: the maximum and first-max routing are unchanged).</summary>
    FirstInWindow,
}

/// <summary>
/// The geometry of a sliding window over an H×W plane and its unfold index: the entry for output
/// position l = i·OW + j and tap (p, q) is the flat input position h·W + w that the tap reads,
/// ordered (l, p, q) (position-major: one patch per row, for the convolution's GEMM) or (p, q, l)
/// (tap-major: for pooling's reduction over taps). Index tensors are built once per geometry and
/// device and then shared: they are never written, and the tape only reads them.
/// </summary>
internal sealed class WindowGeometry
{
    private static readonly ConcurrentDictionary<Key, WindowGeometry> Cache = new();

    private readonly ConcurrentDictionary<(DType, bool, int?), Tensor> _divisors = new();
    private readonly Key _key;

    private readonly record struct Key(Device Device, int Height, int Width, Size2d Kernel, Size2d Stride, Size2d Padding, Size2d Dilation,
        bool CeilMode, PaddingRead Read, bool TapMajor);

    private WindowGeometry(Key key)
    {
        _key = key;
        OutputHeight = OutputSize(key.Height, key.Kernel.Height, key.Stride.Height, key.Padding.Height, key.Dilation.Height, key.CeilMode);
        OutputWidth = OutputSize(key.Width, key.Kernel.Width, key.Stride.Width, key.Padding.Width, key.Dilation.Width, key.CeilMode);
        var index = BuildIndex(out bool readsPadding);
        ReadsPadding = readsPadding;
        Index = Tensor.FromArray(index, new Shape(index.Length), key.Device);
    }

    public int OutputHeight { get; }

    public int OutputWidth { get; }

    /// <summary>True when some tap falls outside the input (only then is the extra row needed).</summary>
    public bool ReadsPadding { get; }

    /// <summary>The window size.</summary>
    public Size2d Kernel => _key.Kernel;

    /// <summary>What a padding tap reads.</summary>
    public PaddingRead Read => _key.Read;

    /// <summary>
    /// True when the windows tile the input without overlap, gaps or padding (stride = kernel,
    /// dilation 1, every window inside): then they are a reshape of the input, no gather needed.
    /// </summary>
    public bool Tiles => _key.Stride == _key.Kernel && _key.Dilation == new Size2d(1, 1) && !ReadsPadding;

    /// <summary>Int64 [OH·OW·kh·kw] on the geometry's device, position-major or tap-major.</summary>
    public Tensor Index { get; }

    public static WindowGeometry Create(Device device, int height, int width, Size2d kernel, Size2d stride, Size2d padding, Size2d dilation,
        bool ceilMode, PaddingRead read, bool tapMajor) =>
        Cache.GetOrAdd(new Key(device, height, width, kernel, stride, padding, dilation, ceilMode, read, tapMajor), static k => new WindowGeometry(k));

    /// <summary>PyTorch's pooling_output_shape (with ceil mode off, the convolution output size).</summary>
    private static int OutputSize(int input, int kernel, int stride, int padding, int dilation, bool ceilMode)
    {
        int span = input + (2 * padding) - (dilation * (kernel - 1)) - 1;
        int size = ((ceilMode ? span + stride - 1 : span) / stride) + 1;
        if (ceilMode && (size - 1) * stride >= input + padding)
        {
            size--;
        }
        return size;
    }

    private long[] BuildIndex(out bool readsPadding)
    {
        var k = _key;
        int kh = k.Kernel.Height, kw = k.Kernel.Width;
        int positions = OutputHeight * OutputWidth, taps = kh * kw;
        var index = new long[(long)positions * taps];
        long extraRow = (long)k.Height * k.Width;
        readsPadding = false;
        for (int i = 0; i < OutputHeight; i++)
        {
            int top = (i * k.Stride.Height) - k.Padding.Height;
            for (int j = 0; j < OutputWidth; j++)
            {
                int left = (j * k.Stride.Width) - k.Padding.Width;
                long first = FirstInBounds(top, k.Dilation.Height, kh, k.Height) * (long)k.Width + FirstInBounds(left, k.Dilation.Width, kw, k.Width);
                for (int p = 0; p < kh; p++)
                {
                    int row = top + (p * k.Dilation.Height);
                    for (int q = 0; q < kw; q++)
                    {
                        int col = left + (q * k.Dilation.Width);
                        int position = (i * OutputWidth) + j, tap = (p * kw) + q;
                        long e = k.TapMajor ? ((long)tap * positions) + position : ((long)position * taps) + tap;
                        if (row >= 0 && row < k.Height && col >= 0 && col < k.Width)
                        {
                            index[e] = ((long)row * k.Width) + col;
                        }
                        else
                        {
                            readsPadding = true;
                            index[e] = k.Read == PaddingRead.ExtraRow ? extraRow : first;
                        }
                    }
                }
            }
        }
        return index;
    }

    /// <summary>The first tap start + t·dilation inside [0, size); pooling geometry guarantees one exists.</summary>
    private static int FirstInBounds(int start, int dilation, int taps, int size)
    {
        for (int t = 0; t < taps; t++)
        {
            int v = start + (t * dilation);
            if (v >= 0 && v < size)
            {
                return v;
            }
        }
        return 0;
    }

    /// <summary>Average pooling's divisor per output position [OH·OW], as PyTorch's avg_pool2d computes it.</summary>
    public Tensor AverageDivisors(DType dtype, bool countIncludePad, int? divisorOverride) =>
        _divisors.GetOrAdd((dtype, countIncludePad, divisorOverride), key =>
        {
            var (type, includePad, fixedDivisor) = key;
            var k = _key;
            var values = new double[OutputHeight * OutputWidth];
            for (int i = 0; i < OutputHeight; i++)
            {
                int top = (i * k.Stride.Height) - k.Padding.Height;
                int bottom = Math.Min(top + k.Kernel.Height, k.Height + k.Padding.Height);
                for (int j = 0; j < OutputWidth; j++)
                {
                    int left = (j * k.Stride.Width) - k.Padding.Width;
                    int right = Math.Min(left + k.Kernel.Width, k.Width + k.Padding.Width);
                    int withPadding = (bottom - top) * (right - left);
                    int inside = (Math.Min(bottom, k.Height) - Math.Max(top, 0)) * (Math.Min(right, k.Width) - Math.Max(left, 0));
                    values[(i * OutputWidth) + j] = fixedDivisor ?? (includePad ? withPadding : inside);
                }
            }
            return Tensor.FromArray(values, new Shape(values.Length), k.Device).To(type);
        });
}
